"""Loading: the task for a run (built-in, or a class plugged in as file.py:Class / module:Class), pretrained
models and tokenizers, each failure one line with its fix. A reader of gcpo.py can skip it."""

from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import os
import socket
import sys
import urllib.parse


def parse_task_args(text: str) -> dict:
    """'length=16,num_symbols=8' → {'length': 16, 'num_symbols': 8} (values parsed as Python literals)."""
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        if "=" not in item:
            raise ValueError(f"task_args item {item!r} is not k=v (e.g. --task-args length=16,num_symbols=8)")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            out[k.strip()] = v.strip()
    return out


def build_task(cfg):
    """The task for cfg.env: a built-in name or gymnasium id, or a Task subclass plugged in as
    path/to/file.py:ClassName or package.module:ClassName (constructed with cfg.task_args). A text task gets the
    pretrained model's tokenizer (the tiny model: the task's own word tokenizer). Returns (task, the text task's
    tokenizer or None)."""
    import toy_envs

    kwargs = parse_task_args(cfg.task_args)
    if ":" in cfg.env:
        cls = load_object(cfg.env, "env")
        if not (isinstance(cls, type) and issubclass(cls, toy_envs.Task)):
            raise ValueError(f"env {cfg.env!r} is not a subclass of toy_envs.Task (see toy_envs/base.py)")
    else:
        cls = toy_envs.TASKS[toy_envs.task_name(cfg.env)]
    if issubclass(cls, toy_envs.TextTask) and cfg.model != "tiny":
        kwargs["tokenizer"] = load_tokenizer(cfg.model)
    if ":" not in cfg.env:
        task = toy_envs.make_task(cfg.env, **kwargs)  # (unknown or ill-typed arguments: one-line errors)
    else:
        try:
            task = cls(**kwargs)
        except TypeError as e:
            raise ValueError(f"env {cfg.env!r} does not take task_args {kwargs}: {e}") from None
    return task, getattr(task, "tokenizer", None)


@contextlib.contextmanager
def quiet_transformers():
    """transformers without its progress bars ("Loading weights", "Writing model shards") for the project's own
    loads and saves; the setting is restored afterwards."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


def from_pretrained(cls, name: str):
    """cls.from_pretrained(name) (never trust_remote_code), with one clear error instead of a stack of hub
    errors. A name that starts with '.', '/' or '~' is a local directory; anything else may be a hub name."""
    if name.startswith((".", "/", "~")) and not os.path.isdir(os.path.expanduser(name)):
        raise ValueError(
            f"model directory {name!r} does not exist; pass a directory written by save_pretrained "
            "(e.g. runs/x/model) or a hub name such as gpt2"
        )
    local = name.startswith((".", "/", "~")) or os.path.isdir(name)
    with quiet_transformers():
        return _from_pretrained(cls, name, local)


def _from_pretrained(cls, name: str, local: bool):
    try:
        if local:
            return cls.from_pretrained(os.path.expanduser(name))
        try:  # the local cache first: offline, a hub name then fails in seconds instead of minutes of retries
            return cls.from_pretrained(name, local_files_only=True)
        except (OSError, ValueError):
            if not hub_reachable():
                raise OSError(
                    f"{name!r} is not in the local Hugging Face cache and the hub cannot be reached (offline?)"
                ) from None
            return cls.from_pretrained(name)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0].rstrip(".") if str(e).strip() else type(e).__name__
        raise ValueError(
            f"cannot load {name!r} with {cls.__name__}: {first}. A hub name (e.g. gpt2) downloads once "
            "and needs internet the first time; a local directory needs the files save_pretrained "
            "writes"
        ) from None


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within `timeout` seconds (HF_HUB_OFFLINE=1: no)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", ""):
        return False
    url = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (80 if url.scheme == "http" else 443)  # a mirror such as http://localhost:8080 keeps its port
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_tokenizer(name: str):
    """The pretrained model's tokenizer, left-padded, with a pad token (EOS when it has none, as GPT-2)."""
    from transformers import AutoTokenizer

    from toy_envs import WordTokenizer

    if os.path.isfile(os.path.join(os.path.expanduser(name), WordTokenizer.FILE)):  # a saved tiny text-task model
        return WordTokenizer.from_pretrained(os.path.expanduser(name))
    tokenizer = from_pretrained(AutoTokenizer, name)
    if tokenizer.eos_token is None:
        raise ValueError(
            f"the tokenizer of {name!r} has no EOS token, so responses cannot end; set eos_token "
            "(GPT-2: '<|endoftext|>') and save it again"
        )
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_object(spec: str, what: str):
    """'package.module:name' or 'path/to/file.py:name' → the object; one-line errors naming spec and problem."""
    target, sep, attr = spec.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise ValueError(f"{what} {spec!r} is neither a built-in name nor module:name or path/file.py:name")
    if target.endswith(".py"):
        path = os.path.abspath(os.path.expanduser(target))
        if not os.path.isfile(path):
            raise ValueError(f"{what} {spec!r}: no file {target}")
        modname = "credit_plugin_" + os.path.splitext(os.path.basename(path))[0]
        module = sys.modules.get(modname)
        if module is None or getattr(module, "__file__", None) != path:
            loader_spec = importlib.util.spec_from_file_location(modname, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[modname] = module  # (so that pickling and dataclasses inside it work)
            try:
                loader_spec.loader.exec_module(module)
            except Exception as e:
                del sys.modules[modname]
                raise ValueError(f"{what} {spec!r}: importing {target} failed: {type(e).__name__}: {e}") from None
    else:
        try:
            module = importlib.import_module(target)
        except Exception as e:
            raise ValueError(f"{what} {spec!r}: cannot import {target}: {type(e).__name__}: {e}") from None
    if not hasattr(module, attr):
        raise ValueError(f"{what} {spec!r}: {target} has no {attr!r}")
    return getattr(module, attr)
