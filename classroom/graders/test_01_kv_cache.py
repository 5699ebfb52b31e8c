"""Grader of assignment 1, attention with a KV cache (model.attention, model.KVCache.update, the cache's length)."""

import math

import pytest
import torch
import torch.nn.functional as F

import model
from model import KVCache, ModelConfig, Transformer, attention_mask, generate, left_pad

F64 = torch.float64


def tiny(impl: str = "manual", n_layer: int = 2) -> Transformer:
    torch.manual_seed(0)
    m = Transformer(ModelConfig(vocab_size=40, n_layer=n_layer, n_head=2, n_embd=16, max_seq_len=64, attn_impl=impl))
    return m.double().eval()


@pytest.mark.points(2)
def test_attention_on_numbers_computed_by_hand():
    """attention: softmax(q k^T / sqrt(Dh)) v on a 1-query, 2-key example"""
    q = torch.tensor([2.0, 0, 0, 0], dtype=F64).view(1, 1, 1, 4)
    k = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 0]], dtype=F64).view(1, 1, 2, 4)
    v = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]], dtype=F64).view(1, 1, 2, 4)
    out = model.attention(q, k, v, torch.ones(1, 1, 1, 2, dtype=torch.bool))
    e = math.e  # scores 2 * 1 / sqrt(4) = 1 and 0: weights e / (e + 1) and 1 / (e + 1)
    assert out.shape == (1, 1, 1, 4)
    assert out.flatten().tolist() == pytest.approx([e / (e + 1), 1 / (e + 1), 0, 0], abs=1e-6)  # the softmax may be taken in fp32


@pytest.mark.points(2)
def test_a_masked_key_gets_exactly_zero_weight_whatever_its_value():
    """attention: a key where the mask is False changes nothing, even with a huge value or score"""
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 4, 8, dtype=F64) for _ in range(3))
    mask = torch.ones(2, 1, 4, 4, dtype=torch.bool)
    mask[:, :, :, 1] = False
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 1], v2[:, :, 1] = 1e3, 1e6  # what the masked key holds must not matter
    keep = [0, 2, 3]
    expected = model.attention(q, k[:, :, keep], v[:, :, keep], mask[..., keep])
    assert torch.allclose(model.attention(q, k2, v2, mask), expected, atol=1e-6)


@pytest.mark.points(1)
def test_attention_equals_torchs_scaled_dot_product_attention_with_fewer_queries_than_keys():
    """attention: equals F.scaled_dot_product_attention with a causal mask, queries the last 3 of 7 positions"""
    torch.manual_seed(2)
    q, (k, v) = torch.randn(2, 4, 3, 8, dtype=F64), (torch.randn(2, 4, 7, 8, dtype=F64) for _ in range(2))
    valid = torch.ones(2, 7, dtype=torch.bool)
    valid[1, :2] = False  # row 1 left-padded
    mask = attention_mask(valid, 3)
    assert torch.allclose(model.attention(q, k, v, mask), F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
                          atol=1e-6)


@pytest.mark.points(1)
def test_attention_in_bfloat16_returns_bfloat16_close_to_float64():
    """attention: bf16 in, bf16 out, the softmax taken in fp32 (close to the float64 result)"""
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 2, 5, 8, dtype=F64) for _ in range(3))
    mask = attention_mask(torch.ones(1, 5, dtype=torch.bool), 5)
    out = model.attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), mask)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.double(), model.attention(q, k, v, mask), atol=0.05)


@pytest.mark.points(2)
def test_the_cache_writes_at_its_column_and_returns_everything_so_far():
    """KVCache.update: writes the new keys/values at columns length.., returns columns 0..end; length unchanged"""
    cfg = ModelConfig(vocab_size=10, n_layer=2, n_head=2, n_embd=8, max_seq_len=16)
    cache = KVCache(cfg, batch=3, max_len=6, device="cpu", dtype=F64)
    k1, v1 = torch.randn(3, 2, 4, 4, dtype=F64), torch.randn(3, 2, 4, 4, dtype=F64)
    k, v = cache.update(1, k1, v1)  # layer 1, the prefill of 4 positions
    assert torch.equal(k, k1) and torch.equal(v, v1) and cache.length == 0  # the model moves the column, not update
    assert (cache.k[0] == 0).all() and (cache.k[1][:, :, 4:] == 0).all()  # layer 0 and the later columns untouched
    cache.length = 4
    k2, v2 = torch.randn(3, 2, 1, 4, dtype=F64), torch.randn(3, 2, 1, 4, dtype=F64)
    k, v = cache.update(1, k2, v2)
    assert k.shape == (3, 2, 5, 4) and torch.equal(k, torch.cat([k1, k2], 2)) and torch.equal(v, torch.cat([v1, v2], 2))
    assert torch.equal(cache.k[1][:, :, :5], k) and torch.equal(cache.v[1][:, :, :5], v)  # stored in place


@pytest.mark.points(2)
def test_a_forward_pass_moves_the_cache_on_by_its_tokens_once_not_once_per_layer():
    """the model: after a prefill of 3 tokens the cache's length is 3, after one more token 4 (2 layers)"""
    m = tiny(n_layer=2)
    cache = KVCache(m.cfg, 1, 8, "cpu", F64)
    m(torch.tensor([[1, 2, 3]]), cache=cache)
    assert cache.length == 3
    m(torch.tensor([[4]]), valid=torch.ones(1, 4, dtype=torch.bool), cache=cache)
    assert cache.length == 4


@pytest.mark.points(3)
def test_decoding_with_the_cache_gives_the_logits_of_the_full_forward_pass():
    """the model: prefill + 2 cached one-token steps on a left-padded batch = one forward pass on everything"""
    for impl in ("manual", "sdpa"):
        check_cached_decoding(tiny(impl))


def check_cached_decoding(m):
    ids, valid = left_pad([[5, 6, 7, 8], [9, 10]], 0, "cpu")
    new = torch.tensor([[11, 12, 13], [14, 15, 16]])
    full_valid = torch.cat([valid, torch.ones(2, 3, dtype=torch.bool)], 1)
    full = m(torch.cat([ids, new], 1), valid=full_valid)  # (2, 7, V)
    cache = KVCache(m.cfg, 2, 7, "cpu", F64)
    steps = [m(ids, valid=valid, cache=cache)[:, -1]]
    start = valid.sum(-1, keepdim=True)
    for t in range(2):
        steps.append(m(new[:, t:t + 1], valid=full_valid[:, :5 + t], positions=start + t, cache=cache)[:, -1])
    assert torch.allclose(torch.stack(steps, 1), full[:, 3:6], atol=1e-6)


@pytest.mark.points(2)
def test_greedy_generate_equals_recomputing_every_prefix_without_a_cache():
    """generate: greedy completions of prompts of different lengths = argmax of a cache-free forward per token"""
    m = tiny("sdpa")
    prompts = [[3, 4, 5, 6, 7], [8, 9], [10, 11, 12]]
    out = generate(m, prompts, max_new_tokens=6, eos_id=1, pad_id=0, temperature=0)
    for row, prompt in enumerate(prompts):
        seq = list(prompt)
        for _ in range(6):
            seq.append(m(torch.tensor([seq]))[0, -1].argmax().item())
            if seq[-1] == 1:
                break
        got = out.ids[row][out.mask[row]].tolist()
        assert got == seq[len(prompt):]
