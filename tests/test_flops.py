"""The analytic FLOPs formulas against torch's FlopCounterMode on real tiny transformers models."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, LlamaForCausalLM

from tokenprune import flops


def counted(model, ids, **kw):
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, **kw)
    return counter.get_total_flops()


@pytest.mark.parametrize("kv_heads, act", [(4, "silu"), (2, "silu"), (4, "gelu")])
def test_prefill_matches_flop_counter(kv_heads, act):
    # LlamaMLP is gated (3 matrices) whatever the activation
    config = LlamaConfig(vocab_size=101, hidden_size=64, intermediate_size=176, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=kv_heads, hidden_act=act,
                         attn_implementation="sdpa")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 101, (1, 37))
    shape = flops.LLMShape.from_config(config)
    assert shape.ffn_matrices == 3
    alive = flops.alive_per_layer(shape, 37, 0, 0, None)
    assert flops.prefill_flops(shape, alive, logits_positions=37) == counted(model, ids)
    assert flops.prefill_flops(shape, alive, logits_positions=1) == counted(model, ids, logits_to_keep=1)


def test_decode_step_matches_flop_counter():
    config = LlamaConfig(vocab_size=53, hidden_size=32, intermediate_size=80, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa")
    model = LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 53, (1, 20))
    with torch.no_grad():
        out = model(input_ids=ids, use_cache=True)
    step = counted(model, ids[:, :1], past_key_values=out.past_key_values)
    shape = flops.LLMShape.from_config(config)
    # one new token against a cache of 20: the mean over a 2-token generation is exactly that step
    assert flops.decode_flops(shape, [20, 20], new_tokens=2) == step


def test_pruning_reduces_layers_after_k_only():
    shape = flops.LLMShape(layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32, head_dim=128, vocab=32000)
    alive = flops.alive_per_layer(shape, n_total=35 + 576 + 60, n_visual=576, kept=64, prune_layer=2)
    assert alive[:2] == [671, 671] and set(alive[2:]) == {159}
    assert flops.alive_per_layer(shape, 671, 576, 64, 0) == [159] * 32
    assert flops.layer_averaged_tokens(alive, n_text=95) == pytest.approx((2 * 576 + 30 * 64) / 32)


def test_fastv_convention_reproduces_the_papers_arithmetic():
    # docs/methods/fastv.md: LLaVA-1.5-7B, 576 visual + 60 text, K=2, R=50% -> 0.568 of full (2-matrix FFN)
    shape = flops.LLMShape(layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32, head_dim=128, vocab=32000)
    full = flops.fastv_convention_macs(shape, flops.alive_per_layer(shape, 636, 576, 576, None))
    half = flops.fastv_convention_macs(shape, flops.alive_per_layer(shape, 636, 576, 288, 2))
    assert half / full == pytest.approx(0.568, abs=1e-3)
    assert full / 1e12 == pytest.approx(3.31, abs=0.01)  # T-MAC, as docs/methods/fastv.md states


def test_kv_cache_bytes():
    shape = flops.LLMShape(layers=2, hidden=64, intermediate=1, heads=4, kv_heads=2, head_dim=16, vocab=1)
    assert flops.kv_cache_bytes(shape, [10, 4], bytes_per_value=2) == 2 * 2 * 16 * 2 * (10 + 4)


def test_two_matrix_ffn_matches_flop_counter():
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(vocab_size=97, hidden_size=64, ffn_dim=160, num_hidden_layers=2, num_attention_heads=4,
                       word_embed_proj_dim=64, attn_implementation="sdpa")
    model = OPTForCausalLM(config).eval()
    shape = flops.LLMShape.from_config(config)
    assert shape.ffn_matrices == 2
    ids = torch.randint(0, 97, (1, 23))
    # OPT has biases and learned positions, so compare the matmul-dominated part within 1 %
    expected = flops.prefill_flops(shape, [23, 23], logits_positions=23)
    assert counted(model, ids) == pytest.approx(expected, rel=0.01)
