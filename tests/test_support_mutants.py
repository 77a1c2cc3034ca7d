"""Support code: properties that mutation testing showed the other tests leave unchecked.

GridPaint's grid picture (cells, colours, weight digits, layout), the hub check (offline switch, host, failure),
the KV-cache name for either transformers generation, the official-reference hist weights, the integer ranges
of the option checks, the overlong-penalty error message, and the gymnasium envs' render/reset contracts.
Expected values are drawn or computed by hand (or with plain Python), never copied from running the code; the
network is never touched (the connection is monkeypatched)."""

import dataclasses
import math

import numpy as np
import pytest
import torch

import gcpo
import toy_envs
from gcpo_support import checks, kernels, loading
from gcpo_support.variants import hist_official, official_hist_loop
from tests.helpers import small_policy
from toy_envs.render import render_grid


# ---- render_grid: the picture, cell by cell -------------------------------------------------------------------
def coloured(rgb, mark):
    """A coloured cell as drawn by hand: background rgb, white foreground, the mark then a space, reset."""
    return f"\x1b[48;2;{rgb[0]};{rgb[1]};{rgb[2]}m\x1b[38;2;255;255;255m{mark} \x1b[0m"


RED, GREEN = (200, 40, 40), (40, 160, 60)  # the palette's red and green (green's three channels all differ)
# 2×3 grid in raster order: red, background, green / missing, an unknown colour (3 > 2 colours), background
GRID = [1, 0, 2, -1, 3, 0]


@pytest.mark.parametrize("shape", [(6,), (2, 3)])
def test_render_grid_without_weights_is_the_hand_drawn_picture(shape):
    """Without weights: colour c+1 is a blank cell on colours[c] (1 and len(colours) both coloured), 0 is '. ',
    a negative or unknown value is '? ', cells of a row are joined directly and rows by one newline, raster order
    (row r, column c = pixel r·W + c); the pixels may come flat or as an (H, W) array."""
    pixels = np.array(GRID).reshape(shape)
    want = coloured(RED, " ") + ". " + coloured(GREEN, " ") + "\n" + "? " + "? " + ". "
    assert render_grid(pixels, 2, 3, ["red", "green"]) == want


def test_render_grid_with_weights_shows_one_digit_per_cell():
    """With weights, every cell shows floor(10·w/max w) (9 at the max) in place of the blank: coloured cells keep
    their colour, a background cell is digit + '.', a missing or unknown one digit + '?'. Heats 0, .15, .55, .75,
    1, 1 sit away from digit boundaries, so a scale of 9.999 or 10 gives the same digits 0, 1, 5, 7, 9, 9."""
    weights = [0, 3, 11, 15, 20, 20]
    want = coloured(RED, "0") + "1." + coloured(GREEN, "5") + "\n" + "7?" + "9?" + "9."
    assert render_grid(GRID, 2, 3, ["red", "green"], weights) == want


# ---- hub_reachable: the offline switch, the host, a failed connection -----------------------------------------
class FakeConnection:
    """Stands in for socket.create_connection: records (address, timeout); raises `error` if given."""

    def __init__(self, error=None):
        self.calls, self.error = [], error

    def __call__(self, address, timeout=None):
        self.calls.append((address, timeout))
        if self.error is not None:
            raise self.error
        return self

    def close(self):
        pass


@pytest.mark.parametrize("offline", [None, "0", ""])
def test_hub_reachable_when_not_offline_and_the_connection_opens(monkeypatch, offline):
    """HF_HUB_OFFLINE unset, '0' or '' means online: the hub (huggingface.co, port 443) is tried, with the
    caller's timeout, and an open connection means reachable."""
    conn = FakeConnection()
    monkeypatch.setattr(loading.socket, "create_connection", conn)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    if offline is None:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    assert loading.hub_reachable(timeout=0.25) is True
    assert conn.calls == [(("huggingface.co", 443), 0.25)]


@pytest.mark.parametrize("offline", ["1", "true"])
def test_hub_unreachable_when_offline_without_trying(monkeypatch, offline):
    """Any other HF_HUB_OFFLINE value means offline: not reachable, and no connection is even attempted."""
    conn = FakeConnection()
    monkeypatch.setattr(loading.socket, "create_connection", conn)
    monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    assert loading.hub_reachable() is False
    assert conn.calls == []


def test_hub_reachable_uses_the_endpoint_host_and_reports_a_failed_connection(monkeypatch):
    """HF_ENDPOINT's host (scheme and path dropped) is the one tried; a connection error means not reachable."""
    conn = FakeConnection(error=OSError("no route"))
    monkeypatch.setattr(loading.socket, "create_connection", conn)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example/some/path")
    assert loading.hub_reachable(timeout=1.5) is False
    assert conn.calls == [(("hf-mirror.example", 443), 1.5)]


