"""GCPO inside TRL: `GCPOTrainer`, a `GRPOTrainer` whose token advantages are w_{i,t}·A_i.

    pip install -r requirements-trl.txt
    python examples/gcpo_trl_math.py --model Qwen/Qwen2.5-0.5B-Instruct --output_dir runs/gcpo   # one GPU
    accelerate launch --num_processes 8 examples/gcpo_trl_math.py --model ... --use_vllm True    # several GPUs

    from gcpo_trl import GCPOConfig, GCPOTrainer
    trainer = GCPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", reward_funcs=my_reward, train_dataset=ds,
                          args=GCPOConfig(output_dir="runs/gcpo"))   # ds: "prompt" and "negative_prompt" columns
    trainer.train()

What it changes in GRPOTrainer, and nothing else (generation, rewards, group advantages, loss, vLLM, accelerate,
DeepSpeed and FSDP paths are TRL's own):
1. After TRL has generated and scored a batch, each row's negative prompt x⁻ (a `negative_prompt` column, or
   `negative_prompt_fn(prompt)`) is tokenized exactly as TRL tokenizes prompts (chat template included) and
   stored with the batch, so TRL's shuffling and splitting carry it along.
2. In the loss, per micro-batch (`weights_from="current"`, the official behaviour): one no-grad forward of
   [x⁻, completion] through the trainer's own wrapped model gives logp⁻ (B, T); TRL's forward of [x, completion]
   gives logp (B, T); `gcpo.token_weights` turns the pair into weights w (B, T), and the advantage passed to
   TRL's loss becomes w·A_i, shape (B, T), which `GRPOTrainer._compute_loss` accepts from subclasses.
   `weights_from="rollout"` scores once per generation batch instead, right after generation.

The math is `gcpo.py`'s (one source of truth); this file only moves tensors between TRL and it.
Cost: `current` adds one no-grad forward per micro-batch and iteration (prompt⁻ + completion, the length of a
policy forward); `rollout` adds one no-grad forward per generation batch when TRL already computed the rollout
log-probs (`num_iterations > 1`, or vLLM with importance sampling), two otherwise.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch
from trl import GRPOConfig, GRPOTrainer
from trl.data_utils import is_conversational
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import pad

import gcpo
from gcpo_support import checks
from gcpo_support.metrics import weight_metrics

CREDITS = ("contrast", "uniform")
NEGATIVE_COLUMN = "negative_prompt"


@dataclass
class GCPOConfig(GRPOConfig):
    """GRPOConfig plus GCPO's token-credit options, with the names and defaults of `gcpo.py`.

    One inherited default differs: `disable_dropout=True`, because the weights compare two forward passes of
    the same policy and dropout noise would enter the contrast as if it were signal."""

    credit: str = field(default="contrast", metadata={
        "help": "contrast: token advantages w·A_i from the contrast with the negative prompt (GCPO) | uniform: "
                "every token gets A_i, exactly GRPOTrainer (no negative prompt needed)"})
    divergence: str = field(default="kl", metadata={
        "help": "token score: kl (official k3) | abs | info_gain (full_kl needs the vocabulary's log-probs, "
                "which TRL's fused LM head does not return; use gcpo.py for it)"})
    normalization: str = field(default="hist", metadata={
        "help": "scores -> weights: hist (official rank power law) | softmax | minmax | none"})
    ties: str = field(default="average", metadata={
        "help": "hist ties: average (x- = x gives w = 1 exactly) | official (argsort order, as the official code)"})
    top_fraction: float = field(default=0.4, metadata={"help": "hist x: the top fraction of tokens ..."})
    target_mass: float = field(default=0.8, metadata={"help": "hist y: ... that carries this fraction of weight"})
    softmax_temp: float = field(default=1.0, metadata={"help": "softmax normalization temperature"})
    weights_from: str = field(default="current", metadata={
        "help": "policy that scores the contrast: current (official; the policy being trained, per micro-batch) "
                "| rollout (the policy that generated the batch, once per generation batch)"})
    disable_dropout: bool = field(default=True, metadata={
        "help": "disable dropout (default True here: dropout noise would enter the contrast)"})

    def __post_init__(self):
        check_gcpo_options(self)  # before TrainingArguments sets up devices: bad input fails at once
        super().__post_init__()


def check_gcpo_options(cfg) -> None:
    """One clear ValueError for a GCPO option outside its allowed values."""
    choices = {"credit": CREDITS, "divergence": tuple(d for d in checks.CHOICES["divergence"] if d != "full_kl"),
               **{k: checks.CHOICES[k] for k in ("normalization", "ties", "weights_from")}}
    if cfg.divergence == "full_kl":
        raise ValueError("divergence='full_kl' needs the whole vocabulary's log-probs, which TRL's fused LM head "
                         "does not return; use divergence='kl' (the official token estimate) or gcpo.py")
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise ValueError(f"{name}={getattr(cfg, name)!r} is not an option; choose one of {list(allowed)}")
    gcpo.hist_alpha(cfg.top_fraction, cfg.target_mass)  # raises a clear ValueError outside 0 < x <= y < 1
    if not cfg.softmax_temp > 0:
        raise ValueError(f"softmax_temp={cfg.softmax_temp}: use a temperature > 0")


def check_negative(prompt, negative, source: str) -> None:
    """A negative prompt must have the prompt's format: a string for a plain-text prompt, a list of
    {"role", "content"} messages for a conversational one."""
    if is_conversational({"prompt": prompt}):
        ok = isinstance(negative, list) and len(negative) > 0 and all(
            isinstance(m, dict) and "role" in m and "content" in m for m in negative)
        want = 'a list of {"role": ..., "content": ...} messages, like the conversational prompt'
    else:
        ok, want = isinstance(negative, str), "a string, like the plain-text prompt"
    if not ok:
        raise TypeError(f"{source} gave a {type(negative).__name__} ({negative!r:.60}) for the prompt "
                        f"{prompt!r:.60}; it must be {want}")


def first_row(dataset):
    """The first example of a Dataset (or any sequence of dicts) or an IterableDataset; None if empty."""
    if hasattr(dataset, "__len__"):
        return dataset[0] if len(dataset) else None
    return next(iter(dataset), None)


def weight_stats(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(3,) tensor: mean over responses with a valid token of the per-response weight max, weight std, and the
    weight mass on the top 40% of tokens (weight_metrics); NaN when no response has a valid token."""
    rows = mask.sum(1) > 0
    if not rows.any():
        return torch.full((3,), float("nan"), device=w.device)
    m = weight_metrics(w[rows], torch.zeros_like(mask[rows], dtype=torch.bool), mask[rows])
    return torch.tensor([m["weight_max"], m["weight_std"], m["weight_top40_mass"]], device=w.device)


