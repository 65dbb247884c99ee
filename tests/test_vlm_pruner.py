"""vlm_pruner: parity with the official code (fixtures), the fill rule, coordinates, ablations, batching, dtypes.

The parity fixtures in tests/data/parity/vlm_pruner/ were produced by running the
official implementation (see docs/methods/vlm_pruner.md). ``reference_select`` below is a
deliberately plain per-sample re-statement of the method (chunk by chunk, full
similarity matrix) that the vectorised core must agree with on random inputs.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import tokenprune as tp
from tokenprune import Context, StrategyInputError
from tokenprune.testing.inputs import grid_coords, make_inputs
from tokenprune_plugins import _vlm_pruner_core as core

FIXTURE_DIR = Path(__file__).parent / "data" / "parity" / "vlm_pruner"
FIXTURES = sorted(FIXTURE_DIR.glob("*.pt"))
_CACHE: dict[str, dict] = {}


def load_case(path: Path) -> dict:
    if path.name not in _CACHE:
        _CACHE[path.name] = torch.load(path, weights_only=True)
    return _CACHE[path.name]


def case_params(case: dict) -> dict:
    """The strategy params that reproduce a fixture's official configuration."""
    cfg = case["cfg"]
    return {
        "faithful": True,
        "kappa": cfg["pivot_image_token"],
        "tau0": cfg["threshold"],
        "token_batch": cfg["token_batch"],
        "qwen_unmerged_grid": (cfg["pos_height"], cfg["pos_width"]) != tuple(case["grid_hw"]),
    }


def run_case(case: dict, **overrides):
    strategy = tp.get_strategy("vlm_pruner", **{**case_params(case), **overrides})
    ctx = Context(hidden=case["in_hidden"][None].clone())
    return strategy.select(case["in_keys"][None], None, case["in_coords"], case["budget"], ctx)


def kept(sel, b=0):
    row = sel.keep[b]
    return row[row >= 0]


def case_named(fragment: str) -> dict:
    (path,) = [p for p in FIXTURES if fragment in p.name]
    return load_case(path)


FILLED = [p for p in FIXTURES if load_case(p)["out_count"] == load_case(p)["budget"]]
UNDERFILLED = [p for p in FIXTURES if load_case(p)["out_count"] < load_case(p)["budget"]]


def test_fixtures_are_present():
    assert len(FIXTURES) == 10 and len(UNDERFILLED) == 3


# ------------------------------------------------------------------ parity


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem.split("__", 1)[1])
def test_faithful_matches_the_official_code(path):
    case = load_case(path)
    sel = run_case(case)
    assert torch.equal(kept(sel), case["out_kept_idx"]), "kept set differs from the official code"
    assert sel.info["counts"] == [case["out_count"]]
    assert sel.info["underfilled"] == [case["out_count"] < case["budget"]]
    assert torch.equal(sel.info["order"][0], case["dbg_selection_order"])
    assert torch.equal(sel.info["pivots"][0], case["dbg_pivots"])
    assert sel.info["final_threshold"] == [pytest.approx(case["dbg_final_threshold"], abs=1e-12)]
    assert torch.equal(sel.info["merged"][0], case["out_swa_updated"])
    torch.testing.assert_close(sel.hidden[0], case["out_hidden_kept"], rtol=1e-4, atol=1e-5)
    rel = (sel.hidden[0] - case["out_hidden_kept"]).norm(dim=1) / case["out_hidden_kept"].norm(dim=1)
    assert float(rel.max()) < 1e-4


def test_untouched_kept_rows_are_bit_identical():
    case = case_named("b128__segments__s1005")
    sel = run_case(case)
    untouched = ~sel.info["merged"][0]
    assert bool(untouched.any())
    assert torch.equal(sel.hidden[0][untouched], case["in_hidden"][kept(sel)][untouched])


# ------------------------------------------------------------------ budget / fill rule


@pytest.mark.parametrize("path", FILLED, ids=lambda p: p.stem.split("__", 1)[1])
def test_default_equals_faithful_whenever_the_official_code_fills(path):
    case = load_case(path)
    exact, faithful = run_case(case, faithful=False), run_case(case)
    assert torch.equal(exact.keep, faithful.keep)
    assert torch.equal(exact.info["order"], faithful.info["order"])
    assert torch.equal(exact.hidden, faithful.hidden)