@pytest.mark.parametrize(
    "endpoint, address",
    [
        ("http://localhost:8080", ("localhost", 8080)),  # a local mirror keeps its own port
        ("http://mirror.example/hf", ("mirror.example", 80)),  # plain http: port 80
        ("https://mirror.example:8443/x", ("mirror.example", 8443)),
    ],
)
def test_hub_reachable_connects_to_the_endpoints_own_port(monkeypatch, endpoint, address):
    """The port comes from HF_ENDPOINT (or its scheme's default), not a fixed 443: a mirror that is up counts."""
    conn = FakeConnection()
    monkeypatch.setattr(loading.socket, "create_connection", conn)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    assert loading.hub_reachable(timeout=2.0) is True
    assert conn.calls == [(address, 2.0)]


# ---- cache_name: which transformers generation is installed -----------------------------------------------------
@pytest.mark.parametrize(
    "fields, want", [(("logits", "cache"), "cache"), (("logits", "past_key_values"), "past_key_values")]
)
def test_cache_name_follows_the_output_class_fields(monkeypatch, fields, want):
    """The KV cache is called `cache` exactly when the model-output class has a `cache` field (transformers 5),
    else `past_key_values` (4.x); checked on fake output classes with and without the field."""
    import transformers.modeling_outputs as outputs

    fake = dataclasses.make_dataclass("CausalLMOutputWithPast", [(f, object, None) for f in fields])
    monkeypatch.setattr(outputs, "CausalLMOutputWithPast", fake)
    assert kernels.cache_name() == want


# ---- the official hist weights against plain Python ---------------------------------------------------------------
def plain_hist(row_scores, row_mask, alpha):
    """The official law in plain Python on one row: ranks 1..n of the valid scores (distinct) in ascending order,
    u = (rank/n)^α, w = u/Σu·n on the valid positions, 0 elsewhere."""
    pos = [t for t, m in enumerate(row_mask) if m]
    n = len(pos)
    out = [0.0] * len(row_mask)
    if n == 0:
        return out
    order = sorted(pos, key=lambda t: row_scores[t])
    u = {t: ((k + 1) / n) ** alpha for k, t in enumerate(order)}
    total = math.fsum(u.values())
    for t in pos:
        out[t] = u[t] / total * n
    return out


def hist_case():
    """float64 scores (all distinct) and a mask with rows of 5 (with holes), 1, 0, 3, 3 and 6 valid tokens."""
    scores = [
        [0.3, 2.5, 1.25, 9.0, 0.7, 4.0],
        [5.0, 1.5, 2.0, 0.1, 0.2, 0.3],
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        [3.5, 0.25, 8.0, 1.0, 2.0, 7.0],
        [6.0, 5.0, 4.5, 3.0, 2.25, 1.0],
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
    ]
    mask = [
        [1, 1, 0, 1, 1, 1],
        [0, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 1, 0, 1, 0, 1],
        [1, 1, 1, 1, 1, 1],
    ]
    return scores, mask


@pytest.mark.parametrize("fn", [official_hist_loop, hist_official], ids=["loop", "vectorised"])
def test_official_hist_weights_match_plain_python(fn):
    """Both official-hist implementations give the plain-Python weights in float64 (to float64 rounding): a lone
    valid token weighs exactly 1, an empty row is all 0, padding is 0, and equal-length rows with holes in
    different places are each ranked on their own valid tokens."""
    scores, mask = hist_case()
    alpha = 2.15
    w = fn(torch.tensor(scores, dtype=torch.float64), torch.tensor(mask), alpha)
    assert w.dtype == torch.float64
    want = [plain_hist(s, m, alpha) for s, m in zip(scores, mask)]
    np.testing.assert_allclose(w.numpy(), np.array(want), rtol=1e-13, atol=0)
    assert w[1].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0]


# ---- option ranges: integer ranges ---------------------------------------------------------------------------------
def test_int_range_holds_exactly_the_integers_between_its_ends():
    """_int(lo, hi) holds the ints lo..hi, both ends included; not lo − 1 or hi + 1, not a float of an in-range
    integer, not a bool; without hi, every int from lo up."""
    r = checks._int(2, 5)
    assert [x in r for x in (1, 2, 3, 5, 6)] == [False, True, True, True, False]
    assert 3.0 not in r and True not in r
    up = checks._int(-1)
    assert -1 in up and 10**12 in up and -2 not in up and 4.0 not in up


