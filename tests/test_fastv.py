"""FastV: parity with the official code on the shared fixtures, tie rule, paper-wording criterion."""
from pathlib import Path

import pytest
import torch

import tokenprune as tp
from tokenprune import Context, ParamError, StrategyInputError

FIXTURES = sorted((Path(__file__).parent / "data" / "parity" / "fastv").glob("*.pt"))


def _coords(n):
    return torch.stack([torch.arange(n) // 8, torch.arange(n) % 8], dim=1)


def _case(path):
    return torch.load(path, weights_only=True)


def test_fixtures_present():
    assert len(FIXTURES) == 8


@pytest.mark.parametrize("faithful", [False, True])
@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_parity_with_official(path, faithful):
    case = _case(path)
    s, n = case["cfg"]["SYS_LENGTH"], case["N"]
    # the engine's attn signal: last prompt row, mean over heads, image columns
    attn = case["in_attn_last_row"].mean(dim=0)[s:s + n]
    strategy = tp.get_strategy("fastv", faithful=faithful)
    sel = strategy.select(None, attn[None], _coords(n), case["budget"], Context(batch_size=1))
    assert torch.equal(sel.keep[0], case["out_kept_idx"])
    assert sel.info["counts"] == [case["out_count"]]
    # selection order = the official top-k order (descending attention)
    assert torch.equal(sel.info["order"][0] + s, case["out_topk_global"])


def test_batch_of_fixtures_equals_each_case():
    cases = [_case(p) for p in FIXTURES if _case(p)["N"] == 576 and _case(p)["budget"] == 64]
    attn = torch.stack([c["in_attn_img"] for c in cases])
    sel = tp.get_strategy("fastv").select(None, attn, _coords(576), 64, Context(batch_size=len(cases)))
    for row, case in zip(sel.keep, cases):
        assert torch.equal(row, case["out_kept_idx"])


def test_ties_go_to_the_lower_index():
    attn = torch.tensor([[0.1, 0.3, 0.2, 0.3, 0.3, 0.05]])
    sel = tp.get_strategy("fastv").select(None, attn, _coords(6), 2, Context(batch_size=1))
    assert sel.keep.tolist() == [[1, 3]]
    assert sel.info["order"].tolist() == [[1, 3]]


def test_kept_tokens_outrank_every_dropped_token():
    gen = torch.Generator().manual_seed(0)
    attn = torch.softmax(torch.randn(3, 200, generator=gen), dim=-1)
    sel = tp.get_strategy("fastv").select(None, attn, _coords(200), 37, Context(batch_size=3))
    for b in range(3):
        dropped = torch.ones(200, dtype=torch.bool)
        dropped[sel.keep[b]] = False
        assert attn[b, sel.keep[b]].min() > attn[b, dropped].max()


def test_mean_all_queries_ranks_by_the_extras_signal():
    n = 10
    last_row = torch.linspace(1.0, 0.1, n)[None]  # favours the first tokens
    received = torch.linspace(0.1, 1.0, n)[None]  # favours the last tokens
    strategy = tp.get_strategy("fastv", criterion="mean_all_queries")
    assert strategy.required_extras == ("attn_all_queries",)
    ctx = Context(batch_size=1, extras={"attn_all_queries": received})
    sel = strategy.select(None, last_row, _coords(n), 3, ctx)
    assert sel.keep.tolist() == [[7, 8, 9]]
    assert sel.info["criterion"] == "mean_all_queries"
    default = tp.get_strategy("fastv")
    assert default.required_extras == ()
    assert default.select(None, last_row, _coords(n), 3, ctx).keep.tolist() == [[0, 1, 2]]


def test_mean_all_queries_from_a_full_attention_map():
    # the documented extras contract, built from a causal [H, L, L] attention map
    gen = torch.Generator().manual_seed(1)
    H, L, s, n = 4, 30, 3, 16
    logits = torch.randn(H, L, L, generator=gen)
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    probs = torch.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
    received = probs.mean(dim=0).mean(dim=0)[s:s + n]  # mean over heads, then over all queries
    last = probs.mean(dim=0)[-1, s:s + n]
    ctx = Context(batch_size=1, extras={"attn_all_queries": received[None]})
    sel = tp.get_strategy("fastv", criterion="mean_all_queries").select(None, last[None], _coords(n), 5, ctx)
    expected = sorted(range(n), key=lambda j: -float(received[j]))[:5]
    assert sel.keep[0].tolist() == sorted(expected)


@pytest.mark.parametrize("bad, message", [
    (None, "needs ctx.extras\\['attn_all_queries'\\]"),
    (torch.ones(1, 9), "must have shape \\[1, 10\\]"),
    (torch.ones(1, 10, dtype=torch.long), "floating-point"),
    (torch.full((1, 10), float("nan")), "NaN or inf"),
])
def test_mean_all_queries_bad_extras_are_clear_errors(bad, message):
    extras = {} if bad is None else {"attn_all_queries": bad}
    strategy = tp.get_strategy("fastv", criterion="mean_all_queries")
    with pytest.raises(StrategyInputError, match=f"fastv.*{message}"):
        strategy.select(None, torch.rand(1, 10), _coords(10), 3, Context(batch_size=1, extras=extras))


def test_declaration_and_docs():
    cls = tp.strategy_class("fastv")
    assert (cls.stage, cls.layer, cls.requires) == ("llm", 2, frozenset({"attn"}))
    described = cls.describe()
    assert described["params"]["criterion"]["default"] == "last_token"
    assert "mean_all_queries" in described["params"]["criterion"]["allowed"]
    assert "attn_all_queries" in described["doc"] and "paper's wording" in described["doc"]
    with pytest.raises(ParamError, match="criterion"):
        tp.get_strategy("fastv", criterion="mean")