@pytest.mark.parametrize("path", UNDERFILLED, ids=lambda p: p.stem.split("__", 1)[1])
def test_default_fills_the_budget_by_raising_the_threshold(path):
    case = load_case(path)
    exact, faithful = run_case(case, faithful=False), run_case(case)
    n_official = case["out_count"]
    assert exact.info["counts"] == [case["budget"]] and exact.info["underfilled"] == [False]
    assert faithful.info["counts"] == [n_official] and faithful.info["underfilled"] == [True]
    # the default mode goes on from where the official code stopped
    assert torch.equal(exact.info["order"][0, :n_official], faithful.info["order"][0])
    assert exact.info["final_threshold"][0] > faithful.info["final_threshold"][0]
    assert exact.info["rounds"][0] > faithful.info["rounds"][0]


def test_threshold_jump_is_the_first_step_above_the_best_score():
    tau = torch.tensor([0.8, 0.8, 0.7], dtype=torch.float64)
    best = torch.tensor([1.03, 0.85, 0.7], dtype=torch.float32)
    nxt = core.jump_threshold(tau, best, 0.1)
    assert bool((nxt.float() > best).all()), "the best candidate must pass the new threshold"
    assert nxt.tolist() == pytest.approx([1.1, 0.9, 0.8]), "and no earlier step of the sequence does"
    zero = core.jump_threshold(tau, best, 0.0)
    assert bool((zero.float() > best).all()) and bool((zero.float() <= torch.nextafter(best, best + 1)).all())


def test_budget_below_kappa():
    case = case_named("b64__smooth__s1001")
    pivots = case["dbg_pivots"]  # the official max-min pivots, in pick order

    def select(faithful):
        return tp.get_strategy("vlm_pruner", faithful=faithful).select(
            case["in_keys"][None], None, case["in_coords"], 2, Context(hidden=case["in_hidden"][None]))

    assert torch.equal(kept(select(False)), pivots[:2].sort().values), "default keeps the first `budget` pivots"
    over = select(True)
    assert over.info["counts"] == [4], "the official code keeps every pivot"
    assert torch.equal(kept(over), pivots.sort().values)


def test_budget_n_keeps_everything_unchanged():
    s = tp.get_strategy("vlm_pruner")
    keys, _, coords, ctx = make_inputs(s, batch=2, h=6, w=7)
    sel = s.select(keys, None, coords, 42, ctx)
    assert torch.equal(sel.keep, torch.arange(42).expand(2, 42))
    assert torch.equal(sel.hidden, ctx.hidden)


def test_exact_budget_follows_faithful():
    assert tp.get_strategy("vlm_pruner").exact_budget
    assert not tp.get_strategy("vlm_pruner", faithful=True).exact_budget


# ------------------------------------------------------------------ batching


def test_batch_pads_underfilled_rows_and_matches_single_calls():
    a, b = case_named("b128__segments__s1005"), case_named("b128__smooth-highdc__s1006")
    s = tp.get_strategy("vlm_pruner", **case_params(a))
    ctx = Context(hidden=torch.stack([a["in_hidden"], b["in_hidden"]]))
    sel = s.select(torch.stack([a["in_keys"], b["in_keys"]]), None, a["in_coords"], 128, ctx)
    assert sel.keep.shape == (2, 45) and sel.info["counts"] == [45, 4]
    assert bool((sel.keep[1, 4:] == -1).all())
    for row, case in enumerate((a, b)):
        n = case["out_count"]
        assert torch.equal(sel.keep[row, :n], case["out_kept_idx"])
        torch.testing.assert_close(sel.hidden[row, :n], case["out_hidden_kept"], rtol=1e-4, atol=1e-5)


BATCH_CASES = [
    {},
    {"faithful": True, "tau0": 0.5},  # samples need 1 to 3 rounds
    {"token_batch": 3, "bss": False, "tau0": 0.4},  # one sample needs a threshold jump
    {"faithful": True, "token_batch": 3, "bss": False, "tau0": 0.4},  # ... and under-fills here (padding)
    {"tau0": 0.2, "tau_step": 0.05},  # jumps in every sample, 10 to 12 rounds
]