@pytest.mark.parametrize(
    "valid, text",
    [
        (checks.Range(0, 1), "[0, 1]"),
        (checks.Range(1e-3, 1e3), "[0.001, 1000]"),
        (checks.Range(0, lo_open=True), "(0, inf)"),
        (checks.Range(-1, 0.5, hi_open=True), "[-1, 0.5)"),
        (checks.Range(1e-9, 1, lo_open=True, hi_open=True), "(1e-09, 1)"),
        (checks.Range(0, 1 - 1e-9, lo_open=True), "(0, 0.999999999]"),  # not "(0, 1]": 1 is outside
        (checks.Range(1, lo_open=True, also=(0,)), "0 or (1, inf)"),
        (checks.Range(2, 3, also=(0, 0.5)), "0 or 0.5 or [2, 3]"),
        (checks.Range(1, 7, integer=True), "int in [1, 7]"),
        (checks.Range(integer=True), "int in (-inf, inf)"),
    ],
)
def test_a_range_prints_in_interval_notation_by_hand(valid, text):
    assert str(valid) == text


@pytest.mark.parametrize("name", sorted(checks.RANGES))
def test_every_options_printed_range_holds_the_values_it_accepts(name):
    """What an error message shows as the valid values is what `in` accepts: each end is included exactly when its
    bracket is square, values beyond the ends and between them are judged as the printed interval says, and the
    extra values printed before "or" are accepted."""
    valid, text = checks.RANGES[name], str(checks.RANGES[name])
    *extra, interval = text.removeprefix("int in ").split(" or ")
    left, right = interval[0], interval[-1]
    cast = int if valid.integer else float
    lo, hi = (float(v) if v.endswith("inf") else cast(v) for v in interval[1:-1].split(", "))
    assert text.startswith("int in ") == valid.integer
    assert [float(v) for v in extra] == [float(v) for v in valid.also]
    assert (lo, hi) == (valid.lo, valid.hi)
    if math.isfinite(lo):
        assert (cast(lo) in valid) == (left == "[")
        assert cast(lo) - 1 not in valid or cast(lo) - 1 in valid.also
    if math.isfinite(hi):
        assert (cast(hi) in valid) == (right == "]")
        assert cast(hi) + 1 not in valid or cast(hi) + 1 in valid.also
    inside = cast((lo if math.isfinite(lo) else hi - 2) + 1) if valid.integer else None
    if inside is not None and inside < hi:
        assert inside in valid


def test_overlong_penalty_names_max_len_when_it_is_out_of_range():
    """A negative L_max is a ValueError that names the argument `max_len` and its value."""
    with pytest.raises(ValueError, match=r"^max_len=-1 "):
        gcpo.overlong_penalty(torch.tensor([1, 2]), -1, 1)


# ---- gymnasium envs: render and reset ---------------------------------------------------------------------------
def needle():
    """Needle with 4 positions, symbols a b c, the needle at position 2; responses are 4 tokens + EOS."""
    return toy_envs.make_task("needle", length=4, num_symbols=3, position=2)


def words(task, ids):
    return " ".join(task.vocab[i] for i in ids)


def test_task_render_is_prompt_line_then_response_line():
    """Task.render: 'prompt:   ' + prompt tokens joined by single spaces, a newline, 'response: ' + response
    tokens; with weights each response token is shaded white → red by weight/max (g = 255 − 200·w/max)."""
    t = needle()
    prompt = [t.token_id[s] for s in ("<bos>", "@2", "b")]
    response = [t.token_id[s] for s in (".", ",", "b")]
    assert t.render(prompt, response) == "prompt:   <bos> @2 b\nresponse: . , b"

    def shaded(tok, g):
        return f"\x1b[48;2;255;{g};{g}m\x1b[38;2;0;0;0m{tok}\x1b[0m"

    want = "prompt:   <bos> @2 b\nresponse: " + " ".join([shaded(".", 255), shaded(",", 155), shaded("b", 55)])
    assert t.render(prompt, response, [0.0, 1.0, 2.0]) == want


def test_task_env_renders_nothing_without_ansi_or_before_reset():
    """render() is None when render_mode is not 'ansi' (even mid-episode) and before the first reset."""
    plain = toy_envs.TaskEnv(needle())
    plain.reset(seed=0)
    assert plain.render() is None
    plain.step(np.full(5, 2))
    assert plain.render() is None
    assert toy_envs.TaskEnv(needle(), render_mode="ansi").render() is None


