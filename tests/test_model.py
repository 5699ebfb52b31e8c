"""The Transformer: attention equals the reference, cached sampling equals uncached decoding,
padding changes nothing, and checkpoints round-trip or fail loudly."""

import os

import pytest
import torch
import torch.nn.functional as F

from model import (KVCache, ModelConfig, Transformer, attention, attention_mask, filter_logits, generate,
                   load_checkpoint, positions_from_valid, save_checkpoint)

EOS, PAD = 1, 0


def tiny(attn_impl="sdpa", seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=40, n_layer=2, n_head=2, n_embd=32, max_seq_len=64, attn_impl=attn_impl, **kw)
    return Transformer(cfg).eval()


def bias_eos(model, bias):
    """Add `bias` to the EOS logit of every forward pass (a hook, so generate() is untouched)."""
    def hook(module, args, logits):
        logits[..., EOS] += bias
        return logits
    model.register_forward_hook(hook)
    return model


def uncached_greedy(model, prompt, n):
    """The slow reference: recompute the whole prefix for every new token, one row, no padding."""
    ids = torch.tensor([prompt])
    out = []
    for _ in range(n):
        tok = int(model(ids)[0, -1].argmax())
        out.append(tok)
        if tok == EOS:
            break
        ids = torch.cat([ids, torch.tensor([[tok]])], dim=1)
    return out


def test_handwritten_attention_equals_sdpa_with_causal_and_padding_mask():
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 7, 16) for _ in range(3))
    valid = torch.ones(3, 7, dtype=torch.bool)
    valid[1, :3] = False  # a left-padded row
    valid[2, :6] = False  # a row with one real token
    mask = attention_mask(valid, 7)
    ref = attention(q, k, v, mask)
    fast = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (ref - fast).abs().max().item() <= 1e-5


def test_model_logits_are_the_same_with_sdpa_and_manual_attention():
    ids = torch.randint(2, 40, (4, 20))
    manual, fast = tiny("manual"), tiny("sdpa")
    assert (manual(ids) - fast(ids)).abs().max().item() <= 1e-5


def test_attention_mask_lets_pad_queries_see_themselves_so_nothing_is_nan():
    valid = torch.tensor([[False, False, True, True]])
    m = attention_mask(valid, 4)[0, 0]
    assert m.tolist() == [[True, False, False, False],
                          [False, True, False, False],
                          [False, False, True, False],
                          [False, False, True, True]]
    logits = tiny()(torch.tensor([[0, 0, 5, 6]]), valid=valid)
    assert torch.isfinite(logits).all()


def test_positions_skip_left_padding():
    valid = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    assert positions_from_valid(valid).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]


def test_left_padding_does_not_change_the_logits_of_real_tokens():
    model = tiny()
    alone = model(torch.tensor([[5, 6, 7]]))
    padded = model(torch.tensor([[PAD, PAD, 5, 6, 7]]), valid=torch.tensor([[False, False, True, True, True]]))
    assert (alone - padded[:, 2:]).abs().max().item() <= 1e-5


def test_prefill_then_one_cached_step_equals_a_full_forward():
    model = tiny()
    ids = torch.randint(2, 40, (2, 9))
    full = model(ids)
    cache = KVCache(model.cfg, 2, 9, "cpu", torch.float32)
    model(ids[:, :8], cache=cache)
    step = model(ids[:, 8:], valid=torch.ones(2, 9, dtype=torch.bool), cache=cache)
    assert (full[:, -1] - step[:, -1]).abs().max().item() <= 1e-5


def test_cached_batched_greedy_returns_exactly_the_tokens_of_uncached_greedy():
    # float64 so that no near-tie in a random model can flip an argmax between the two paths
    model = tiny(seed=3).double()
    prompts = [[5, 6, 7, 8, 9], [10], [11, 12, 13], [14, 15, 16, 17, 18, 19, 20, 21]]
    roll = generate(model, prompts, max_new_tokens=20, eos_id=EOS, pad_id=PAD, temperature=0)
    for i, p in enumerate(prompts):
        ref = uncached_greedy(model, p, 20)
        got = roll.ids[i][roll.mask[i]].tolist()
        assert got == ref
        assert bool(roll.truncated[i]) == (ref[-1] != EOS)


