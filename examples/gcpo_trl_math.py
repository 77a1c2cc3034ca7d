"""GCPO with TRL on a math-style task: arithmetic questions, reward 1 for the right final number, and the
negative prompt "give a wrong answer" (the paper's reasoning negative).

    pip install -r requirements-trl.txt

    # one GPU, a small instruct model (downloads it once)
    python examples/gcpo_trl_math.py --model Qwen/Qwen2.5-0.5B-Instruct --output_dir runs/gcpo-math \\
        --per_device_train_batch_size 16 --num_generations 8 --max_completion_length 256 \\
        --learning_rate 1e-6 --epsilon_high 0.28 --max_steps 200 --logging_steps 5

    # several GPUs with vLLM generation on the same GPUs (colocate); DeepSpeed ZeRO-3: add
    # --use_deepspeed --zero_stage 3 to accelerate launch
    accelerate launch --num_processes 8 examples/gcpo_trl_math.py --model Qwen/Qwen2.5-1.5B-Instruct \\
        --output_dir runs/gcpo-math --use_vllm True --vllm_mode colocate \\
        --per_device_train_batch_size 16 --num_generations 8 --max_completion_length 512 \\
        --learning_rate 1e-6 --epsilon_high 0.28 --max_steps 500 --logging_steps 5

    # plain GRPO/DAPO on the same data, for comparison: add --credit uniform
    # another token-credit scheme: --credit entropy_top20 | gtpo_entropy | vppo_top40 | shuffled | path/file.py:fn

Every GCPOConfig option is a flag (`--credit`, `--divergence`, `--normalization`, `--weights_from`, ..., and all
of GRPOConfig's). The data is generated here, so nothing but the model is downloaded. Prompts are chat messages
when the tokenizer has a chat template (instruct models), plain text otherwise.

`--param_digest PREFIX` writes PREFIX.rank<N> with a SHA-256 of the parameters before and after training on
every process, so a data-parallel run can be checked for identical ranks (not meaningful under ZeRO-3 or FSDP,
which shard the parameters). The test suite does this with a tiny GPT-2, two processes over gloo on a CPU:
`accelerate launch --multi_gpu --num_processes 2 examples/gcpo_trl_math.py --use_cpu True ...`.
"""

import hashlib
import os
import re
import sys
from dataclasses import dataclass, field

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root


@dataclass
class ScriptArguments:
    model: str = field(default="Qwen/Qwen2.5-0.5B-Instruct", metadata={"help": "hub name or local directory"})
    num_prompts: int = field(default=5000, metadata={"help": "arithmetic questions in the training set"})
    seed_data: int = field(default=0, metadata={"help": "seed of the generated questions"})
    param_digest: str = field(default="", metadata={"help": "write PREFIX.rank<N>: parameter SHA-256 before/after"})


INSTRUCTION = "Think briefly, then end with 'Answer: <number>'."
WRONG = "Give a wrong answer."


def arithmetic(n: int, seed: int):
    """n questions 'What is a + b * c?' (a, b, c in 1..20) with their integer answers."""
    rng = np.random.default_rng(seed)
    a, b, c = (rng.integers(1, 21, n) for _ in range(3))
    ops = rng.choice(["+", "-"], n)
    questions = [f"What is {x} {op} {y} * {z}?" for x, op, y, z in zip(a, ops, b, c)]
    answers = [int(x + y * z) if op == "+" else int(x - y * z) for x, op, y, z in zip(a, ops, b, c)]
    return questions, answers


def build_dataset(n: int, seed: int, chat: bool):
    """Columns prompt, negative_prompt, answer; chat messages or plain text."""
    from datasets import Dataset

    questions, answers = arithmetic(n, seed)
    if chat:
        prompt = [[{"role": "user", "content": f"{q} {INSTRUCTION}"}] for q in questions]
        negative = [[{"role": "user", "content": f"{q} {WRONG} {INSTRUCTION}"}] for q in questions]
    else:
        prompt = [f"{q} {INSTRUCTION}\n" for q in questions]
        negative = [f"{q} {WRONG} {INSTRUCTION}\n" for q in questions]
    return Dataset.from_dict({"prompt": prompt, "negative_prompt": negative, "answer": answers})


def last_number(text: str):
    found = re.findall(r"-?\d+", text.replace(",", ""))
    return int(found[-1]) if found else None


def correct(completions, answer, **kwargs) -> list[float]:
    """1.0 when the completion's last integer equals the answer, else 0.0 (TRL reward-function signature)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [float(last_number(t) == a) for t, a in zip(texts, answer)]


def gives_number(completions, **kwargs) -> list[float]:
    """0.1 for a completion that contains a number at all: a small format reward (zero variance, so no effect,
    once a model always answers with a number)."""
    texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
    return [0.1 * (last_number(t) is not None) for t in texts]


def parameter_digest(model) -> str:
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main(argv=None):
    from transformers import AutoTokenizer, HfArgumentParser

    from gcpo_trl import GCPOConfig, GCPOTrainer

    script, config = HfArgumentParser((ScriptArguments, GCPOConfig)).parse_args_into_dataclasses(argv)
    tokenizer = AutoTokenizer.from_pretrained(script.model, padding_side="left")
    dataset = build_dataset(script.num_prompts, script.seed_data, chat=tokenizer.chat_template is not None)
    trainer = GCPOTrainer(
        model=script.model,
        reward_funcs=[correct, gives_number],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    acc = trainer.accelerator
    rank = acc.process_index
    if acc.is_main_process:
        import torch.distributed as dist

        backend = dist.get_backend() if dist.is_initialized() else "none"
        print(
            f"{acc.num_processes} process(es), {acc.distributed_type.value}, backend {backend}, device {acc.device}; "
            f"credit scheme {trainer.credit_name}"
        )
    before = parameter_digest(acc.unwrap_model(trainer.model)) if script.param_digest else ""
    trainer.train()
    if script.param_digest:
        after = parameter_digest(acc.unwrap_model(trainer.model))
        with open(f"{script.param_digest}.rank{rank}", "w") as f:
            f.write(f"before {before}\nafter {after}\n")
    if acc.is_main_process:
        logged = [h for h in trainer.state.log_history if "gcpo/weight_max" in h]
        if logged:
            last = logged[-1]
            print(
                f"{trainer.credit_name} weights (last log): max {last['gcpo/weight_max']:.2f}, std "
                f"{last['gcpo/weight_std']:.2f}, top-40% mass {last['gcpo/weight_top40_mass']:.3f}; reward "
                f"{last.get('reward', float('nan')):.3f}"
            )
    if config.save_strategy != "no":
        trainer.save_model(config.output_dir)  # on every process (DeepSpeed and FSDP gather the weights)
    # every rank finishes, then the process group is torn down before exit: a gloo group left to the interpreter's
    # shutdown can abort a rank ("terminate called without an active exception") after training succeeded
    acc.wait_for_everyone()
    acc.end_training()


if __name__ == "__main__":
    try:
        main()
    except ValueError as e:  # bad input: one line naming the problem and the fix
        sys.exit(f"gcpo_trl_math.py: error: {e}")