def test_task_env_render_shows_the_last_response():
    """After reset the response line is empty; after step it is the response just scored."""
    t = needle()
    env = toy_envs.TaskEnv(t, render_mode="ansi")
    obs, _ = env.reset(seed=0)
    assert env.render() == f"prompt:   {words(t, obs)}\nresponse: "
    action = [t.token_id[s] for s in (".", ".", "b", ".", "<eos>")]
    env.step(np.array(action))
    assert env.render() == f"prompt:   {words(t, obs)}\nresponse: . . b . <eos>"


def test_token_step_env_renders_nothing_without_ansi_or_before_reset():
    """The token-per-step wrapper renders only in 'ansi' mode and only after reset; in 'ansi' mode it shows the
    tokens chosen so far."""
    t = needle()
    plain = toy_envs.TokenStepEnv(toy_envs.TaskEnv(t))
    plain.reset(seed=0)
    plain.step(t.token_id["."])
    assert plain.render() is None
    ansi = toy_envs.TokenStepEnv(toy_envs.TaskEnv(t, render_mode="ansi"))
    assert ansi.render() is None
    obs, _ = ansi.reset(seed=0)
    ansi.step(t.token_id[","])
    ansi.step(t.token_id["."])
    assert ansi.render() == f"prompt:   {words(t, obs[:3])}\nresponse: , ."


def test_token_step_env_reset_passes_seed_and_options_to_the_wrapped_env():
    """reset(seed, options) hands both to the wrapped env (gymnasium's wrapper contract), and returns
    (observation, info) with the observation in the observation space: prompt + PAD-filled response."""
    import gymnasium as gym

    class Recorder(gym.Wrapper):
        def reset(self, *, seed=None, options=None):
            self.seen = (seed, options)
            return self.env.reset(seed=seed, options=options)

    t = needle()
    rec = Recorder(toy_envs.TaskEnv(t))
    env = toy_envs.TokenStepEnv(rec)
    obs, info = env.reset(seed=7, options={"note": 1})
    assert rec.seen == (7, {"note": 1})
    assert isinstance(info, dict) and env.observation_space.contains(obs)
    assert obs[3:].tolist() == [t.pad_id] * 5


@pytest.mark.parametrize(
    "positions, max_new_tokens, warm_steps, fits",
    [(11, 8, 0, True), (10, 8, 0, False), (11, 8, 100, False), (12, 8, 100, True), (12, 9, 0, True), (11, 9, 0, False)],
)
def test_check_positions_needs_prompt_plus_response_and_a_demonstration_only_when_warming_up(
    positions, max_new_tokens, warm_steps, fits
):
    """Needle: prompt 3 tokens, a demonstration 12. The model needs prompt + max_new_tokens positions, and 12 when
    it warms up; a model without a position count is not checked."""
    from types import SimpleNamespace

    task = toy_envs.make_task("needle")
    assert (task.prompt_len, task.demo_len) == (3, 12)
    cfg = SimpleNamespace(model="m", max_new_tokens=max_new_tokens, warm_steps=warm_steps)
    model = SimpleNamespace(config=SimpleNamespace(n_positions=positions))
    if fits:
        checks.check_positions(model, cfg, task)
    else:
        with pytest.raises(ValueError, match=f"has {positions} positions"):
            checks.check_positions(model, cfg, task)
    checks.check_positions(SimpleNamespace(config=SimpleNamespace()), cfg, task)


def test_dr_grpo_aggregation_accepts_a_cap_of_one_token():
    """seq-mean-token-sum-norm with max_len=1 on one-token responses: Σ m·x / (N · 1); a cap below the longest
    response is an error."""
    x, mask = torch.tensor([[2.0], [-1.0], [5.0]]), torch.tensor([[1], [1], [0]])
    assert gcpo.aggregate(x, mask, "seq-mean-token-sum-norm", max_len=1).item() == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="max_len"):
        gcpo.aggregate(torch.ones(2, 2), torch.ones(2, 2), "seq-mean-token-sum-norm", max_len=1)


def test_policy_loss_checks_logp_itself():
    """logp's own shape is checked first: 1-D, or another shape than the other inputs', is a one-line error."""
    ones = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="logp must be 2-D"):
        gcpo.policy_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="logp_old must have logp's shape \\(2, 4\\)"):
        gcpo.policy_loss(torch.zeros(2, 4), ones, ones, torch.ones(2, 3))