@pytest.mark.parametrize("params", BATCH_CASES, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()) or "default")
def test_batch_equals_single_calls(params):
    s = tp.get_strategy("vlm_pruner", top_q=32, **params)
    keys, _, coords, ctx = make_inputs(s, batch=4, h=9, w=11, seed=7)
    together = s.select(keys, None, coords, 25, ctx)
    for b in range(4):
        alone = s.select(keys[b:b + 1], None, coords, 25, Context(hidden=ctx.hidden[b:b + 1]))
        assert torch.equal(kept(alone), kept(together, b))
        n = alone.info["counts"][0]
        torch.testing.assert_close(alone.hidden[0, :n], together.hidden[b, :n], rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ reference re-statement


def reference_select(keys, hidden, pos, inv_dmax, budget, *, kappa=4, pivots="maxmin", top_q=256, lam=0.5,
                     bss=True, tau0=0.8, tau_step=0.1, chunk=16, beta=0.3, faithful=False):
    """One sample, straight from docs/methods/vlm_pruner.md: full matrices, a list for the selection, chunk by chunk."""
    N, D = hidden.shape
    x = hidden[:, hidden.var(dim=0).topk(min(top_q, D)).indices]
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)
    sim = x @ x.T
    dist = torch.cdist(pos, pos)
    l1 = keys.abs().sum(1)
    if pivots == "topk_l1":
        chosen = torch.sort(l1, descending=True, stable=True).indices[:kappa].tolist()
    else:
        chosen = [int(l1.argmax())]
        while len(chosen) < kappa:
            d = torch.cdist(keys, keys[chosen]).min(1).values
            d[chosen] = -1
            chosen.append(int(d.argmax()))
    selected = chosen if faithful else chosen[:budget]

    def score(idx):
        s = sim[idx][:, selected]
        if bss:
            s = s * (1.0 + lam * (dist[idx][:, selected].min(1, keepdim=True).values * inv_dmax))
        return s.max(1).values

    tau, first_round = tau0, True
    while len(selected) < budget:
        if not first_round:
            tau += tau_step
        first_round = False
        before = len(selected)
        cands = torch.tensor([i for i in range(N) if i not in set(selected)])
        ranked = cands[torch.sort(1.0 - score(cands), descending=True, stable=True).indices]
        for c, start in enumerate(range(0, len(ranked), chunk)):
            if c == 1 and len(selected) == before:
                break
            members = ranked[start:start + chunk]
            s = score(members)
            take = members[s < tau].tolist()
            if len(selected) + len(take) > budget:
                best = torch.sort(1.0 - s, descending=True, stable=True).indices[: budget - len(selected)]
                take = members[best].tolist()
            selected += take
            if len(selected) >= budget:
                break
        if faithful and len(selected) == before:
            break
    order = torch.tensor(selected)
    dropped = torch.tensor([i for i in range(N) if i not in set(selected)], dtype=torch.long)
    new = hidden[order].clone()
    if len(dropped):
        s = sim[dropped][:, order]
        w, j = s.max(1)
        for k in range(len(order)):  # a loop over kept tokens is fine in a reference
            mine = j == k
            z = w[mine].sum()
            if z > 0:
                agg = ((w[mine] / z.clamp_min(1e-8))[:, None] * hidden[dropped[mine]]).sum(0)
                new[k] = beta * hidden[order[k]] + (1 - beta) * agg
    return order, new


REFERENCE_CASES = [
    dict(),
    dict(faithful=True),
    dict(chunk=1, tau0=0.5),
    dict(chunk=5, kappa=2, lam=1.5),
    dict(bss=False, tau0=0.6),
    dict(pivots="topk_l1", tau_step=0.05),
    dict(faithful=True, tau0=0.95, chunk=7),
    dict(tau0=0.2, tau_step=0.3, kappa=7),
]


