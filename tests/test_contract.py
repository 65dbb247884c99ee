"""The select() contract: every malformed input or output gets an error that names the strategy."""
import math

import pytest
import torch

import tokenprune as tp
from tokenprune.testing.inputs import grid_coords


class Scripted(tp.Strategy):
    """Test-only strategy that returns whatever the test scripted."""

    name = "scripted"
    stage = "llm"
    layer = 2
    requires = frozenset({"keys"})
    params = {"mode": tp.Param("ok", "what to return", str, choices=("ok", "garbage"))}

    answer = None

    def select(self, keys, attn, coords, budget, ctx):
        return type(self).answer(keys, budget)


def run(answer, budget=4, n=16, hidden=None):
    Scripted.answer = staticmethod(answer)
    ctx = tp.Context(hidden=hidden)
    return Scripted().select(torch.randn(2, n, 8), None, grid_coords(4, n // 4), budget, ctx)


def keep(rows):
    return torch.tensor(rows, dtype=torch.long)


@pytest.mark.parametrize(
    "answer, message",
    [
        (lambda k, b: [[0, 1, 2, 3]] * 2, "expected a tokenprune.Selection"),
        (lambda k, b: tp.Selection(keep=keep([[0, 1, 2, 3]] * 2).int()), "must be int64"),
        (lambda k, b: tp.Selection(keep=keep([[0, 1, 2]] * 2)), "kept 3 tokens per sample, but the budget is 4"),
        (lambda k, b: tp.Selection(keep=keep([[0, 1, 2, 3]])), r"shape \[B=2, R\]"),
        (lambda k, b: tp.Selection(keep=keep([[0, 1, 1, 3], [0, 1, 2, 3]])), "duplicate indices in sample 0"),
        (lambda k, b: tp.Selection(keep=keep([[0, 1, 2, 3], [0, 2, 1, 3]])), "not ascending in sample 1"),
        (lambda k, b: tp.Selection(keep=keep([[0, 1, 2, 16], [0, 1, 2, 3]])), "index 16 is out of range"),
        (lambda k, b: tp.Selection(keep=keep([[-1, 1, 2, 3], [0, 1, 2, 3]])), "negative indices"),
        (lambda k, b: tp.Selection(keep=keep([[0, 1, 2, 3]] * 2), hidden=torch.full((2, 4, 8), math.nan)),
         "hidden contains NaN"),
        (lambda k, b: tp.Selection(keep=keep([[0, 1, 2, 3]] * 2), hidden=torch.zeros(2, 3, 8)), "hidden must have shape"),
        (lambda k, b: tp.Selection(keep=keep([[0, 1, 2, 3]] * 2), info=[1]), "info must be a dict"),
    ],
)
def test_invalid_selection_names_the_strategy(answer, message):
    with pytest.raises(tp.SelectionError, match="strategy 'scripted' returned an invalid Selection") as err:
        run(answer)
    assert __import__("re").search(message, str(err.value)), str(err.value)


def test_hidden_width_must_match_the_model():
    answer = lambda k, b: tp.Selection(keep=keep([[0, 1, 2, 3]] * 2), hidden=torch.zeros(2, 4, 5))  # noqa: E731
    with pytest.raises(tp.SelectionError, match="width 5, but the model's hidden size is 6"):
        run(answer, hidden=torch.zeros(2, 16, 6))


def test_valid_selection_gets_counts():
    sel = run(lambda k, b: tp.Selection(keep=keep([[0, 1, 2, 3], [4, 5, 6, 7]])))
    assert sel.info["counts"] == [4, 4]


@pytest.mark.parametrize("budget", [0, 17, -1, 2.0, "4"])
def test_budget_out_of_range(budget):
    with pytest.raises(tp.BudgetError, match="strategy 'scripted'"):
        run(lambda k, b: None, budget=budget)


def test_nan_in_keys_reports_position():
    keys = torch.randn(1, 16, 8)
    keys[0, 5, 2] = math.nan
    with pytest.raises(tp.StrategyInputError, match=r"input keys has 1 non-finite value\(s\), first NaN at index \(0, 5, 2\)"):
        Scripted().select(keys, None, grid_coords(4, 4), 4, tp.Context())


def test_nan_only_matters_in_a_signal_the_strategy_reads(monkeypatch):
    hidden = torch.randn(2, 16, 8)
    hidden[1, 3, 1] = math.inf
    answer = lambda k, b: tp.Selection(keep=keep([[0, 1, 2, 3]] * 2))  # noqa: E731
    assert run(answer, hidden=hidden).info["counts"] == [4, 4]  # Scripted reads keys only
    monkeypatch.setattr(Scripted, "requires", frozenset({"keys", "hidden"}))
    with pytest.raises(tp.StrategyInputError, match=r"input ctx.hidden has 1 non-finite value\(s\), first inf"):
        run(answer, hidden=hidden)


def test_missing_required_signal():
    with pytest.raises(tp.StrategyInputError, match="requires keys"):
        Scripted().select(None, None, grid_coords(4, 4), 4, tp.Context(batch_size=1))


def test_shape_mismatch_between_keys_and_coords():
    with pytest.raises(tp.StrategyInputError, match=r"shape \[B, N, D\] with N=12"):
        Scripted().select(torch.randn(1, 16, 8), None, grid_coords(3, 4), 4, tp.Context())


def test_unknown_and_bad_params_list_valid_ones():
    with pytest.raises(tp.ParamError, match="unknown param colour; valid params: layer, mode"):
        Scripted(colour=3)
    with pytest.raises(tp.ParamError, match=r"mode='bad' is invalid; allowed: one of 'ok', 'garbage'"):
        Scripted(mode="bad")
    with pytest.raises(tp.ParamError, match=r"layer=0 is invalid \(below 1\)"):
        Scripted(layer=0)
    with pytest.raises(tp.ParamError, match="layer=2.5 is invalid"):
        Scripted(layer=2.5)


def test_params_are_read_only_and_recorded():
    s = Scripted(layer=3)
    assert s.cfg.as_dict() == {"layer": 3, "mode": "ok"}
    assert s.prune_layer == 3
    with pytest.raises(AttributeError):
        s.cfg.layer = 4


def test_unknown_strategy_lists_registered_ones():
    with pytest.raises(tp.UnknownNameError, match="unknown strategy 'nope'; registered strategies: .*uniform"):
        tp.get_strategy("nope")


def test_single_sample_keys_are_a_batch_of_one():
    sel = tp.get_strategy("uniform").select(torch.randn(16, 8), None, grid_coords(4, 4), 4, tp.Context())
    assert sel.keep.shape == (1, 4)


def test_declaration_is_checked():
    class NoLayer(tp.Strategy):
        name = "no_layer"
        stage = "llm"

        def select(self, keys, attn, coords, budget, ctx):
            return None

    with pytest.raises(tp.PluginError, match="needs an integer default layer"):
        NoLayer.check_declaration()

    class BadSignal(tp.Strategy):
        name = "bad_signal"
        stage = "pre_llm"
        requires = {"telepathy"}

    with pytest.raises(tp.PluginError, match="unknown signals"):
        BadSignal.check_declaration()
