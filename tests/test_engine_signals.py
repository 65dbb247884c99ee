"""The signals a strategy receives equal the model's own states (eager attention as ground truth),
plus records, budgets, validation errors, and the eager (float mask) path end to end."""
from __future__ import annotations

import pytest
import torch

import tokenprune
import tiny_models as tm
from test_engine import generate, get_case, slow_reference
from tokenprune import Selection, Strategy
from tokenprune.engine import PruneError


@pytest.fixture(scope="module")
def eager():
    return tm.llava(layers=4, attn_implementation="eager")


class Recorder(Strategy):
    """Keeps everything and remembers what it was given."""

    name = "test_recorder"
    stage = "llm"
    layer = 2
    requires = frozenset({"keys", "attn", "hidden", "text_keys", "text_hidden", "final_norm"})
    required_extras = ("attn_all_queries", "image_start")
    seen: list = []

    def select(self, keys, attn, coords, budget, ctx):
        type(self).seen.append(dict(keys=keys, attn=attn, coords=coords, ctx=ctx))
        N = coords.shape[0]
        return Selection(keep=torch.arange(N).expand(keys.shape[0], N).clone())


class PreRecorder(Recorder):
    name = "test_pre_recorder"
    stage = "pre_llm"
    requires = frozenset({"keys", "hidden", "text_embeds", "image_embeds"})
    required_extras = ()


def _inputs(vlm):
    return vlm.build_inputs(tm.samples(2, seed=11))  # different prompt lengths: left padding


def test_llm_signals_equal_the_model_states(eager):
    vlm = eager
    inputs = _inputs(vlm)
    Recorder.seen = []
    with tokenprune.apply(vlm, Recorder(), budget=10_000), torch.inference_mode():
        out = vlm.model(**inputs, output_attentions=True, output_hidden_states=True, use_cache=True)
    (got,) = Recorder.seen
    ids, pad = inputs["input_ids"], inputs["attention_mask"].bool()
    image = ids == vlm.image_token_id
    K = 2
    keys = out.past_key_values.layers[K - 1].keys  # post-RoPE, un-repeated KV heads
    B, H_kv, L, D = keys.shape
    for b in range(B):
        pos = image[b].nonzero().flatten()
        assert torch.allclose(got["keys"][b], keys[b, :, pos].permute(1, 0, 2).reshape(len(pos), H_kv * D))
        probs = out.attentions[K - 1][b, :, -1]  # last prompt token's row, eager softmax
        assert torch.allclose(got["attn"][b], probs[:, pos].mean(0), atol=1e-6)
        assert torch.allclose(got["ctx"].hidden[b], out.hidden_states[K][b, pos])
        after = torch.arange(int(pos[-1]) + 1, L)
        n_text = int(got["ctx"].text_mask[b].sum())
        assert n_text == len(after)
        assert torch.allclose(got["ctx"].text_hidden[b, :n_text], out.hidden_states[K][b, after])
        assert torch.allclose(got["ctx"].text_keys[b, :n_text],
                              keys[b, :, after].permute(1, 0, 2).reshape(len(after), H_kv * D))
        all_q = out.attentions[K - 1][b][:, pad[b]].mean(dim=(0, 1))  # every real query, every head
        assert torch.allclose(got["ctx"].extras["attn_all_queries"][b], all_q[pos], atol=1e-6)
        first_real = int(pad[b].nonzero()[0])
        assert got["ctx"].extras["image_start"][b] == int(pos[0]) - first_real
    assert got["ctx"].final_norm is vlm.language_model.norm
    assert got["ctx"].extras["head_dim"] == vlm.head_dim
    assert got["coords"].tolist() == [[r, c] for r in range(6) for c in range(6)] and got["ctx"].grid == (1, 6, 6)


def test_pre_llm_signals_are_projector_outputs(eager):
    vlm = eager
    inputs = _inputs(vlm)
    PreRecorder.seen = []
    with tokenprune.apply(vlm, PreRecorder(), budget=10_000), torch.inference_mode():
        vlm.model(**inputs)
        projected = vlm.model.model.get_image_features(inputs["pixel_values"], return_dict=True).pooler_output
        embed = vlm.model.get_input_embeddings()
    (got,) = PreRecorder.seen
    ids, pad = inputs["input_ids"], inputs["attention_mask"].bool()
    for b in range(2):
        assert torch.allclose(got["keys"][b], projected[b]) and torch.equal(got["keys"], got["ctx"].hidden)
        text = ids[b][pad[b] & (ids[b] != vlm.image_token_id)]
        assert torch.allclose(got["ctx"].text_embeds[b, :len(text)], embed(text))
        assert not got["ctx"].text_embeds[b, len(text):].any()
    assert torch.equal(got["ctx"].image_embeds, got["keys"])
    assert got["ctx"].extras["relevance_space"] == "llm_embed"


