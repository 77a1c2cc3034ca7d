"""Gymnasium faces of a task: a one-step episode, and a token-per-step wrapper.

Both follow the gymnasium contract strictly: `step` before `reset`, or after the episode has ended
(terminated), raises `gymnasium.error.ResetNeeded` instead of silently scoring a stale episode."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from toy_envs.base import Task


class TaskEnv(gym.Env):
    """One-step episode, the shape TRL, GEM and TextArena use for LLM tasks.

    reset() → the prompt (P token ids). step(response: max_new_tokens token ids, PAD after EOS) → reward,
    terminated=True, info with `key_mask` (which response tokens decide the reward) and the reward's parts.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}

    def __init__(self, task: Task, render_mode: str | None = None):
        if not isinstance(task, Task):
            raise ValueError(f"TaskEnv needs a toy_envs Task (e.g. toy_envs.make_task('needle')), got {task!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.task, self.render_mode = task, render_mode
        V = task.vocab_size
        self.observation_space = spaces.MultiDiscrete(np.full(task.prompt_len, V, dtype=np.int64))
        self.action_space = spaces.MultiDiscrete(np.full(task.max_new_tokens, V, dtype=np.int64))
        self._prompt = None
        self._last = None
        self._done = False

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._prompt = self.task.sample_prompts(1, self.np_random)[0]
        self._last, self._done = None, False
        return self._prompt.copy(), {}

    def step(self, action):
        if self._prompt is None:
            raise ResetNeeded("call reset() before step()")
        if self._done:
            raise ResetNeeded("the episode has ended (terminated=True); call reset() before step()")
        action = np.asarray(action)
        if action.shape != (self.task.max_new_tokens,):
            raise ValueError(f"a response is {self.task.max_new_tokens} token ids, got shape {action.shape}")
        score = self.task.score(self._prompt[None], action[None], rng=self.np_random)
        self._last, self._done = action.copy(), True
        info = {"key_mask": score.key_mask[0], **{k: float(v[0]) for k, v in score.parts.items()}}
        return self._prompt.copy(), float(score.reward[0]), True, False, info

    def render(self):
        if self.render_mode != "ansi" or self._prompt is None:
            return None
        return self.task.render(self._prompt, self._last if self._last is not None else [])


class TokenStepEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Token-per-step view of a one-step task: observation = prompt + response so far (PAD-filled, fixed
    length), action = one token, reward 0 until EOS or `max_new_tokens`, then the one-step reward.

    This is the classic-RL reading of a language task, and it shows why GRPO's credit is uniform: the only
    reward arrives at the end and the episode return is the same number for every token."""

    def __init__(self, env: TaskEnv):
        if not isinstance(getattr(env, "unwrapped", None), TaskEnv):
            raise ValueError(
                f"TokenStepEnv wraps a toy_envs TaskEnv (gymnasium.make('toy_envs/Needle-v0')), got {env!r}"
            )
        gym.utils.RecordConstructorArgs.__init__(self)  # so gymnasium can rebuild it from env.spec
        gym.Wrapper.__init__(self, env)
        task = env.unwrapped.task
        self.task = task
        V = task.vocab_size
        self.observation_space = spaces.MultiDiscrete(np.full(task.prompt_len + task.max_new_tokens, V, dtype=np.int64))
        self.action_space = spaces.Discrete(V)
        self._tokens: list[int] = []
        self._prompt = None
        self._done = False

    def _response(self):
        resp = np.full(self.task.max_new_tokens, self.task.pad_id, dtype=np.int64)
        resp[: len(self._tokens)] = self._tokens
        return resp

    def _obs(self):
        return np.concatenate([self._prompt, self._response()])

    def reset(self, *, seed=None, options=None):
        self._prompt, info = self.env.reset(seed=seed, options=options)
        self._tokens, self._done = [], False
        return self._obs(), info

    def step(self, action):
        if self._prompt is None:
            raise ResetNeeded("call reset() before step()")
        if self._done:
            raise ResetNeeded(
                f"the episode has ended (EOS or {self.task.max_new_tokens} tokens, terminated=True); "
                "call reset() before step()"
            )
        if not self.action_space.contains(action):
            raise ValueError(f"action must be a token id in [0, {self.task.vocab_size}), got {action!r}")
        self._tokens.append(int(action))
        if int(action) != self.task.eos_id and len(self._tokens) < self.task.max_new_tokens:
            return self._obs(), 0.0, False, False, {}
        self._done = True
        _, reward, _, _, info = self.env.step(self._response())
        return self._obs(), reward, True, False, info

    def render(self):
        """The prompt and the response so far (the wrapped env renders only whole responses)."""
        if self.env.render_mode != "ansi" or self._prompt is None:
            return None
        return self.task.render(self._prompt, np.asarray(self._tokens, dtype=np.int64))
