"""The faster step (design: A faster step): each change gives the same numbers as the plain way, and the flag that
switches one on reaches the passes it speeds up.

- --prompt_once: a group's shared prompt is run once (model.hidden_prompt_once, generate's prompt_once): log-probs,
  values, their gradients and sampled tokens equal those of the full pass, for every model kind and row order;
- AdamW with foreach=True: the same weights as the per-tensor loop, bit for bit;
- q and k rotated in one call, x / 1 skipped at temperature 1: covered by the model's own tests (sdpa against the
  written-out attention, the KV cache against a full forward, pretrained logits against transformers).
"""

import argparse
import copy
import random

import pytest
import torch

import bench
import config
import grpo
import optim
import rollouts
import train
from model import Critic, ModelConfig, Transformer, distinct_rows, generate, hidden_prompt_once, left_pad

CONFIGS = {
    "default": ModelConfig(vocab_size=40, n_layer=2, n_head=4, n_embd=32, max_seq_len=48),
    "gqa_bias_untied": ModelConfig(vocab_size=40, n_layer=2, n_head=4, n_embd=32, max_seq_len=48, n_kv_head=2,
                                   qkv_bias=True, tied_head=False),
}


def batch(order=None):
    """Five rows of three distinct prompts (two groups of 2 and one of 1), completions with padding after an EOS."""
    prompts = [[3, 4, 5], [3, 4, 5], [6, 7], [6, 7], [8, 9, 10, 11]]
    ids, valid = left_pad(prompts, 0, "cpu")
    completion = torch.randint(2, 40, (5, 6), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(5, 6, dtype=torch.bool)
    mask[1, 4:] = False
    mask[3, 2:] = False
    if order is not None:
        ids, valid, completion, mask = ids[order], valid[order], completion[order], mask[order]
    return ids, valid, completion, mask


def model_of(cfg, kind):
    torch.manual_seed(1)
    model = Transformer(cfg) if kind == "policy" else Critic(cfg)
    if kind == "critic":
        torch.nn.init.normal_(model.value_head.weight)  # not the zero head: values that depend on the input
    if cfg.qkv_bias:
        for block in (model.blocks if kind == "policy" else model.trunk.blocks):
            torch.nn.init.normal_(block.attn.qkv.bias)
    return model


def test_distinct_rows_finds_each_prompt_once_and_maps_every_row_back():
    ids, valid, _, _ = batch()
    first, row_of = distinct_rows(ids, valid)
    assert len(first) == 3
    assert torch.equal(ids[first][row_of], ids) and torch.equal(valid[first][row_of], valid)
    # the same tokens with other padding are other prompts
    first, _ = distinct_rows(torch.tensor([[0, 5], [0, 5]]), torch.tensor([[False, True], [True, True]]))
    assert len(first) == 2


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("kind", ["policy", "critic"])
@pytest.mark.parametrize("order", [None, [4, 1, 2, 0, 3]], ids=["grouped", "shuffled"])
def test_prompt_once_gives_the_full_pass_s_log_probs_values_and_gradients(name, kind, order):
    model = model_of(CONFIGS[name], kind)
    args = batch(order)
    f = (lambda once: grpo.completion_logprobs(model, *args, 0.7, prompt_once=once)) if kind == "policy" else \
        (lambda once: grpo.completion_values(model, *args, prompt_once=once))
    full, once = f(False), f(True)
    assert torch.allclose(full, once, atol=1e-6, rtol=0)
    g_full = torch.autograd.grad(full.sum(), list(model.parameters()), allow_unused=True)
    g_once = torch.autograd.grad(once.sum(), list(model.parameters()), allow_unused=True)
    for a, b in zip(g_full, g_once):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)


def test_prompt_once_with_a_single_completion_token():
    model = model_of(CONFIGS["default"], "policy")
    ids, valid, completion, mask = batch()
    full = grpo.completion_logprobs(model, ids, valid, completion[:, :1], mask[:, :1])
    once = grpo.completion_logprobs(model, ids, valid, completion[:, :1], mask[:, :1], prompt_once=True)
    assert torch.allclose(full, once, atol=1e-6, rtol=0)