class UnderFill(Strategy):
    """Keeps a different number of tokens per sample (budget minus the text length mod 3), like a faithful
    strategy that under-fills: rows are -1 padded, so the engine must pad the batch with dead slots."""

    name = "test_underfill"
    stage = "llm"
    layer = 2
    requires = frozenset({"attn", "text_hidden"})

    @property
    def exact_budget(self):
        return False

    def select(self, keys, attn, coords, budget, ctx):
        order = attn.argsort(dim=1, descending=True, stable=True)
        keep = torch.full((attn.shape[0], budget), -1)
        for b in range(attn.shape[0]):
            n = budget - int(ctx.text_mask[b].sum()) % 3
            keep[b, :n] = order[b, :n].sort().values
        return Selection(keep=keep)


@pytest.mark.parametrize("strategy", [UnderFill, "random", "fastv"])
def test_eager_attention_cache_and_batch(eager, strategy):
    vlm = eager
    s = strategy() if isinstance(strategy, type) else tokenprune.get_strategy(strategy)
    samples = tm.samples(3, seed=13)
    batch = vlm.build_inputs(samples)
    with tokenprune.apply(vlm, s, 9) as handle:
        together = generate(vlm, batch)
        counts = [r["count"] for r in handle.records]
        singles = [generate(vlm, vlm.build_inputs([x])) for x in samples]
    if isinstance(strategy, type):
        assert len(set(counts)) > 1, "the test needs samples with different kept counts"
    for i, single in enumerate(singles):
        assert torch.equal(together[i], single[0]), f"sample {i}"
    assert torch.equal(singles[0], slow_reference(vlm, vlm.build_inputs(samples[:1]), s, 9))


def test_records_timings_and_info(eager):
    vlm = eager
    with tokenprune.apply(vlm, "fastv", budget=6) as handle:
        generate(vlm, _inputs(vlm), max_new_tokens=2)
    for rec in handle.records:
        assert rec["vision_s"] > 0 and rec["select_s"] > 0 and rec["batch_size"] == 2
        assert rec["info"]["order"] and sorted(rec["info"]["order"]) == rec["kept"]
        assert set(rec["diagnostics"]) == {"edge_tokens", "nn_distance", "redundancy"}
        assert rec["grid"] == [1, 6, 6] and rec["prefill"] == handle.records[0]["prefill"]
    handle.clear()
    assert handle.records == []


