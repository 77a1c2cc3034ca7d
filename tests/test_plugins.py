"""Plug-ins: a credit scheme or a task written outside the repository goes in by `module:name` or
`path/file.py:name`, trains through the same loop, and is found again by a freshly spawned process (the study's
workers); anything that cannot be loaded is one line naming the spec and the problem."""

import multiprocessing as mp
import textwrap

import pytest
import torch

import gcpo
from gcpo_support import schemes
from gcpo_support.loading import build_task

TINY = dict(steps=2, warm_steps=5, batch_prompts=4, group_size=4, eval_prompts=8, device="cpu", show=0)

SCHEME = '''
import torch

def last_token_heavy(mask):
    """Twice the credit on each response's last token, the rest shared so that the mean stays 1."""
    w = mask.float()
    n = w.sum(1, keepdim=True)
    last = (mask.cumsum(1) == n) & mask.bool()
    w = torch.where(last, 2.0 * torch.ones_like(w), w)
    return torch.where(n > 1, w * n / w.sum(1, keepdim=True).clamp(min=1e-30), mask.float())

def asks_for_too_much(mask, logits):
    return mask.float()
'''

TASK = '''
from toy_envs.tasks import Needle

class FarNeedle(Needle):
    """The needle task with the key position at the very end of the response."""
    name = "farneedle"

    def __init__(self, length: int = 6):
        super().__init__(length=length, position=length - 1)
'''


@pytest.fixture
def plugin_dir(tmp_path):
    (tmp_path / "my_scheme.py").write_text(textwrap.dedent(SCHEME))
    (tmp_path / "my_task.py").write_text(textwrap.dedent(TASK))
    return tmp_path


def test_a_scheme_from_a_file_trains_and_is_what_the_loss_uses(plugin_dir):
    spec = f"{plugin_dir / 'my_scheme.py'}:last_token_heavy"
    result = gcpo.train(gcpo.make_config("gcpo", credit=spec, **TINY), progress=False)
    h = result["history"][-1]
    assert all(torch.isfinite(torch.tensor(v)) for v in (h["pg_loss"], h["grad_norm"]))
    scheme = gcpo.credit_scheme(result["cfg"])
    assert schemes.info(scheme).name == "last_token_heavy" and schemes.needs(scheme) == ("mask",)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    torch.testing.assert_close(scheme(mask), torch.tensor([[0.75, 0.75, 1.5, 0.0], [1.0, 0.0, 0.0, 0.0]]))


def test_a_task_from_a_file_trains_with_task_args(plugin_dir):
    spec = f"{plugin_dir / 'my_task.py'}:FarNeedle"
    cfg = gcpo.make_config("gcpo", env=spec, task_args="length=5", **TINY)
    task, _ = build_task(cfg)
    assert task.name == "farneedle" and task.position == 4 and task.max_new_tokens == 6
    result = gcpo.train(cfg, progress=False)
    assert result["task"].position == 4 and len(result["history"]) == 2


def _build_in_child(spec, queue):
    from gcpo_support.loading import build_task

    task, _ = build_task(gcpo.make_config("gcpo", env=spec, task_args="length=7"))
    queue.put((task.name, task.position))


def test_a_plugged_in_task_is_found_by_a_spawned_worker(plugin_dir):
    """The study's workers are spawned, fresh interpreters: the spec string alone must bring the task back."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_build_in_child, args=(f"{plugin_dir / 'my_task.py'}:FarNeedle", queue))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0 and queue.get(timeout=5) == ("farneedle", 6)


@pytest.mark.parametrize(
    "field, spec, words",
    [
        ("credit", "{d}/my_scheme.py:nope", ["has no 'nope'"]),
        ("credit", "{d}/missing.py:f", ["no file"]),
        ("credit", "no_such_module_zz:f", ["cannot import no_such_module_zz"]),
        ("credit", "{d}/my_scheme.py:asks_for_too_much", ["asks for 'logits'", "not an input"]),
        ("credit", "shuffle", ["unknown credit scheme 'shuffle'", "shuffled"]),
        ("env", "{d}/my_scheme.py:last_token_heavy", ["not a subclass of toy_envs.Task"]),
        ("env", "{d}/my_task.py:FarNeedle", ["does not take task_args"]),
    ],
)
def test_plugins_that_cannot_load_are_one_line_errors(plugin_dir, capsys, field, spec, words):
    argv = [f"--{field}", spec.format(d=plugin_dir), "--steps", "0", "--warm-steps", "0", "--show", "0"]
    if field == "env" and "FarNeedle" in spec:
        argv += ["--task-args", "colour=3"]
    assert gcpo.cli(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gcpo.py: error:"), err
    assert all(w in err[0] for w in words), err[0]