def test_prompt_once_runs_the_prompt_once_per_distinct_prompt(monkeypatch):
    model = model_of(CONFIGS["default"], "policy")
    seen = []
    real = Transformer.hidden

    def spy(self, idx, *args, **kwargs):
        seen.append(tuple(idx.shape))
        return real(self, idx, *args, **kwargs)
    monkeypatch.setattr(Transformer, "hidden", spy)
    hidden_prompt_once(model, *batch())
    assert seen == [(3, 4), (5, 5)]  # 3 distinct prompts of 4 positions, then 5 rows of T - 1 = 5 completion tokens


@pytest.mark.parametrize("name", CONFIGS)
def test_generate_with_prompt_once_samples_the_same_tokens(name):
    model = model_of(CONFIGS[name], "policy").eval()
    prompts = [[3, 4, 5]] * 3 + [[6, 7]] * 3
    for temperature in (0.0, 1.0):
        a = generate(model, prompts, 8, 1, 0, temperature, generator=torch.Generator().manual_seed(0))
        b = generate(model, prompts, 8, 1, 0, temperature, generator=torch.Generator().manual_seed(0),
                     prompt_once=True)
        assert torch.equal(a.ids, b.ids) and torch.equal(a.mask, b.mask)
        assert torch.allclose(a.logprobs, b.logprobs, atol=1e-6)


def test_the_flag_reaches_the_sampler_and_every_log_prob_pass(monkeypatch):
    """A GRPO step with --prompt_once true samples with generate(prompt_once=True) and takes pi_ref's and the
    policy's log-probs through hidden_prompt_once; without the flag, neither."""
    for flag in (False, True):
        calls = {"generate": [], "once": 0}
        real_generate, real_once = rollouts.generate, grpo.hidden_prompt_once

        def spy_generate(*args, **kwargs):
            calls["generate"].append(kwargs.get("prompt_once"))
            return real_generate(*args, **kwargs)

        def spy_once(*args, **kwargs):
            calls["once"] += 1
            return real_once(*args, **kwargs)
        monkeypatch.setattr(rollouts, "generate", spy_generate)
        monkeypatch.setattr(grpo, "hidden_prompt_once", spy_once)
        args = argparse.Namespace(n_layer=1, n_head=2, n_embd=16, prompts=2, group=2, max_new_tokens=4,
                                        kl_coef=0.04, prompt_once=flag)
        problems, tok = bench.bench_problems()
        _, step = bench.rl_stepper("grpo", args, problems[:50], tok)
        step()
        assert calls["generate"] == [flag]
        assert calls["once"] == (2 if flag else 0)  # pi_ref's pass, then the policy's with gradient
        monkeypatch.undo()


def test_a_grpo_update_with_prompt_once_moves_the_weights_as_without(tmp_path):
    """The same rollout, one update each way: the same new weights (to float rounding)."""
    problems, tok = bench.bench_problems()
    out = {}
    for flag in (False, True):
        cfg = config.TrainConfig(n_layer=1, n_head=2, n_embd=16, prompts_per_step=2, group_size=3,
                                 max_new_tokens=6, prompt_once=flag, rl_lr=1e-2, reward_overlong=1.0,
                                 overlong_cache=6)
        torch.manual_seed(0)
        models = train.make_rl_models(Transformer(ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=1, n_head=2,
                                                              n_embd=16, max_seq_len=40)), cfg)
        roll, _ = rollouts.collect_rollouts(models.policy, tok, problems[:50], cfg, random.Random(0),
                                            torch.Generator().manual_seed(0))
        train.rl_update(models, roll, tok, cfg, "cpu", torch.Generator().manual_seed(0))
        out[flag] = (roll.ids, torch.cat([p.detach().flatten() for p in models.policy.parameters()]))
    assert torch.equal(out[False][0], out[True][0])  # the same samples
    assert torch.allclose(out[False][1], out[True][1], atol=1e-6, rtol=0)


def test_adamw_with_foreach_gives_the_plain_loop_s_weights_bit_for_bit():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2))
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    opt_a = optim.make_optimizer(a, 1e-2, 0.1)
    assert all(group["foreach"] for group in opt_a.param_groups)
    decay = [p for p in b.parameters() if p.dim() >= 2]
    rest = [p for p in b.parameters() if p.dim() < 2]
    opt_b = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                              lr=1e-2, betas=(0.9, 0.95), foreach=False)
    g = torch.Generator().manual_seed(1)
    for _ in range(10):
        x = torch.randn(4, 8, generator=g)
        for m, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            m(x).pow(2).sum().backward()
            opt.step()
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
