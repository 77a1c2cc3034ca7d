"""GCPO inside TRL: `GCPOTrainer`, a `GRPOTrainer` whose token advantages are w_{i,t}·A_i.

    pip install -r requirements-trl.txt
    python examples/gcpo_trl_math.py --model Qwen/Qwen2.5-0.5B-Instruct --output_dir runs/gcpo   # one GPU
    accelerate launch --num_processes 8 examples/gcpo_trl_math.py --model ... --use_vllm True    # several GPUs

    from gcpo_trl import GCPOConfig, GCPOTrainer
    trainer = GCPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", reward_funcs=my_reward, train_dataset=ds,
                          args=GCPOConfig(output_dir="runs/gcpo"))   # ds: "prompt" and "negative_prompt" columns
    trainer.train()

The weights w come from a credit scheme (gcpo_support/schemes.py: a function whose parameter names say what it
needs): GCPO's contrast by default, or any scheme `python gcpo.py --credit` takes whose inputs TRL can supply
(`GCPOConfig(credit=...)`: uniform, contrast, shuffled, entropy_top20, gtpo_entropy, vppo_top40, module:function,
path/file.py:function). What it changes in GRPOTrainer, and nothing else (generation, rewards, group
advantages, loss, vLLM, accelerate, DeepSpeed and FSDP paths are TRL's own):
1. If the scheme names logp_neg: after TRL has generated and scored a batch, each row's negative prompt x⁻ (a
   `negative_prompt` column, or `negative_prompt_fn(prompt)`) is tokenized exactly as TRL tokenizes prompts
   (chat template included) and stored with the batch, so TRL's shuffling and splitting carry it along.
2. In the loss, per micro-batch (`weights_from="current"`, the official behaviour): TRL's policy forward of
   [x, completion] gives logp (B, T) and the entropy (B, T); one no-grad forward of [x⁻, completion] through the
   trainer's own wrapped model gives logp⁻ (B, T), only if the scheme names it; the scheme turns what it names
   into weights w (B, T), and the advantage passed to TRL's loss becomes w·A_i, shape (B, T), which
   `GRPOTrainer._compute_loss` accepts from subclasses. `weights_from="rollout"`, and any scheme that names
   group_size (it must see whole groups), score once per generation batch instead, right after generation.
The loss mask TRL uses (completion mask × tool mask; a rollout_func's env_mask becomes TRL's tool mask) is the
scheme's mask: tool-output tokens get weight 0 and take no part in the ranks or the mean-1 normalisation.

The math is `gcpo.py`'s (one source of truth); this file only moves tensors between TRL and it.
Cost (GCPO's contrast): `current` adds one no-grad forward per micro-batch and iteration (prompt⁻ + completion,
the length of a policy forward); `rollout` adds one no-grad forward per generation batch when TRL already
computed the rollout log-probs (`num_iterations > 1`, or vLLM with importance sampling), two otherwise. A scheme
that needs neither logp⁻ nor a rollout forward (e.g. entropy_top20 with `current`) adds none.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import numpy as np
import torch
from trl import GRPOConfig, GRPOTrainer
from trl.data_utils import is_conversational
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import pad

import gcpo
from gcpo_support import schemes
from gcpo_support.metrics import weight_metrics

NEGATIVE_COLUMN = "negative_prompt"
LAW = ("divergence", "normalization", "ties", "top_fraction", "target_mass", "softmax_temp", "weights_from")
UNAVAILABLE = {  # inputs of the credit-scheme contract that TRL's batch cannot supply, and why
    "logp_all": "TRL's fused LM head returns only the sampled token's log-prob, not the vocabulary's log-softmax",
    "logp_neg_all": "TRL's fused LM head returns only the sampled token's log-prob, not the vocabulary's log-softmax",
    "key_mask": "a TRL dataset has no ground-truth key tokens",
    "rewards": "TRL's batch keeps the group advantages, not the rewards",
}


@dataclass
class GCPOConfig(GRPOConfig):
    """GRPOConfig plus GCPO's token-credit options, with the names and defaults of `gcpo.py`.

    One inherited default differs: `disable_dropout=True`, because the weights compare two forward passes of
    the same policy and dropout noise would enter the contrast as if it were signal."""

    credit: str = field(
        default="contrast",
        metadata={
            "help": "token credit scheme, advantages w·A_i: contrast (GCPO, needs negative prompts) | uniform (every "
            "token gets A_i: exactly GRPOTrainer) | shuffled (the control: GCPO's weights permuted within each "
            "completion) | entropy_top20 | gtpo_entropy | vppo_top40 (peer schemes) | module:function or "
            "path/file.py:function (your own; not one that names logp_all, logp_neg_all, key_mask or rewards)"
        },
    )
    divergence: str = field(
        default="kl",
        metadata={
            "help": "token score: kl (official k3) | abs | info_gain (full_kl needs the vocabulary's log-probs, "
            "which TRL's fused LM head does not return; use gcpo.py for it)"
        },
    )
    normalization: str = field(
        default="hist", metadata={"help": "scores -> weights: hist (official rank power law) | softmax | minmax | none"}
    )
    ties: str = field(
        default="average",
        metadata={
            "help": "hist ties: average (x- = x gives w = 1 exactly) | official (argsort order, as the official code)"
        },
    )
    top_fraction: float = field(default=0.4, metadata={"help": "hist x: the top fraction of tokens ..."})
    target_mass: float = field(default=0.8, metadata={"help": "hist y: ... that carries this fraction of weight"})
    softmax_temp: float = field(default=1.0, metadata={"help": "softmax normalization temperature"})
    weights_from: str = field(
        default="current",
        metadata={
            "help": "policy that scores the credit: current (official; the policy being trained, per micro-batch) "
            "| rollout (the policy that generated the batch, once per generation batch)"
        },
    )
    disable_dropout: bool = field(
        default=True, metadata={"help": "disable dropout (default True here: dropout noise would enter the contrast)"}
    )

    def __post_init__(self):
        credit_of(self)  # before TrainingArguments sets up devices: bad input fails at once
        super().__post_init__()


def credit_of(cfg):
    """The credit scheme cfg.credit names (gcpo.credit_scheme under cfg's law options), checked to need only
    what TRL can supply. A one-line ValueError for an option outside its values, a scheme that cannot be
    loaded or names an unknown input, or one that names an input in UNAVAILABLE."""
    scheme = gcpo.credit_scheme(gcpo.make_config(credit=cfg.credit, **{k: getattr(cfg, k) for k in LAW}))
    name = schemes.info(scheme).name
    for need in schemes.needs(scheme):
        if need in UNAVAILABLE:
            fix = (
                "use divergence='kl' (the official token estimate) or gcpo.py"
                if cfg.divergence == "full_kl"
                else "run this scheme with gcpo.py on a toy task"
            )
            raise ValueError(
                f"credit scheme {name!r} needs {need!r}, which GCPOTrainer cannot supply: {UNAVAILABLE[need]}; {fix}"
            )
    return scheme


def check_negative(prompt, negative, source: str) -> None:
    """A negative prompt must have the prompt's format: a string for a plain-text prompt, a list of
    {"role", "content"} messages for a conversational one."""
    if is_conversational({"prompt": prompt}):
        ok = (
            isinstance(negative, list)
            and len(negative) > 0
            and all(isinstance(m, dict) and "role" in m and "content" in m for m in negative)
        )
        want = 'a list of {"role": ..., "content": ...} messages, like the conversational prompt'
    else:
        ok, want = isinstance(negative, str), "a string, like the plain-text prompt"
    if not ok:
        raise TypeError(
            f"{source} gave a {type(negative).__name__} ({negative!r:.60}) for the prompt "
            f"{prompt!r:.60}; it must be {want}"
        )


def first_row(dataset):
    """The first example of a Dataset (or any sequence of dicts) or an IterableDataset; None if empty."""
    if hasattr(dataset, "__len__"):
        return dataset[0] if len(dataset) else None
    return next(iter(dataset), None)


def weight_stats(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(3,) tensor: weight_metrics' weight_max, weight_std and weight_top40_mass (per-response statistics over
    valid tokens, averaged over the responses with a valid token; NaN when none has one)."""
    m = weight_metrics(w, torch.zeros_like(mask, dtype=torch.bool), mask)
    return torch.tensor([m["weight_max"], m["weight_std"], m["weight_top40_mass"]], device=w.device)


def loss_mask(batch: dict) -> torch.Tensor:
    """The tokens TRL's loss counts, (B, T): completion_mask × tool_mask (0 on tool and environment output:
    TRL turns a rollout_func's env_mask into its tool_mask), the mask every credit scheme here sees."""
    mask = batch["completion_mask"]
    return mask * batch["tool_mask"] if "tool_mask" in batch else mask


class GCPOTrainer(GRPOTrainer):
    """GRPOTrainer with per-token credit from a credit scheme, GCPO's contrast by default (module docstring).

    Takes GRPOTrainer's arguments, `args` a GCPOConfig, plus `negative_prompt_fn(prompt) -> negative prompt`
    (same format as the prompt) for datasets without a `negative_prompt` column (needed only by schemes that name
    logp_neg). With `args.credit="uniform"` it is GRPOTrainer exactly. `trainer.credit` is the scheme,
    `trainer.credit_name` its name."""

    def __init__(self, *args, negative_prompt_fn=None, **kwargs):
        bound = dict(inspect.signature(GRPOTrainer.__init__).bind(None, *args, **kwargs).arguments)
        del bound["self"]  # every GRPOTrainer argument, by name, so it is passed on below as a keyword
        config = bound.get("args")
        if config is None:
            model = bound["model"]
            name = (model if isinstance(model, str) else model.config._name_or_path).rstrip("/").split("/")[-1]
            config = bound["args"] = GCPOConfig(f"{name}-GCPO")
        if not isinstance(config, GCPOConfig):
            raise TypeError(
                f"args is a {type(config).__name__}; GCPOTrainer needs a GCPOConfig "
                "(GCPOConfig(**your_grpo_config.to_dict()) keeps its values)"
            )
        if negative_prompt_fn is not None and not callable(negative_prompt_fn):
            raise TypeError(
                f"negative_prompt_fn must be a function prompt -> negative prompt, "
                f"got a {type(negative_prompt_fn).__name__}"
            )
        self.negative_prompt_fn = negative_prompt_fn
        self.credit = credit_of(config)
        self.credit_name = schemes.info(self.credit).name
        self._needs = schemes.needs(self.credit)
        self._uniform = config.credit == "uniform"  # then nothing here runs: GRPOTrainer exactly
        self._once = config.weights_from == "rollout" or schemes.is_group_level(self.credit)
        liger_loss = getattr(config, "use_liger_kernel", False) and hasattr(GRPOTrainer, "compute_liger_loss")
        if not self._uniform and liger_loss:
            raise ValueError(
                "use_liger_kernel=True computes this TRL version's loss in Liger's fused kernel, which "
                "takes one advantage per sequence; set use_liger_kernel=False for GCPO"
            )
        if self._negatives:  # before any model work: the datasets must say where x⁻ comes from
            evals = bound.get("eval_dataset")
            evals = evals.items() if isinstance(evals, dict) else [("eval_dataset", evals)]
            for name, ds in [("train_dataset", bound.get("train_dataset")), *evals]:
                if ds is not None:
                    self._check_negative_source(ds, name)
        self._pending = None  # (inputs, logp_neg) between _compute_loss and TRL's policy forward
        super().__init__(**bound)

    # -- where the negative prompt comes from ---------------------------------------------------------------

    @property
    def _negatives(self) -> bool:
        """Whether the scheme needs the negative prompt (it names logp_neg)."""
        return "logp_neg" in self._needs

    def _check_negative_source(self, dataset, name: str) -> None:
        row = first_row(dataset)
        columns = getattr(dataset, "column_names", None) or (list(row) if row else [])
        has_column = NEGATIVE_COLUMN in columns
        if has_column and self.negative_prompt_fn is not None:
            raise ValueError(
                f"{name} has a '{NEGATIVE_COLUMN}' column and negative_prompt_fn was given too; "
                "keep one source of negative prompts"
            )
        if not has_column and self.negative_prompt_fn is None:
            raise ValueError(
                f"{name} has no '{NEGATIVE_COLUMN}' column and no negative_prompt_fn was given: credit "
                f"scheme {self.credit_name!r} needs a negative prompt per row (e.g. the prompt plus "
                "'Give a wrong answer.'); add the column, pass negative_prompt_fn=..., or set "
                "credit='uniform' for plain GRPO"
            )
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

    # -- the credit part ----------------------------------------------------------------------------------------

    def token_advantages(self, batch: dict, logp=None, logp_neg=None, entropy=None) -> torch.Tensor:
        """Ã = w·A_i, (B, T): the credit scheme's weights w (B, T) for the batch's completions times the batch's
        advantages A_i (B,). The scheme gets what it names: logp, logp_neg, entropy (B, T) as given (no grad),
        mask = loss_mask(batch), adv = A_i, group_size = num_generations, generator (seeded by args.seed, the
        process and the step). w is 0 wherever the mask is (padding, tool output), whatever the scheme left
        there. Also logs the weight statistics into TRL's metrics (averaged over processes)."""
        mask, adv = loss_mask(batch), batch["advantages"]
        given = dict(
            logp=logp,
            logp_neg=logp_neg,
            entropy=entropy,
            mask=mask,
            adv=adv,
            group_size=self.num_generations,
            generator=self._generator(mask.device),
        )
        w = schemes.call(self.credit, {k: given[k] for k in ("mask", *self._needs)})  # (B, T), checked
        w = w.to(adv.dtype).masked_fill(~mask.bool(), 0.0)
        stats = self.accelerator.gather(weight_stats(w, mask)[None]).nanmean(0)  # (3,), every rank calls it
        mode = "train" if self.model.training else "eval"
        for key, value in zip(("weight_max", "weight_std", "weight_top40_mass"), stats.tolist()):
            self._metrics[mode][f"gcpo/{key}"].append(value)
        return adv[:, None] * w  # (B, T)

    def _generator(self, device) -> torch.Generator:
        """The scheme's own randomness: a generator seeded by (args.seed, process index, step), so that a run
        repeats and no two processes or micro-batches share a stream."""
        keys = [self.args.seed, self.accelerator.process_index, getattr(self, "_step", 0)]
        seed = np.random.SeedSequence(keys).generate_state(1)
        return torch.Generator(device=device).manual_seed(int(seed[0]))

    def _negative_logps(self, model, inputs, batch_size=None) -> torch.Tensor:
        """log π(y_t | x⁻, y_<t) (B, T) for the batch's completions after the negative prompts, no grad, through
        the given (wrapped) model and TRL's own log-prob path."""
        ids = torch.cat([inputs["neg_prompt_ids"], inputs["completion_ids"]], dim=1)  # (B, P⁻+T)
        attn = torch.cat([inputs["neg_prompt_mask"], inputs["completion_mask"]], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            logp_neg = self._get_per_token_logps_and_entropies(  # (logps, entropies[, aux loss])
                model, ids, attn, inputs["completion_ids"].size(1), batch_size=batch_size
            )[0]
        return logp_neg

    def _rollout_logps(self, output, batch_size=None, compute_entropy=False):
        """(log π(y_t | x, y_<t) (B, T), entropy (B, T) or None) of the generation batch under the policy that
        sampled it, no grad."""
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        attn = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            return self._get_per_token_logps_and_entropies(
                self.model,
                ids,
                attn,
                output["completion_ids"].size(1),
                batch_size=batch_size,
                compute_entropy=compute_entropy,
            )[:2]

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)  # TRL: generation, rewards, A_i (B,)
        if self._uniform:
            return output
        if "pixel_values" in output or output.get("num_images") is not None:
            raise ValueError(
                "GCPOTrainer's token credit supports text prompts only (a negative prompt or an extra "
                "forward would need the same images); use credit='uniform' for multimodal data"
            )
        if self._negatives:
            self._add_negative_prompts(inputs, output)
        if self._once:  # once per generation batch, with the policy that sampled it, on whole groups
            rows, G = output["completion_ids"].size(0), self.num_generations
            if "group_size" in self._needs and rows % G:
                raise ValueError(
                    f"credit scheme {self.credit_name!r} scores whole groups, but this process holds "
                    f"{rows} completions, not a multiple of num_generations={G}; make "
                    "per_device_train_batch_size × steps_per_generation a multiple of num_generations"
                )
            batch_size = (
                self.args.per_device_train_batch_size if self.model.training else self.args.per_device_eval_batch_size
            )  # TRL's chunking of no-grad forwards
            logp, entropy = output.get("old_per_token_logps"), None  # TRL's, when num_iterations > 1 or vLLM
            if "entropy" in self._needs or ("logp" in self._needs and logp is None):
                logp, entropy = self._rollout_logps(output, batch_size, compute_entropy="entropy" in self._needs)
            logp_neg = self._negative_logps(self.model, output, batch_size) if self._negatives else None
            output["advantages"] = self.token_advantages(output, logp, logp_neg, entropy)
        return output

    def _add_negative_prompts(self, inputs, output) -> None:
        """neg_prompt_ids and neg_prompt_mask (B, P⁻), left-padded, tokenized exactly as TRL tokenizes prompts."""
        negatives = []
        for row in inputs:
            neg = self._negative_of(row)
            check_negative(row["prompt"], neg, self._negative_source)
            negatives.append(neg)
        neg_ids, _, _ = self._tokenize_prompts(negatives)
        device = output["prompt_ids"].device
        ids = [torch.tensor(x) for x in neg_ids]
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)  # a processor holds one
        output["neg_prompt_ids"] = pad(
            ids, padding_value=tokenizer.pad_token_id, padding_side="left", pad_to_multiple_of=self.pad_to_multiple_of
        ).to(device)
        output["neg_prompt_mask"] = pad(
            [torch.ones_like(x) for x in ids],
            padding_value=0,
            padding_side="left",
            pad_to_multiple_of=self.pad_to_multiple_of,
        ).to(device)

    def _compute_loss(self, model, inputs):
        if self._uniform or self._once:
            return super()._compute_loss(model, inputs)
        # weights_from="current": score x⁻ first (no grad, only if the scheme names logp_neg), then let TRL's loss
        # run; its policy forward (the first call of _get_per_token_logps_and_entropies) supplies logp and the
        # entropy, so the weights cost at most one extra forward, and the advantages are replaced before TRL's
        # loss reads them.
        inputs = dict(inputs)
        self._pending = (inputs, self._negative_logps(model, inputs) if self._negatives else None)
        try:
            return super()._compute_loss(model, inputs)
        finally:
            self._pending = None

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, *args, **kwargs):
        pending, self._pending = self._pending, None
        if pending is not None and "entropy" in self._needs and not args:
            kwargs["compute_entropy"] = True  # (TRL's loss asks for it anyway; older versions may not)
        out = super()._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, *args, **kwargs
        )
        if pending is not None:  # the policy forward inside _compute_loss: (B, T) logp with grad
            inputs, logp_neg = pending
            entropy = out[1].detach() if out[1] is not None else None
            if out[0].shape != inputs["completion_mask"].shape or ("entropy" in self._needs and entropy is None):
                raise RuntimeError(
                    f"GCPOTrainer expected TRL's policy forward to score "
                    f"{tuple(inputs['completion_mask'].shape)} completion tokens (with their entropy "
                    f"if the scheme names it), got {tuple(out[0].shape)}; this TRL version is not "
                    "supported"
                )
            inputs["advantages"] = self.token_advantages(inputs, out[0].detach(), logp_neg, entropy)
        return out
