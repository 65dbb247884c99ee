"""Unit tests of the engine's token bookkeeping: layouts, gathers and mask rewriting (no model needed)."""
from __future__ import annotations

import torch

from tokenprune.engine import layout as lay
from tokenprune.engine import positions as pos_ops
from tokenprune.engine import transform
from tokenprune.engine.layout import Layout


def causal_bool(L, pad=None):
    m = torch.tril(torch.ones(L, L, dtype=torch.bool))[None, None].repeat(len(pad) if pad is not None else 1, 1, 1, 1)
    if pad is not None:
        m &= pad.bool()[:, None, None, :]
    return m


def test_rows_of_different_length_are_left_padded():
    layout = Layout.from_rows([torch.tensor([0, 2, 3, 5]), torch.tensor([1, 4])], full=6)
    assert layout.src.tolist() == [[0, 2, 3, 5], [0, 0, 1, 4]]
    assert layout.valid.tolist() == [[True] * 4, [False, False, True, True]]
    same = Layout.from_rows([torch.tensor([0, 1]), torch.tensor([2, 3])], full=4)
    assert same.valid is None and not same.is_identity()
    assert Layout.from_rows([torch.arange(3)], full=3).is_identity()


def test_take_gathers_per_sample_and_broadcasts_batch_one():
    src = torch.tensor([[0, 2], [1, 3]])
    t = torch.arange(8.0).view(1, 4, 2)  # batch 1 broadcast to 2
    out = lay.take(t, src, batch_dim=0, seq_dim=1)
    assert out.tolist() == [[[0, 1], [4, 5]], [[2, 3], [6, 7]]]
    pos3 = torch.arange(12).view(3, 1, 4)  # M-RoPE rows [3, B=1, L]
    assert transform.positions(pos3, Layout(src, None, 4)).tolist() == [
        [[0, 2], [1, 3]], [[4, 6], [5, 7]], [[8, 10], [9, 11]]]


def test_prefill_mask_equals_the_mask_of_the_kept_sequence():
    L = 6
    pad = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    rows = [torch.tensor([0, 2, 3, 5]), torch.tensor([0, 1, 2, 5])]
    layout = Layout.from_rows(rows, L)
    got = lay.prefill_mask4d(causal_bool(L, pad), layout)
    for b, r in enumerate(rows):
        want = causal_bool(len(r), pad[b:b + 1, r])[0]
        assert torch.equal(got[b], want)


def test_dead_slots_are_blocked_but_keep_their_diagonal():
    layout = Layout.from_rows([torch.tensor([0, 1, 2]), torch.tensor([3])], full=4)
    bool_mask = lay.prefill_mask4d(causal_bool(4), layout)
    assert bool_mask[1, 0].tolist() == [[True, False, False], [False, True, False], [False, False, True]]
    float_mask = torch.zeros(1, 1, 4, 4).masked_fill(~causal_bool(4), torch.finfo(torch.float32).min)
    out = lay.prefill_mask4d(float_mask, layout)
    assert (out[1, 0, 2] == torch.tensor([torch.finfo(torch.float32).min] * 2 + [0.0])).all()
    built = lay.built_mask4d(layout, 3, 4, dtype=torch.float32, fmt="bool")
    assert torch.equal(built, bool_mask)


def test_decode_mask_maps_the_key_axis_onto_the_pruned_cache():
    layout = Layout.from_rows([torch.tensor([0, 2, 3]), torch.tensor([1, 3])], full=4)
    full = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1]], dtype=torch.bool)[:, None, None, :]  # 2 decoded
    out = lay.decode_mask4d(full, layout)
    assert out[:, 0, 0].tolist() == [[True, True, True, True, True], [False, True, True, True, True]]
    two_d = lay.mask2d(full[:, 0, 0].long(), layout)
    assert two_d.tolist() == [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]
    built = transform.decode_mask(None, layout, q=1, total=6, fmt="float", dtype=torch.float16)
    assert built.shape == (2, 1, 1, 5) and built[1, 0, 0, 0] == torch.finfo(torch.float16).min


def test_memo_rewrites_each_object_once():
    memo, calls = transform.Memo(), []
    t = torch.ones(2)
    make = lambda x: calls.append(1) or x * 2  # noqa: E731
    assert memo.get("m", t, make) is memo.get("m", t, make)
    assert len(calls) == 1 and memo.get("m", None, lambda _: 5) == 5


def test_reindex_counts_real_tokens_and_shifts_decoding():
    layout = Layout.from_rows([torch.tensor([0, 1, 3]), torch.tensor([2, 3])], full=4)
    padding = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    real = pos_ops.real_slots(layout, padding)
    assert pos_ops.reindexed(real).tolist() == [[0, 1, 2], [0, 0, 1]]
    full = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 1]])
    delta = pos_ops.next_original(full, padding) - real.sum(dim=1)
    assert delta.tolist() == [1, 0]
    assert pos_ops.shifted(torch.tensor([[4], [2]]), delta).tolist() == [[3], [2]]
    assert pos_ops.shifted(torch.tensor([[[4], [2]]] * 3), delta)[:, :, 0].tolist() == [[3, 2]] * 3


def test_unsupported_attention_implementation_is_named():
    import pytest

    with pytest.raises(ValueError, match="flex_attention"):
        transform.mask_format("flex_attention")
    assert transform.mask_format("sdpa") == "bool" and transform.mask_format("flash_attention_2") == "2d"