@pytest.mark.parametrize("kw", REFERENCE_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_vectorised_core_matches_the_reference(kw):
    budget, h, w = 30, 10, 12
    s = tp.get_strategy("vlm_pruner", top_q=24)
    keys, _, coords, ctx = make_inputs(s, batch=3, h=h, w=w, dk=32, d=40, seed=11)
    keys = keys + 0.2 * torch.randn(keys.shape, generator=torch.Generator().manual_seed(1))
    params = {("token_batch" if k == "chunk" else k): v for k, v in kw.items()}
    sel = tp.get_strategy("vlm_pruner", top_q=24, **params).select(keys, None, coords, budget, ctx)
    pos, inv_dmax = core.bss_positions(coords, (1, h, w), qwen_unmerged_grid=False, time_scale=1.0)
    for b in range(3):
        order, new = reference_select(keys[b], ctx.hidden[b], pos, inv_dmax, budget, top_q=24, **kw)
        n = len(order)
        assert torch.equal(sel.info["order"][b, :n], order), f"sample {b}: selection order differs"
        assert sel.info["counts"][b] == n
        got = sel.hidden[b, :n][torch.argsort(torch.argsort(order))]  # keep order -> selection order
        torch.testing.assert_close(got, new, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ coordinates


def test_image_positions_and_dmax_come_from_the_actual_grid():
    coords = grid_coords(6, 10)
    extent = core.grid_extent(coords, None, "vlm_pruner")
    pos, inv = core.bss_positions(coords, extent, qwen_unmerged_grid=False, time_scale=1.0)
    assert extent == (1, 6, 10)
    assert inv == pytest.approx(1 / math.hypot(6, 10))
    assert torch.equal(pos[13], torch.tensor([3.0, 1.0]))  # token 13 = row 1, col 3 -> (x, y) = (3, 1)
    assert core.grid_extent(coords, (1, 8, 12), "vlm_pruner") == (1, 8, 12), "ctx.grid wins when given"


def test_llava_normaliser_is_the_official_constant():
    case = case_named("b64__smooth__s1001")
    extent = core.grid_extent(case["in_coords"], None, "vlm_pruner")
    _, inv = core.bss_positions(case["in_coords"], extent, qwen_unmerged_grid=False, time_scale=1.0)
    assert inv == pytest.approx(case["cfg"]["norm_factor"], rel=1e-12)


def test_qwen_unmerged_grid_reproduces_the_official_layout():
    case = case_named("qwen2vl_posw64")
    coords = case["in_coords"]
    pos, inv = core.bss_positions(coords, (1, 18, 32), qwen_unmerged_grid=True, time_scale=1.0)
    i = torch.arange(576)
    assert torch.equal(pos, torch.stack([i % 64, i // 64], 1).float())
    assert inv == pytest.approx(case["cfg"]["norm_factor"], rel=1e-12)
    assert not torch.equal(kept(run_case(case, qwen_unmerged_grid=False)), case["out_kept_idx"]), \
        "the true grid must give a different selection on this case"


def test_video_rule():
    coords = grid_coords(4, 5, t=3)
    extent = core.grid_extent(coords, None, "vlm_pruner")
    pos, inv = core.bss_positions(coords, extent, qwen_unmerged_grid=False, time_scale=2.0)
    assert extent == (3, 4, 5)
    assert inv == pytest.approx(1 / math.sqrt(4**2 + 5**2 + (2.0 * 2) ** 2))
    same_cell_next_frame = torch.dist(pos[7], pos[20 + 7])
    assert float(same_cell_next_frame) == pytest.approx(2.0), "a frame step weighs time_scale token steps"


def test_single_frame_video_equals_the_image_path():
    s = tp.get_strategy("vlm_pruner", top_q=32)
    keys, _, coords, ctx = make_inputs(s, batch=2, h=7, w=9, seed=2)
    image = s.select(keys, None, coords, 20, ctx)
    video = s.select(keys, None, torch.cat([torch.zeros(63, 1, dtype=torch.long), coords], 1), 20, ctx)
    assert torch.equal(image.keep, video.keep) and torch.equal(image.hidden, video.hidden)


def test_time_scale_changes_a_video_selection():
    keys, _, coords, ctx = make_inputs(tp.get_strategy("vlm_pruner"), batch=1, h=6, w=6, frames=3, seed=4)
    picks = {ts: kept(tp.get_strategy("vlm_pruner", time_scale=ts, lam=2.0).select(keys, None, coords, 30, ctx))
             for ts in (0.0, 6.0)}
    assert not torch.equal(picks[0.0], picks[6.0])


def test_distance_rows_without_the_matrix_match_the_matrix(monkeypatch):
    pos, _ = core.bss_positions(grid_coords(4, 5, t=3), (3, 4, 5), qwen_unmerged_grid=False, time_scale=1.5)
    idx = torch.tensor([[0, 7, 59], [3, 3, 40]])
    with_matrix = core.GridDistances(pos)
    monkeypatch.setattr(core.GridDistances, "MATRIX_MAX_FLOATS", 100)
    on_demand = core.GridDistances(pos)
    assert with_matrix.matrix is not None and on_demand.matrix is None
    torch.testing.assert_close(on_demand.rows_for(idx), with_matrix.rows_for(idx), rtol=0, atol=0)
    torch.testing.assert_close(with_matrix.matrix, torch.cdist(pos.double(), pos.double()).float())


def test_cosine_rows_without_the_matrix_match_the_matrix(monkeypatch):
    unit = core.screened_unit_rows(torch.randn(2, 30, 12, generator=torch.Generator().manual_seed(3)), 8)
    assert torch.allclose(unit.norm(dim=-1), torch.ones(2, 30)) and unit.shape == (2, 30, 8)
    idx = torch.tensor([[0, 29, 4], [7, 7, 1]])
    with_matrix = core.CosineRows(unit)
    monkeypatch.setattr(core.CosineRows, "MATRIX_MAX_FLOATS", 100)
    on_demand = core.CosineRows(unit)
    assert with_matrix.flat is not None and on_demand.flat is None
    torch.testing.assert_close(on_demand.rows_for(idx), with_matrix.rows_for(idx))
    expected = torch.stack([unit[b, idx[b]] @ unit[b].T for b in range(2)])
    torch.testing.assert_close(with_matrix.rows_for(idx), expected)


def test_long_inputs_select_the_same_without_the_matrices(monkeypatch):
    case = case_named("b64__smooth__s1001")
    monkeypatch.setattr(core.GridDistances, "MATRIX_MAX_FLOATS", 10_000)
    monkeypatch.setattr(core.CosineRows, "MATRIX_MAX_FLOATS", 10_000)
    sel = run_case(case)
    assert torch.equal(kept(sel), case["out_kept_idx"])
    torch.testing.assert_close(sel.hidden[0], case["out_hidden_kept"], rtol=1e-4, atol=1e-5)


def test_grid_distances_are_reused_only_for_the_same_grid():
    s = tp.get_strategy("vlm_pruner", top_q=32)
    keys, _, coords, ctx = make_inputs(s, batch=1, h=8, w=9, seed=5)
    s.select(keys, None, coords, 20, ctx)
    first = s._grid_cache[1]
    s.select(keys, None, coords.clone(), 20, ctx)
    assert s._grid_cache[1] is first
    other = grid_coords(9, 8)  # same N, another grid
    ctx.grid = None
    reused = s.select(keys, None, other, 20, ctx)
    fresh = tp.get_strategy("vlm_pruner", top_q=32).select(keys, None, other, 20, ctx)
    assert s._grid_cache[1] is not first
    assert torch.equal(reused.keep, fresh.keep)


@pytest.mark.parametrize("bad, message", [
    (lambda c: c.float() + 0.5, "integer"),
    (lambda c: c - 3, "non-negative"),
])
def test_bad_coords_are_clear_errors(bad, message):
    s = tp.get_strategy("vlm_pruner")
    keys, _, coords, ctx = make_inputs(s, batch=1, h=5, w=5)
    with pytest.raises(StrategyInputError, match=message):
        s.select(keys, None, bad(coords), 5, ctx)


def test_coords_outside_ctx_grid_are_an_error():
    s = tp.get_strategy("vlm_pruner")
    keys, _, coords, ctx = make_inputs(s, batch=1, h=5, w=5)
    ctx.grid = (1, 4, 5)
    with pytest.raises(StrategyInputError, match="outside ctx.grid"):
        s.select(keys, None, coords, 5, ctx)


# ------------------------------------------------------------------ ablations


def test_bss_false_is_the_zero_strength_spatial_term():
    case = case_named("b64__smooth__s1001")
    off, zero, on = run_case(case, bss=False), run_case(case, lam=0.0), run_case(case)
    assert torch.equal(off.keep, zero.keep)
    assert not torch.equal(off.keep, on.keep), "the spatial term must matter on this case"


def test_merge_false_keeps_the_selection_and_returns_no_states():
    case = case_named("b64__smooth__s1001")
    sel = run_case(case, merge=False)
    assert sel.hidden is None
    assert torch.equal(kept(sel), case["out_kept_idx"])


def test_topk_l1_pivots():
    case = case_named("b64__smooth__s1001")
    sel = run_case(case, pivots="topk_l1")
    l1 = case["in_keys"].abs().sum(1)
    assert torch.equal(sel.info["pivots"][0], l1.topk(4).indices)
    assert sel.info["pivots"][0, 0] == case["dbg_pivots"][0], "both rules start at the largest L1 norm"
    assert not torch.equal(kept(sel), case["out_kept_idx"])


def test_degenerate_inputs_keep_unique_tokens():
    coords = grid_coords(6, 6)
    keys, hidden = torch.ones(1, 36, 16), torch.ones(1, 36, 24)
    for faithful in (False, True):
        sel = tp.get_strategy("vlm_pruner", faithful=faithful).select(keys, None, coords, 10, Context(hidden=hidden))
        row = kept(sel)
        assert len(set(row.tolist())) == len(row) and len(set(sel.info["pivots"][0].tolist())) == 4
        if not faithful:
            assert len(row) == 10
        torch.testing.assert_close(sel.hidden[0, : len(row)], torch.ones(len(row), 24))


# ------------------------------------------------------------------ dtypes, devices


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    s = tp.get_strategy("vlm_pruner", top_q=32)
    keys, _, coords, ctx = make_inputs(s, batch=2, h=8, w=8, seed=9)
    keys, hidden = keys.to(dtype), ctx.hidden.to(dtype)
    low = s.select(keys, None, coords, 16, Context(hidden=hidden))
    high = s.select(keys.float(), None, coords, 16, Context(hidden=hidden.float()))
    assert low.hidden.dtype == dtype
    assert torch.equal(low.keep, high.keep), "similarity is computed in float32 either way"
    torch.testing.assert_close(low.hidden.float(), high.hidden, rtol=1e-2, atol=1e-2)


def test_cpu_and_gpu_merge_arithmetic_agree():
    gen = torch.Generator().manual_seed(0)
    h, weight = torch.randn(3, 20, 7, generator=gen), torch.rand(3, 20, generator=gen) - 0.2
    target = torch.randint(0, 5, (3, 20), generator=gen)
    sparse, dense = core.weighted_means_sparse(h, weight, target, 5), core.weighted_means_dense(h, weight, target, 5)
    torch.testing.assert_close(sparse, dense)
    mine = target[1] == 2
    z = weight[1][mine].sum()
    torch.testing.assert_close(sparse[1][1, 2], z)
    torch.testing.assert_close(sparse[0][1, 2], (weight[1][mine, None] * h[1][mine]).sum(0) / z.clamp_min(1e-8))


@pytest.mark.cuda
def test_cuda_matches_cpu():
    case = case_named("b64__smooth__s1001")
    s = tp.get_strategy("vlm_pruner", **case_params(case))
    sel = s.select(case["in_keys"][None].cuda(), None, case["in_coords"].cuda(), 64,
                   Context(hidden=case["in_hidden"][None].cuda()))
    assert torch.equal(kept(sel).cpu(), case["out_kept_idx"])
    torch.testing.assert_close(sel.hidden[0].cpu(), case["out_hidden_kept"], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ documentation


def test_show_documents_every_param_and_the_fill_rule():
    info = tp.strategy_class("vlm_pruner").describe()
    assert info["layer"] == 2 and set(info["requires"]) == {"keys", "hidden"}
    defaults = {n: p["default"] for n, p in info["params"].items()}
    assert defaults == {"layer": 2, "kappa": 4, "pivots": "maxmin", "top_q": 256, "lam": 0.5, "bss": True,
                        "tau0": 0.8, "tau_step": 0.1, "token_batch": 16, "merge": True, "beta": 0.3,
                        "faithful": False, "qwen_unmerged_grid": False, "time_scale": 1.0}
    assert all(p["help"] for p in info["params"].values())
    for needle in ("Fill rule", "under-fill", "qwen_unmerged_grid", "(t, row, col)", "D_max"):
        assert needle in info["doc"]