@pytest.mark.parametrize(
    "call, start",
    [
        (lambda: gcpo.aggregate(torch.ones(2, 2), torch.ones(2, 2), "mean"), "unknown loss_agg 'mean'"),
        (lambda: gcpo.group_advantages(torch.ones(4), 2, "groups"), "unknown advantage scale 'groups'"),
        (lambda: gcpo.group_advantages(torch.ones(4), 2, eps=-1.0), "eps=-1.0 is outside"),
        (lambda: gcpo.normalize_weights(torch.rand(2, 3), torch.ones(2, 3), "histo"), "unknown normalization 'histo'"),
        (lambda: gcpo.normalize_weights(torch.rand(2, 3), torch.ones(2, 3), ties="first"), "unknown ties 'first'"),
        (lambda: gcpo.normalize_weights(torch.rand(2, 3), torch.ones(2, 3), softmax_temp=0.0), "softmax_temp=0.0 is"),
    ],
)
def test_bad_options_of_the_pure_functions_name_the_option(call, start):
    with pytest.raises(ValueError) as e:
        call()
    assert str(e.value).startswith(start)


@pytest.mark.parametrize("device", ["cpu", "cpu:0"])
def test_autocast_runs_matmuls_in_bfloat16_only_under_dtype_bfloat16(device):
    """autocast takes the device type without its index and is on exactly when dtype is bfloat16."""
    from types import SimpleNamespace

    for dtype, want in (("bfloat16", torch.bfloat16), ("float32", torch.float32)):
        with gcpo.autocast(SimpleNamespace(device=device, dtype=dtype)):
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == want


def test_token_scores_check_both_log_probs_and_name_them():
    """logp is checked first (2-D, floating point), then logp_neg; bfloat16 log-probs are scored in float32."""
    lp, mask = torch.tensor([[-0.5, -1.0, -2.0]]), torch.ones(1, 3)
    with pytest.raises(ValueError, match="logp must be 2-D"):
        gcpo.token_scores(lp[0], lp[0], mask[0])
    with pytest.raises(ValueError, match="logp must be floating point"):
        gcpo.token_scores(lp.long(), lp, mask)
    with pytest.raises(ValueError, match="logp_neg must be floating point"):
        gcpo.token_scores(lp, lp.long(), mask)
    with pytest.raises(ValueError, match="unknown divergence 'kl2'"):
        gcpo.token_scores(lp, lp - 1, mask, "kl2")
    neg = lp - torch.tensor([[1e-3, 2e-3, 0.5]])  # contrasts that bfloat16 arithmetic would round away
    half = gcpo.token_scores(lp.bfloat16(), neg.bfloat16(), mask)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, gcpo.token_scores(lp.bfloat16().float(), neg.bfloat16().float(), mask))


def test_a_bad_temperature_is_named():
    from tests.test_pipeline import handmade_batch

    model, b = handmade_batch()
    with pytest.raises(ValueError, match="^temperature=0 is outside"):
        gcpo.response_logprobs(model, b["prompts"], b["prompt_mask"], b["responses"], 0)