class GCPOTrainer(GRPOTrainer):
    """GRPOTrainer with GCPO's contrastive token credit (see the module docstring).

    Takes GRPOTrainer's arguments, `args` a GCPOConfig, plus `negative_prompt_fn(prompt) -> negative prompt`
    (same format as the prompt) for datasets without a `negative_prompt` column. With `args.credit="uniform"`
    it is GRPOTrainer exactly."""

    def __init__(self, *args, negative_prompt_fn=None, **kwargs):
        bound = dict(inspect.signature(GRPOTrainer.__init__).bind(None, *args, **kwargs).arguments)
        del bound["self"]  # every GRPOTrainer argument, by name, so it is passed on below as a keyword
        config = bound.get("args")
        if config is None:
            model = bound["model"]
            name = (model if isinstance(model, str) else model.config._name_or_path).rstrip("/").split("/")[-1]
            config = bound["args"] = GCPOConfig(f"{name}-GCPO")
        if not isinstance(config, GCPOConfig):
            raise TypeError(f"args is a {type(config).__name__}; GCPOTrainer needs a GCPOConfig "
                            "(GCPOConfig(**your_grpo_config.to_dict()) keeps its values)")
        if negative_prompt_fn is not None and not callable(negative_prompt_fn):
            raise TypeError(f"negative_prompt_fn must be a function prompt -> negative prompt, "
                            f"got a {type(negative_prompt_fn).__name__}")
        self.negative_prompt_fn = negative_prompt_fn
        liger_loss = getattr(config, "use_liger_kernel", False) and hasattr(GRPOTrainer, "compute_liger_loss")
        if config.credit == "contrast" and liger_loss:
            raise ValueError("use_liger_kernel=True computes this TRL version's loss in Liger's fused kernel, which "
                             "takes one advantage per sequence; set use_liger_kernel=False for GCPO")
        if config.credit == "contrast":  # before any model work: the datasets must say where x⁻ comes from
            evals = bound.get("eval_dataset")
            evals = evals.items() if isinstance(evals, dict) else [("eval_dataset", evals)]
            for name, ds in [("train_dataset", bound.get("train_dataset")), *evals]:
                if ds is not None:
                    self._check_negative_source(ds, name)
        self._pending = None  # (inputs, logp_neg) between _compute_loss and TRL's policy forward
        super().__init__(**bound)

    # -- where the negative prompt comes from ---------------------------------------------------------------

    def _check_negative_source(self, dataset, name: str) -> None:
        row = first_row(dataset)
        columns = getattr(dataset, "column_names", None) or (list(row) if row else [])
        has_column = NEGATIVE_COLUMN in columns
        if has_column and self.negative_prompt_fn is not None:
            raise ValueError(f"{name} has a '{NEGATIVE_COLUMN}' column and negative_prompt_fn was given too; "
                             "keep one source of negative prompts")
        if not has_column and self.negative_prompt_fn is None:
            raise ValueError(f"{name} has no '{NEGATIVE_COLUMN}' column and no negative_prompt_fn was given: GCPO "
                             "needs a negative prompt per row (e.g. the prompt plus 'Give a wrong answer.'); add the "
                             "column, pass negative_prompt_fn=..., or set credit='uniform' for plain GRPO")
        if row is not None:
            check_negative(row["prompt"], self._negative_of(row), self._negative_source)

    @property
    def _negative_source(self) -> str:
        return "negative_prompt_fn" if self.negative_prompt_fn is not None else f"the '{NEGATIVE_COLUMN}' column"

    def _negative_of(self, row: dict):
        return self.negative_prompt_fn(row["prompt"]) if self.negative_prompt_fn is not None else row[NEGATIVE_COLUMN]

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()  # keeps the column under remove_unused_columns=True too
        if NEGATIVE_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, NEGATIVE_COLUMN]

    # -- the GCPO part ------------------------------------------------------------------------------------------

    @property
    def _contrast(self) -> bool:
        return self.args.credit == "contrast"

    def token_advantages(self, advantages, logp, logp_neg, mask):
        """Ã = w·A_i: advantages (B,) and the completion's log-probs after the prompt, logp (B, T), and after
        the negative prompt, logp_neg (B, T), with the loss mask (B, T) → (B, T) token advantages (0 on
        padding). Also logs the weight statistics into TRL's metrics (averaged over processes)."""
        a = self.args
        w = gcpo.token_weights(logp, logp_neg, mask, divergence=a.divergence, normalization=a.normalization,
                               ties=a.ties, top_fraction=a.top_fraction, target_mass=a.target_mass,
                               softmax_temp=a.softmax_temp)  # (B, T), no grad
        stats = self.accelerator.gather(weight_stats(w, mask)[None]).nanmean(0)  # (3,), every rank calls it
        mode = "train" if self.model.training else "eval"
        for key, value in zip(("weight_max", "weight_std", "weight_top40_mass"), stats.tolist()):
            self._metrics[mode][f"gcpo/{key}"].append(value)
        return advantages[:, None].to(w.dtype) * w  # (B, T)

    def _negative_logps(self, model, inputs, batch_size=None) -> torch.Tensor:
        """log π(y_t | x⁻, y_<t) (B, T) for the batch's completions after the negative prompts, no grad, through
        the given (wrapped) model and TRL's own log-prob path."""
        ids = torch.cat([inputs["neg_prompt_ids"], inputs["completion_ids"]], dim=1)  # (B, P⁻+T)
        attn = torch.cat([inputs["neg_prompt_mask"], inputs["completion_mask"]], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            logp_neg = self._get_per_token_logps_and_entropies(  # (logps, entropies[, aux loss])
                model, ids, attn, inputs["completion_ids"].size(1), batch_size=batch_size)[0]
        return logp_neg

    def _rollout_logps(self, output, batch_size=None) -> torch.Tensor:
        """log π(y_t | x, y_<t) (B, T) of the generation batch under the policy that sampled it, no grad."""
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        attn = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            return self._get_per_token_logps_and_entropies(
                self.model, ids, attn, output["completion_ids"].size(1), batch_size=batch_size)[0]

    @staticmethod
    def _loss_mask(inputs) -> torch.Tensor:
        mask = inputs["completion_mask"]
        return mask * inputs["tool_mask"] if "tool_mask" in inputs else mask

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)  # TRL: generation, rewards, A_i (B,)
        if not self._contrast:
            return output
        if "pixel_values" in output or output.get("num_images") is not None:
            raise ValueError("GCPOTrainer supports text prompts only: images would need a negative prompt "
                             "with the same images; use credit='uniform' for multimodal data")
        negatives = []
        for row in inputs:
            neg = self._negative_of(row)
            check_negative(row["prompt"], neg, self._negative_source)
            negatives.append(neg)
        neg_ids, _, _ = self._tokenize_prompts(negatives)  # exactly as TRL tokenizes prompts
        device = output["prompt_ids"].device
        ids = [torch.tensor(x) for x in neg_ids]
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)  # a processor holds one
        output["neg_prompt_ids"] = pad(ids, padding_value=tokenizer.pad_token_id, padding_side="left",
                                       pad_to_multiple_of=self.pad_to_multiple_of).to(device)
        output["neg_prompt_mask"] = pad([torch.ones_like(x) for x in ids], padding_value=0, padding_side="left",
                                        pad_to_multiple_of=self.pad_to_multiple_of).to(device)
        if self.args.weights_from == "rollout":  # once per generation batch, with the policy that sampled it
            batch_size = (self.args.per_device_train_batch_size if self.model.training
                          else self.args.per_device_eval_batch_size)  # TRL's chunking of no-grad forwards
            logp = output.get("old_per_token_logps")  # TRL computed them when num_iterations > 1 or for vLLM
            if logp is None:
                logp = self._rollout_logps(output, batch_size)
            logp_neg = self._negative_logps(self.model, output, batch_size)
            output["advantages"] = self.token_advantages(output["advantages"], logp, logp_neg, self._loss_mask(output))
        return output

    def _compute_loss(self, model, inputs):
        if not self._contrast or self.args.weights_from == "rollout":
            return super()._compute_loss(model, inputs)
        # weights_from="current": score x⁻ first (no grad), then let TRL's loss run; its policy forward (the
        # first call of _get_per_token_logps_and_entropies) supplies logp, so the weights cost one extra
        # forward, not two, and the advantages are replaced before TRL's loss reads them.
        inputs = dict(inputs)
        self._pending = (inputs, self._negative_logps(model, inputs))
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._pending = None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        out = super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                         *args, **kwargs)
        if self._pending is not None:  # the policy forward inside _compute_loss: (B, T) logp with grad
            inputs, logp_neg = self._pending
            self._pending = None
            if out[0].shape != logp_neg.shape:
                raise RuntimeError(f"GCPOTrainer expected TRL's policy forward to score {tuple(logp_neg.shape)} "
                                   f"completion tokens, got {tuple(out[0].shape)}; this TRL version is not supported")
            inputs["advantages"] = self.token_advantages(inputs["advantages"], out[0].detach(), logp_neg,
                                                         self._loss_mask(inputs))
        return out
