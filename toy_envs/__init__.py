"""Synthetic discrete-sequence tasks with ground-truth token credit: the response tokens that decide the
reward are known, so a credit-assignment method's token weights can be checked against them.

    import toy_envs
    task = toy_envs.make_task("needle", length=8)        # batched interface used by gcpo.py
    env = gymnasium.make("toy_envs/Needle-v0")            # one-step gymnasium episode
    env = toy_envs.TokenStepEnv(gymnasium.make("toy_envs/Needle-v0"))  # one token per step
    task = toy_envs.make_task("topic", tokenizer=gpt2_tokenizer)   # text tasks take any HF tokenizer
"""

from __future__ import annotations

import inspect

import gymnasium as gym

from toy_envs.base import BOS, EOS, NULL, PAD, Score, Task
from toy_envs.gym_env import TaskEnv, TokenStepEnv
from toy_envs.tasks import ChainSum, Copy, GridPaint, Needle
from toy_envs.text import Sentiment, TextTask, Topic, WordTokenizer

TASKS: dict[str, type[Task]] = {
    "needle": Needle,
    "copy": Copy,
    "gridpaint": GridPaint,
    "chainsum": ChainSum,
    "topic": Topic,
    "sentiment": Sentiment,
}
ENV_IDS = {name: f"toy_envs/{cls.__name__}-v0" for name, cls in TASKS.items()}


def task_name(name_or_id: str) -> str:
    """'needle', 'Needle' or 'toy_envs/Needle-v0' → 'needle'; anything else is an error listing the choices."""
    key = name_or_id.lower() if isinstance(name_or_id, str) else None
    for name, env_id in ENV_IDS.items():
        if key in (name, env_id.lower()):
            return name
    raise ValueError(f"unknown env {name_or_id!r}; choose one of {sorted(TASKS)} or {sorted(ENV_IDS.values())}")


def task_arguments(name_or_id: str) -> dict:
    """The task's constructor arguments and their defaults, e.g. {'length': 8, 'num_symbols': 8, ...}."""
    params = inspect.signature(TASKS[task_name(name_or_id)].__init__).parameters
    return {k: p.default for k, p in params.items() if k != "self"}


def make_task(name_or_id: str, **kwargs) -> Task:
    """The batched task object for a name or a registered env id, with its parameters as keywords. An unknown
    parameter name is a ValueError listing the task's parameters; each value is checked by the task."""
    name = task_name(name_or_id)
    unknown = sorted(set(kwargs) - set(task_arguments(name)))
    if unknown:
        raise ValueError(
            f"{name} has no argument(s) {unknown}; its arguments (default): "
            + ", ".join(f"{k}={v!r}" for k, v in task_arguments(name).items())
        )
    return TASKS[name](**kwargs)


def _make_env(task: str, render_mode: str | None = None, **kwargs) -> TaskEnv:
    return TaskEnv(make_task(task, **kwargs), render_mode=render_mode)


for _name, _id in ENV_IDS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point="toy_envs:_make_env", kwargs={"task": _name})

__all__ = [
    "BOS",
    "EOS",
    "NULL",
    "PAD",
    "Score",
    "Task",
    "TaskEnv",
    "TokenStepEnv",
    "Needle",
    "Copy",
    "GridPaint",
    "ChainSum",
    "TextTask",
    "Topic",
    "Sentiment",
    "WordTokenizer",
    "TASKS",
    "ENV_IDS",
    "make_task",
    "task_name",
    "task_arguments",
]