def test_generate_in_chunks_of_max_batch_rows_gives_the_same_greedy_rows_padded_alike():
    model = bias_eos(tiny(seed=3).double(), 1.0)  # rows end at different lengths
    prompts = [[5, 6, 7, 8, 9], [10], [11, 12, 13], [14, 15, 16, 17, 18, 19, 20, 21], [22, 23]]
    whole = generate(model, prompts, max_new_tokens=12, eos_id=EOS, pad_id=PAD, temperature=0)
    for max_batch in (1, 2, 4, 5, 99):
        part = generate(model, prompts, max_new_tokens=12, eos_id=EOS, pad_id=PAD, temperature=0, max_batch=max_batch)
        assert part.ids.equal(whole.ids) and part.mask.equal(whole.mask) and part.truncated.equal(whole.truncated)
        assert torch.allclose(part.logprobs, whole.logprobs, atol=1e-12)
    sampled = generate(model, prompts * 3, 6, EOS, PAD, temperature=1.0, generator=torch.Generator().manual_seed(0),
                       max_batch=4)
    assert sampled.ids.shape == sampled.mask.shape and sampled.ids.size(0) == 15
    assert (sampled.ids[~sampled.mask] == PAD).all()
    with pytest.raises(ValueError, match="max_batch=0 must be >= 1"):
        generate(model, prompts, 4, EOS, PAD, temperature=0, max_batch=0)


def test_generate_stops_each_row_at_eos_and_reports_truncation():
    model = bias_eos(tiny(), 3.0)  # EOS likely but not certain, so rows end at different times
    torch.manual_seed(0)
    roll = generate(model, [[3, 4], [5, 6, 7], [8], [9, 10]] * 4, max_new_tokens=6, eos_id=EOS, pad_id=PAD, temperature=1.0)
    assert roll.ids.shape == roll.mask.shape == roll.logprobs.shape
    assert roll.ids.shape[1] <= 6
    assert 0 < int(roll.truncated.sum()) < 16  # some rows stopped, some ran out of budget
    for i in range(16):
        toks = roll.ids[i][roll.mask[i]].tolist()
        assert (EOS in toks) == (not roll.truncated[i])
        if EOS in toks:
            assert toks.index(EOS) == len(toks) - 1  # nothing valid after the EOS
        assert (roll.ids[i][~roll.mask[i]] == PAD).all()
        assert (roll.logprobs[i][~roll.mask[i]] == 0).all() and (roll.logprobs[i][roll.mask[i]] < 0).all()


def test_a_row_that_emits_eos_first_is_not_truncated():
    model = bias_eos(tiny(), 100.0)
    roll = generate(model, [[3, 4]], max_new_tokens=5, eos_id=EOS, pad_id=PAD, temperature=0)
    assert roll.ids.tolist() == [[EOS]] and roll.mask.tolist() == [[True]] and roll.truncated.tolist() == [False]


def test_max_new_tokens_is_honoured_and_rows_without_eos_are_truncated():
    model = bias_eos(tiny(), -100.0)  # EOS never chosen
    roll = generate(model, [[3], [4, 5]], max_new_tokens=7, eos_id=EOS, pad_id=PAD, temperature=0)
    assert roll.ids.shape == (2, 7) and roll.mask.all() and roll.truncated.all()


def test_sampled_logprobs_are_the_log_softmax_at_the_sampling_temperature():
    model = tiny().double()
    prompt = [5, 6, 7]
    roll = generate(model, [prompt], max_new_tokens=4, eos_id=EOS, pad_id=PAD, temperature=0.7,
                    generator=torch.Generator().manual_seed(0))
    seq = torch.tensor([prompt + roll.ids[0].tolist()])
    logp = torch.log_softmax(model(seq)[0, len(prompt) - 1:-1] / 0.7, -1)
    ref = logp.gather(1, roll.ids[0][:, None]).squeeze(1)
    n = int(roll.mask[0].sum())
    assert torch.allclose(roll.logprobs[0, :n], ref[:n], atol=1e-9)