def test_load_object_imports_a_file_once_and_tells_apart_files_of_one_name(tmp_path):
    """A plug-in file is executed once however often it is named (the same object comes back); another file
    with the same base name elsewhere is its own module."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "plug.py").write_text(f"RUNS = []\nRUNS.append(1)\ndef f():\n    return {d!r}\n")
    a, b = (str(tmp_path / d / "plug.py") for d in ("a", "b"))
    first = loading.load_object(f"{a}:f", "credit scheme")
    assert loading.load_object(f"{a}:f", "credit scheme") is first and first() == "a"
    assert loading.load_object(f"{a}:RUNS", "credit scheme") == [1]
    assert loading.load_object(f"{b}:f", "credit scheme")() == "b"
    assert loading.load_object(f"{a}:f", "credit scheme")() == "a"


@pytest.mark.parametrize("spec", [":f", "gcpo:", "gcpo:1f", "gcpo", "gcpo:f-g"])
def test_load_object_without_a_module_and_a_name_is_one_line_naming_the_forms(spec):
    with pytest.raises(ValueError, match="is neither a built-in name nor module:name or path/file.py:name$"):
        loading.load_object(spec, "credit scheme")


def test_model_positions_reads_gpt2s_n_positions_or_else_max_position_embeddings():
    from types import SimpleNamespace

    def positions(**config):
        return checks.model_positions(SimpleNamespace(config=SimpleNamespace(**config)))

    assert positions(n_positions=64) == 64
    assert positions(max_position_embeddings=128) == 128
    assert positions(n_positions=64, max_position_embeddings=128) == 64
    assert positions() is None


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(eos_id=11), "^eos_id=11 is outside its valid range int in \\[0, 11\\)$"),
        (dict(pad_id=-1), "^pad_id=-1 is outside"),
        (dict(eos_id=2.0), "^eos_id=2.0 is outside"),
        (dict(max_new_tokens=-1), "^max_new_tokens=-1 is outside"),
        (dict(prompts=torch.tensor([[1, 11]])), "prompts"),  # one prompt, a token id past the vocabulary
        (dict(neg_prompts=torch.ones(1, 3, dtype=torch.long)), "^neg_mask must have neg_prompts's shape \\(1, 3\\)"),
        (dict(neg_prompts=torch.ones(1, 10, dtype=torch.long), neg_mask=torch.ones(1, 10)), "positions"),
    ],
)
def test_sample_checks_its_ids_shapes_and_positions_with_one_line_errors(change, message):
    """Special ids inside [0, V) and integers; token ids inside the vocabulary even for a single prompt; the
    negative prompts' shape and, with the response, the model's 16 positions."""
    args = dict(prompts=torch.tensor([[1, 2]]), max_new_tokens=8, eos_id=2, pad_id=0)
    args |= dict(neg_prompts=torch.ones(1, 2, dtype=torch.long), neg_mask=torch.ones(1, 2), guidance_scale=2.0)
    args |= change
    with pytest.raises(ValueError, match=message) as e:
        gcpo.sample(small_policy(), prompt_mask=torch.ones_like(args["prompts"]), **args)
    assert "\n" not in str(e.value)


def test_parse_task_args_by_hand():
    """Comma-separated k=v items, spaces and empty items ignored, values read as Python literals (else kept as
    text), split at the first '=' only."""
    got = loading.parse_task_args(" length=16, num_symbols=8,,label=a=b, name='x' ,flag=True")
    assert got == {"length": 16, "num_symbols": 8, "label": "a=b", "name": "x", "flag": True}


@pytest.mark.parametrize(
    "env, options, message",
    [
        ("needle", dict(negative="opposite"), "^negative='opposite' is not offered by needle"),
        ("needle", dict(max_new_tokens=8), "^max_new_tokens=8 is shorter than a full needle response \\(9 tokens"),
        ("needle", dict(max_new_tokens=1), "^max_new_tokens=1 is shorter"),
        ("needle", dict(max_new_tokens=9, overlong_buffer=10), "^overlong_buffer=10 exceeds the response cap 9"),
        ("needle", dict(overlong_buffer=10), "^overlong_buffer=10 exceeds the response cap 9"),
        ("topic", dict(overlong_filter=True), "^overlong_filter masks responses without EOS"),
    ],
)
def test_task_options_the_task_must_judge_are_one_line_errors(env, options, message):
    task = toy_envs.make_task(env)
    with pytest.raises(ValueError, match=message):
        checks.check_task_options(gcpo.make_config("gcpo", env=env, **options), task)


@pytest.mark.parametrize(
    "env, options",
    [
        ("needle", dict(negative="null", max_new_tokens=9, overlong_buffer=9)),
        ("needle", dict(max_new_tokens=0, overlong_buffer=9, overlong_filter=True)),
        ("needle", dict(max_new_tokens=20)),
        ("topic", dict(max_new_tokens=3)),  # a text response need not end with EOS
    ],
)
def test_task_options_at_their_limits_pass(env, options):
    checks.check_task_options(gcpo.make_config("gcpo", env=env, **options), toy_envs.make_task(env))


def test_a_schemes_nan_is_refused_on_valid_tokens_only():
    mask = torch.tensor([[1, 1, 0]])

    def nan_at(j):
        def scheme(mask):
            w = mask.float()
            w[0, j] = float("nan")
            return w

        return scheme

    from gcpo_support import schemes

    assert schemes.call(nan_at(2), {"mask": mask}).shape == (1, 3)
    with pytest.raises(ValueError, match="returned NaN or inf weights on valid tokens"):
        schemes.call(nan_at(1), {"mask": mask})


def test_task_names_and_env_ids_are_found_in_any_case_and_anything_else_is_one_line():
    assert toy_envs.task_name("NEEDLE") == toy_envs.task_name("toy_envs/needle-V0") == "needle"
    assert toy_envs.task_name("toy_envs/Needle-v0") == "needle"
    with pytest.raises(ValueError, match="^unknown env 3; choose one of"):
        toy_envs.task_name(3)
    assert "self" not in toy_envs.task_arguments("needle") and toy_envs.task_arguments("needle")["length"] == 8


@pytest.mark.parametrize(
    "options, law",
    [
        (dict(normalization="softmax", softmax_temp=0.5), dict(normalization="softmax", softmax_temp=0.5)),
        (
            dict(ties="official", top_fraction=0.25, target_mass=0.6),
            dict(ties="official", top_fraction=0.25, target_mass=0.6),
        ),
        (dict(normalization="minmax"), dict(normalization="minmax")),
    ],
)
def test_the_contrast_scheme_applies_the_runs_weight_law_and_claims_what_it_keeps(options, law):
    """credit_scheme hands every law option to token_weights; it claims uniform weights for an uninformative
    contrast exactly for softmax, minmax, and hist with average ties."""
    from gcpo_support import schemes

    g = torch.Generator().manual_seed(0)
    logp, mask = -torch.rand(3, 6, generator=g), torch.ones(3, 6)
    logp[:, 1], logp[:, 5] = logp[:, 0], logp[:, 4]  # tied scores in every row, so the tie rule matters too
    logp_neg = logp - torch.tensor([0.2, 0.2, 0.5, 0.1, 0.7, 0.7])
    scheme = gcpo.credit_scheme(gcpo.make_config("gcpo", **options))
    want = gcpo.token_weights(logp, logp_neg, mask, **law)
    torch.testing.assert_close(schemes.call(scheme, dict(logp=logp, logp_neg=logp_neg, mask=mask)), want)
    even = law.get("normalization", "hist") in ("softmax", "minmax") or law.get("ties", "average") == "average"
    assert ("uniform_when_uninformative" in schemes.info(scheme).claims) == even


def test_resolve_fills_the_derived_values():
    """device 'auto' → cpu here, cap 0 → the task's, warm_steps −1 → 1200 for the tiny model, negative '' → the
    task's first kind; given values stay."""
    task = toy_envs.make_task("needle")
    cfg = gcpo.resolve(gcpo.make_config("gcpo", device="auto", max_new_tokens=0, warm_steps=-1, negative=""), task)
    assert (cfg.max_new_tokens, cfg.warm_steps, cfg.negative) == (9, 1200, "null")
    assert cfg.device == ("cuda" if torch.cuda.is_available() else "cpu")
    kept = gcpo.resolve(gcpo.make_config("gcpo", device="cpu", max_new_tokens=12, warm_steps=5), task)
    assert (kept.device, kept.max_new_tokens, kept.warm_steps) == ("cpu", 12, 5)