def test_diagnostics_are_computed_after_the_prefill_on_the_prune_point_states(eager):
    from tokenprune import diagnostics

    vlm, K = eager, 2
    inputs = _inputs(vlm)
    seen = {}
    # registered before apply(), so it sees layer K's input before the engine prunes it

    def capture(module, args, kwargs):
        seen.setdefault("hidden", (args[0] if args else kwargs["hidden_states"]).clone())

    probe = vlm.decoder_layers[K].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with tokenprune.apply(vlm, "fastv", budget=6) as handle:
            with torch.inference_mode():
                vlm.model(**inputs)
            assert len(handle._pending_diagnostics) == 2  # nothing computed inside the forward
            records = handle.records
            assert not handle._pending_diagnostics
    finally:
        probe.remove()
    image = inputs["input_ids"] == vlm.image_token_id
    for rec in records:
        b, kept = rec["sample"], torch.tensor(rec["kept"])
        features = seen["hidden"][rec["sample"], image[b].nonzero().flatten()]
        coords = torch.stack(torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij"), -1).reshape(-1, 2)
        assert rec["diagnostics"]["redundancy"] == pytest.approx(diagnostics.redundancy(features, kept), abs=1e-6)
        assert rec["diagnostics"]["edge_tokens"] == diagnostics.edge_token_count(coords, kept)


def test_keep_ratio_rounds_and_budget_clamps(eager):
    vlm = eager
    inputs = _inputs(vlm)
    with tokenprune.apply(vlm, "uniform", keep_ratio=0.3) as handle:  # 0.3 * 36 = 10.8 -> 11
        generate(vlm, inputs, max_new_tokens=1)
    assert [r["count"] for r in handle.records] == [11, 11]
    with tokenprune.apply(vlm, "uniform", budget=500) as handle:
        generate(vlm, inputs, max_new_tokens=1)
    assert [r["count"] for r in handle.records] == [36, 36]


class NeedsAttn(Strategy):
    name = "test_needs_attn"
    stage = "pre_llm"
    requires = frozenset({"attn"})

    def select(self, keys, attn, coords, budget, ctx):  # pragma: no cover - never called
        raise AssertionError


@pytest.mark.parametrize("call,match", [
    (lambda v: tokenprune.apply(v, "random"), "exactly one of budget or keep_ratio"),
    (lambda v: tokenprune.apply(v, "random", budget=4, keep_ratio=0.5), "exactly one"),
    (lambda v: tokenprune.apply(v, "random", budget=0), "positive integer"),
    (lambda v: tokenprune.apply(v, "random", keep_ratio=1.5), r"\(0, 1\]"),
    (lambda v: tokenprune.apply(v, "fastv", budget=4, layer=4), "between 1 and 3"),
    (lambda v: tokenprune.apply(v, NeedsAttn(), budget=4), "pre_llm strategy cannot require it"),
    (lambda v: tokenprune.apply(v, "random", budget=4, positions="compact"), "positions must be"),
    (lambda v: tokenprune.apply(v, "nope", budget=4), "unknown strategy 'nope'"),
])
def test_apply_refuses_bad_requests(eager, call, match):
    with pytest.raises(tokenprune.TokenpruneError, match=match):
        call(eager)
    assert not hasattr(eager.model, "_tokenprune_handle")


def test_one_strategy_at_a_time(eager):
    with tokenprune.apply(eager, "random", budget=4):
        with pytest.raises(PruneError, match="already has a strategy attached"):
            tokenprune.apply(eager, "uniform", budget=4)
    tokenprune.apply(eager, "uniform", budget=4).remove()


def test_raw_transformers_model_is_accepted(eager):
    inputs = _inputs(eager)
    with tokenprune.apply(eager.model, "uniform", budget=5) as handle:
        generate(eager, inputs, max_new_tokens=1)
    assert handle.vlm.name == "llava" and [r["count"] for r in handle.records] == [5, 5]
    with pytest.raises(tokenprune.UnknownNameError, match="no registered model adapter"):
        tokenprune.apply(torch.nn.Linear(2, 2), "uniform", budget=5)


def test_beam_search(eager):
    """Beams of a sample share its layout, so beam reordering of the cache keeps masks consistent."""
    vlm = eager
    inputs = vlm.build_inputs(tm.samples(2, seed=17))
    kw = dict(max_new_tokens=4, num_beams=2)
    base = generate(vlm, inputs, **kw)
    with tokenprune.apply(vlm, "uniform", budget=36):
        assert torch.equal(generate(vlm, inputs, **kw), base)
    with tokenprune.apply(vlm, UnderFill(), budget=7) as handle:
        pruned = generate(vlm, inputs, **kw)
        singles = [generate(vlm, vlm.build_inputs([s]), **kw) for s in tm.samples(2, seed=17)]
    assert len(handle.records) == 2 * 2 + 2 * 2  # one record per beam row: batched run, then the singles
    for i, single in enumerate(singles):
        assert torch.equal(pruned[i], single[0])


def _oracle_logits(vlm, inputs, kept_positions, layer, positions):
    """Last-token logits computed by hand: the LLM's own layers called one by one, the kept rows gathered
    before layer ``layer`` (0 = before the LLM), positions original (gaps) or renumbered."""
    model, lm = vlm.model, vlm.language_model
    with torch.inference_mode():
        embeds = model.get_input_embeddings()(inputs["input_ids"])
        feats = model.model.get_image_features(inputs["pixel_values"], return_dict=True).pooler_output
        mask = (inputs["input_ids"] == vlm.image_token_id)[..., None]
        feats = torch.cat([f.reshape(-1, f.shape[-1]) for f in feats])  # a tensor or one tensor per image
        h = embeds.masked_scatter(mask, feats.to(embeds.dtype))
        L = h.shape[1]
        pos = torch.arange(L)[None]
        for i, block in enumerate(lm.layers):
            if i == layer:
                h = h[:, kept_positions]
                pos = pos[:, kept_positions] if positions == "original" else torch.arange(len(kept_positions))[None]
            h = block(h, attention_mask=None, position_ids=pos, position_embeddings=lm.rotary_emb(h, pos))
        return model.lm_head(lm.norm(h))[:, -1]


@pytest.mark.parametrize("strategy,positions", [("uniform", "original"), ("uniform", "reindex"),
                                                ("fastv", "original"), ("fastv", "reindex")])
def test_pruned_logits_equal_a_hand_run_llm(strategy, positions):
    vlm = get_case("llava")[0]  # sdpa, batch of one: the oracle runs plain causal attention
    inputs = vlm.build_inputs(tm.samples(1, seed=19))
    with tokenprune.apply(vlm, strategy, budget=9, positions=positions) as handle, torch.inference_mode():
        logits = vlm.model(**inputs).logits[:, -1]
    s = tokenprune.get_strategy(strategy)
    image = (inputs["input_ids"][0] == vlm.image_token_id).nonzero().flatten()
    keep = torch.ones(inputs["input_ids"].shape[1], dtype=torch.bool)
    keep[image] = False
    keep[image[handle.records[0]["kept"]]] = True
    oracle = _oracle_logits(vlm, inputs, keep.nonzero().flatten(), s.prune_layer or 0, positions)
    assert torch.allclose(logits, oracle, atol=1e-5)