def test_top_k_1_and_tiny_top_p_sample_the_greedy_tokens():
    model = tiny(seed=5).double()
    prompts = [[5, 6, 7], [9]]
    greedy = generate(model, prompts, 10, EOS, PAD, temperature=0)
    for kw in ({"top_k": 1}, {"top_p": 1e-9}):
        sampled = generate(model, prompts, 10, EOS, PAD, temperature=1.0, **kw)
        assert torch.equal(sampled.ids, greedy.ids)


def test_filter_logits_keeps_the_top_k_and_the_top_p_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, 2, None)).tolist() == [[False, False, True, True]]
    # cumulative mass 0.5, 0.8, 0.95: top_p 0.8 keeps the first two, top_p 0.81 keeps three
    assert torch.isinf(filter_logits(logits, None, 0.8)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, None, 0.81)).tolist() == [[False, False, False, True]]


def test_sampling_is_reproducible_from_a_generator_seed():
    model = tiny()
    a = generate(model, [[3, 4]] * 4, 8, EOS, PAD, generator=torch.Generator().manual_seed(1))
    b = generate(model, [[3, 4]] * 4, 8, EOS, PAD, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.ids, b.ids)


def test_too_long_a_request_is_a_clear_error():
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(tiny(), [[3] * 60], max_new_tokens=10, eos_id=EOS, pad_id=PAD)
    with pytest.raises(ValueError, match="at least one token"):
        generate(tiny(), [[]], max_new_tokens=3, eos_id=EOS, pad_id=PAD)


def test_bad_config_values_are_named():
    with pytest.raises(ValueError, match="attn_impl"):
        ModelConfig(attn_impl="flash")
    with pytest.raises(ValueError, match="n_head"):
        ModelConfig(n_embd=30, n_head=4)


def test_save_then_load_gives_identical_logits(tmp_path):
    model = tiny()
    save_checkpoint(str(tmp_path), model, meta={"step": 7, "train_config": {"lr": 0.001}})
    loaded, meta = load_checkpoint(str(tmp_path))
    ids = torch.randint(2, 40, (3, 11))
    assert torch.equal(model(ids), loaded(ids))
    assert meta["step"] == 7 and meta["train_config"] == {"lr": 0.001}
    assert meta["model_config"]["n_embd"] == 32


def test_a_corrupt_checkpoint_is_a_clear_error(tmp_path):
    save_checkpoint(str(tmp_path), tiny())
    path = tmp_path / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[:8] + b"{not json" + data[17:100])
    with pytest.raises(ValueError, match="model.safetensors"):
        load_checkpoint(str(tmp_path))
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a readable safetensors checkpoint"):
        load_checkpoint(str(tmp_path))
    path.write_bytes(data[:len(data) // 2])  # cut in the middle of the tensors, as a full disk would
    with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors checkpoint"):
        load_checkpoint(str(tmp_path))


def test_a_checkpoint_of_the_wrong_shape_is_a_clear_error(tmp_path):
    model = tiny()
    save_checkpoint(str(tmp_path), model)
    other = Transformer(ModelConfig(vocab_size=40, n_layer=2, n_head=2, n_embd=64, max_seq_len=64))
    # weights of a wider model under the narrower model's config
    from safetensors.torch import save_file
    import json
    from dataclasses import asdict
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "model.safetensors"),
              metadata={"model_config": json.dumps(asdict(model.cfg))})
    with pytest.raises(ValueError, match="has shape"):
        load_checkpoint(str(tmp_path))


def test_a_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_checkpoint(str(tmp_path))
    assert not os.path.exists(tmp_path / "model.safetensors")