# ---- credit scheme declarations ------------------------------------------------------------------------------
def test_the_shuffled_control_declares_what_a_permutation_keeps():
    """Its name, the inputs it names (the scheme's, plus mask and generator even when the scheme names neither),
    the scheme's claims but `monotone`, and the scheme's unclaimed properties plus the three a per-batch
    permutation breaks."""
    from gcpo_support import schemes

    base = gcpo.credit_scheme(gcpo.make_config("gcpo"))
    b, i = schemes.info(base), schemes.info(schemes.shuffled(base))
    assert (
        i.name == "shuffled" == schemes.shuffled(base).__name__
        and schemes.info(schemes.shuffled(base, "p")).name == "p"
    )
    assert "monotone" in b.claims and i.claims == tuple(c for c in b.claims if c != "monotone") != ()
    random = dict.fromkeys(("padding_invariant", "row_independent", "micro_batch_invariant"), schemes.RANDOM_POSITION)
    assert i.not_claimed == {**b.not_claimed, **random}

    def from_logp(logp, scale=2.0):
        return logp.exp() * scale

    assert schemes.needs(from_logp) == ("logp",)
    assert set(schemes.needs(schemes.shuffled(from_logp))) == {"logp", "mask", "generator"}


def test_credit_scheme_declarations_by_hand():
    from gcpo_support import schemes

    @schemes.credit_scheme(claims="monotone", signal="entropy", not_claimed={"total_preserved": "a mask"})
    def mine(entropy, mask):
        return mask.float()

    assert schemes.info(mine) == schemes.SchemeInfo("mine", {"total_preserved": "a mask"}, ("monotone",), "entropy")
    assert schemes.info(schemes.credit_scheme("named")(mine)).name == "named"
    assert schemes.info(lambda mask: mask).name == "<lambda>"

    class Callable:
        def __call__(self, mask):
            return mask

    assert schemes.info(Callable()).name == "Callable"
    with pytest.raises(ValueError, match="unknown properties \\['fast'\\]"):
        schemes.credit_scheme(not_claimed={"fast": "why"})
    with pytest.raises(ValueError, match="unknown properties \\['speed'\\]"):
        schemes.credit_scheme(claims=("speed",))
    with pytest.raises(ValueError, match="asks for 'args', which is not an input"):
        schemes.needs(lambda mask, *args: mask)


