"""Synthetic discrete-sequence tasks with ground-truth token credit (SPEC §7).

    import toy_envs
    task = toy_envs.make_task("needle", length=8)        # batched interface used by gcpo.py
    env = gymnasium.make("toy_envs/Needle-v0")            # one-step gymnasium episode
    env = toy_envs.TokenStepEnv(gymnasium.make("toy_envs/Needle-v0"))  # one token per step
    task = toy_envs.make_task("topic", tokenizer=gpt2_tokenizer)   # text tasks take any HF tokenizer
"""
from __future__ import annotations

import gymnasium as gym

from toy_envs.base import BOS, EOS, NULL, PAD, Score, Task
from toy_envs.gym_env import TaskEnv, TokenStepEnv
from toy_envs.tasks import ChainSum, Copy, GridPaint, Needle
from toy_envs.text import Sentiment, TextTask, Topic, WordTokenizer

TASKS: dict[str, type[Task]] = {"needle": Needle, "copy": Copy, "gridpaint": GridPaint, "chainsum": ChainSum,
                                "topic": Topic, "sentiment": Sentiment}
ENV_IDS = {name: f"toy_envs/{cls.__name__}-v0" for name, cls in TASKS.items()}


def task_name(name_or_id: str) -> str:
    """'needle', 'Needle' or 'toy_envs/Needle-v0' → 'needle'; anything else is an error listing the choices."""
    key = name_or_id.lower()
    for name, env_id in ENV_IDS.items():
        if key in (name, env_id.lower()):
            return name
    raise ValueError(f"unknown env {name_or_id!r}; choose one of {sorted(TASKS)} or {sorted(ENV_IDS.values())}")


def make_task(name_or_id: str, **kwargs) -> Task:
    """The batched task object for a name or a registered env id, with its parameters as keywords."""
    return TASKS[task_name(name_or_id)](**kwargs)


def _make_env(task: str, render_mode: str | None = None, **kwargs) -> TaskEnv:
    return TaskEnv(make_task(task, **kwargs), render_mode=render_mode)


for _name, _id in ENV_IDS.items():
    if _id not in gym.registry:
        gym.register(id=_id, entry_point="toy_envs:_make_env", kwargs={"task": _name})

__all__ = ["BOS", "EOS", "NULL", "PAD", "Score", "Task", "TaskEnv", "TokenStepEnv", "Needle", "Copy",
           "GridPaint", "ChainSum", "TextTask", "Topic", "Sentiment", "WordTokenizer", "TASKS", "ENV_IDS",
           "make_task", "task_name"]
