"""The engine's hook path against a reference that does not use the engine, and what runs while decoding.

The reference keeps the whole prompt and blocks the dropped visual tokens as keys in every layer >= K
(a 4-D mask), recomputing the whole sequence each step without a cache: its logits must equal those of
the pruned, cached generation, both where the layer hooks rewrite nothing while decoding (one sample,
SDPA's causal path) and where they rewrite the model's masks (a left-padded batch).
"""
from __future__ import annotations

import pytest
import torch

import tokenprune
import tiny_models as tm
from tokenprune import Selection, Strategy
from tokenprune.engine import transform

STEPS = 4
K = 2


class Spread(Strategy):
    """Keeps `budget` evenly spaced visual tokens at layer 2 (no signals needed)."""

    name = "test_spread"
    stage = "llm"
    layer = K

    def select(self, keys, attn, coords, budget, ctx):
        n = coords.shape[0]
        keep = torch.linspace(0, n - 1, budget).round().long()
        return Selection(keep=keep.expand(ctx.batch_size, budget).clone())


@pytest.fixture(scope="module")
def llava():
    return tm.llava(layers=4)


def _masked_key_logits(vlm, inputs, records, new_ids):
    """Last-position logits for the prompt and each new token: full recompute, dropped keys blocked from K on."""
    ids = inputs["input_ids"]
    B, L = ids.shape
    dropped = torch.zeros(B, L, dtype=torch.bool)
    for b, rec in enumerate(records):
        visual = (ids[b] == vlm.image_token_id).nonzero().flatten()
        dropped[b, visual] = True
        dropped[b, visual[rec["kept"]]] = False

    def block(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        n = hidden.shape[1]
        mask = kwargs.get("attention_mask")
        if mask is None:
            mask = torch.ones(n, n, dtype=torch.bool).tril()[None, None].expand(B, 1, n, n)
        keys = torch.nn.functional.pad(dropped, (0, n - L))  # decoded tokens are never dropped
        kwargs["attention_mask"] = mask & ~keys[:, None, None, :]
        return args, kwargs

    layers = vlm.decoder_layers
    hooks = [layers[i].register_forward_pre_hook(block, with_kwargs=True) for i in range(K, len(layers))]
    padding = inputs.get("attention_mask", torch.ones_like(ids))
    out = []
    try:
        with torch.inference_mode():
            for step in range(new_ids.shape[1]):
                seq = torch.cat([ids, new_ids[:, :step]], dim=1)
                mask = torch.cat([padding, torch.ones(B, step, dtype=padding.dtype)], dim=1)
                vlm.prepare_generation()
                logits = vlm.model(input_ids=seq, attention_mask=mask, pixel_values=inputs["pixel_values"],
                                   use_cache=False).logits[:, -1]
                out.append(logits)
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("batch", [1, 2])
def test_cached_pruned_logits_equal_the_masked_key_reference(llava, batch):
    inputs = llava.build_inputs(tm.samples(batch))
    decode_calls = []
    original = transform.Rewriter.layer_decode

    def spy(self, *args):
        decode_calls.append(original(self, *args))
        return decode_calls[-1]

    with tokenprune.apply(llava, Spread(), budget=9) as handle, pytest.MonkeyPatch.context() as mp:
        mp.setattr(transform.Rewriter, "layer_decode", spy)
        with torch.inference_mode():
            out = llava.model.generate(**inputs, max_new_tokens=STEPS, do_sample=False, output_logits=True,
                                       return_dict_in_generate=True, suppress_tokens=tm.special_ids())
        records = handle.records
    new = out.sequences[:, inputs["input_ids"].shape[1]:]
    cached = torch.stack(out.logits, dim=1)
    reference = _masked_key_logits(llava, inputs, records, new)
    assert [r["count"] for r in records] == [9] * batch
    torch.testing.assert_close(cached, reference, rtol=1e-4, atol=1e-4)
    unpruned = _masked_key_logits(llava, inputs, [{"kept": slice(None)}] * batch, new)
    assert not torch.allclose(cached, unpruned, rtol=1e-3, atol=1e-3)  # the comparison is not trivial
    # one sample: no mask reaches the layers while decoding and nothing is rewritten; a padded batch's
    # 4-D masks are mapped onto the pruned cache on every layer >= K of every step
    assert len(decode_calls) == (STEPS - 1) * (len(llava.decoder_layers) - K)
    assert set(decode_calls) == ({False} if batch == 1 else {True})


def test_adapter_output_hooks_exist_only_during_the_prefill():
    vlm = tm.qwen3_vl(layers=4)
    inputs = vlm.build_inputs(tm.samples(1, image_sizes=[(56, 56)]))
    counts = {}

    def count(module, args, kwargs):
        phase = "decode" if kwargs["past_key_values"].get_seq_length() else "prefill"
        counts.setdefault(phase, sum(getattr(h, "__module__", "").startswith("tokenprune.")
                                     for layer in vlm.decoder_layers for h in layer._forward_hooks.values()))

    spy = vlm.language_model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        with tokenprune.apply(vlm, Spread(), budget=5):
            vlm.generate(inputs, max_new_tokens=3, suppress_tokens=tm.special_ids())
    finally:
        spy.remove()
    assert counts == {"prefill": len(vlm.decoder_layers) - K, "decode": 0}


def test_memo_passes_arguments_and_keeps_one_rewrite_per_object():
    memo, calls = transform.Memo(), []

    def make(obj, scale):
        calls.append(obj)
        return obj * scale

    full, sliding = torch.ones(2), torch.zeros(2)  # e.g. a model's full and sliding-window masks
    for _ in range(3):  # layers alternating between the two objects
        assert memo.get("mask", full, make, 3).tolist() == [3.0, 3.0]
        assert memo.get("mask", sliding, make, 3).tolist() == [0.0, 0.0]
    assert len(calls) == 2 and calls[0] is full and calls[1] is sliding