@pytest.mark.parametrize("divergence", ["kl", "full_kl", "abs", "info_gain"])
def test_the_contrast_scheme_claims_monotone_and_its_signal_by_divergence(divergence):
    from gcpo_support import schemes

    i = schemes.info(gcpo.credit_scheme(gcpo.make_config("gcpo", divergence=divergence)))
    assert ("monotone" in i.claims) == (divergence in ("kl", "full_kl"))
    assert "uniform_when_uninformative" in i.claims  # hist with average ties, the default
    assert i.signal == ("full_kl" if divergence == "full_kl" else "contrast")


# ---- configuration checks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, message",
    [
        (dict(dynamic_sampling=1), "^dynamic_sampling=1 must be true or false"),
        (dict(n_embd=30, n_head=4), "n_embd"),
        (dict(kl_reweight=True, beta=0.0), "kl_reweight"),
        (dict(kl_reweight=True, beta=0.1, credit="uniform"), "kl_reweight"),
        (dict(log_token_moves=True, credit="uniform"), "log_token_moves"),
        (dict(surrogate="log_hinge", dual_clip=2.0), "dual_clip"),
        (dict(credit="nowhere.py:f"), "^credit scheme 'nowhere.py:f': no file nowhere.py$"),
    ],
)
def test_option_combinations_that_cannot_work_are_one_line_errors(options, message):
    with pytest.raises(ValueError, match=message) as e:
        cfg = gcpo.make_config("gcpo", **options)
        checks.validate_config(cfg)
        gcpo.resolve(cfg, toy_envs.make_task("needle"))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "options",
    [
        dict(kl_reweight=True, beta=1.0),
        dict(log_token_moves=True),
        dict(n_embd=32, n_head=4),
        dict(model="m", n_embd=30),
    ],
)
def test_option_combinations_that_work_pass(options):
    checks.validate_config(gcpo.make_config("gcpo", **options))


def test_unknown_options_and_cuda_without_cuda_are_one_line():
    with pytest.raises(ValueError, match="^unknown option\\(s\\) \\['speed'\\]"):
        gcpo.make_config("gcpo", speed=2)
    if torch.cuda.is_available():
        checks.validate_config(gcpo.make_config("gcpo", device="cuda"))
    else:
        with pytest.raises(ValueError, match="^device='cuda' but CUDA is not available"):
            checks.validate_config(gcpo.make_config("gcpo", device="cuda"))


def test_out_and_html_must_be_writable_a_folder_and_a_file(tmp_path):
    (tmp_path / "page.html").write_text("old")
    checks.validate_config(
        gcpo.make_config("gcpo", out=str(tmp_path / "new" / "run"), html=str(tmp_path / "page.html"))
    )
    with pytest.raises(ValueError, match="^out=.* exists and is not a directory$"):
        checks.validate_config(gcpo.make_config("gcpo", out=str(tmp_path / "page.html")))
    with pytest.raises(ValueError, match="^html=.* cannot be written"):
        checks.validate_config(gcpo.make_config("gcpo", html=str(tmp_path / "page.html" / "x.html")))


@pytest.mark.parametrize("top_fraction, target_mass", [(0.4, 0.0), (1.0, 0.8), (1.5, 0.8), (1e-20, 0.5)])
def test_hist_parameters_outside_0_1_are_named(top_fraction, target_mass):
    with pytest.raises(ValueError, match="must both be in \\(0, 1\\)"):
        checks.check_hist_params(top_fraction, target_mass)


def test_under_mutmut_a_mutants_tests_run_quickest_first_file_by_file(tmp_path, monkeypatch):
    """conftest's ordering: files by the mean of their tests' recorded seconds, then tests by their own; only for a
    mutant's run (MUTANT_UNDER_TEST names a mutant), never for mutmut's stats run or outside mutmut."""
    import json
    from types import SimpleNamespace

    import conftest

    seconds = {"a.py::slow": 3.0, "a.py::quick": 0.5, "b.py::only": 1.0}  # means: a.py 1.75, b.py 1.0
    (tmp_path / "mutmut-stats.json").write_text(json.dumps({"duration_by_test": seconds}))
    monkeypatch.chdir(tmp_path)
    conftest._mutmut_test_durations.cache_clear()
    try:
        for env, want in (
            ("gcpo.x_f__mutmut_3", ["b.py::only", "a.py::quick", "a.py::slow"]),
            ("stats", ["a.py::slow", "b.py::only", "a.py::quick"]),
        ):
            monkeypatch.setenv("MUTANT_UNDER_TEST", env)
            items = [SimpleNamespace(nodeid=n) for n in ("a.py::slow", "b.py::only", "a.py::quick")]
            conftest.pytest_collection_modifyitems(None, items)
            assert [i.nodeid for i in items] == want
    finally:
        conftest._mutmut_test_durations.cache_clear()
