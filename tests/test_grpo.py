"""grpo.py: every equation against hand-computed numbers (the hand computation in a comment beside it),
the autograd gradient of the GRPO loss against DeepSeekMath's gradient coefficient, and the log-probs
against the ones the sampler returned.

Run: python -m pytest -q tests/test_grpo.py
"""

import math

import pytest
import torch

from grpo import (aggregate, aggregate_weight, broadcast_outcome_advantage, clip_fraction, clipped_surrogate, completion_logprobs,
                  completion_mask, dynamic_sampling_filter, gae, gradient_coefficient, group_advantages,
                  grpo_gradient_coefficient, grpo_loss, grpo_objective, kl_k1, kl_k2, kl_k3, masked_mean, masked_sum,
                  majority_vote, pass_at_k, policy_ratio, ppo_loss, ppo_objective, ppo_token_rewards, process_advantages,
                  rloo_advantages, value_loss, whiten)
from model import ModelConfig, Transformer, generate, left_pad

EOS, PAD = 1, 0
F64 = torch.float64
REWARDS = torch.tensor([[1.0, 0.0, 0.5, 0.8]], dtype=F64)  # one group of G = 4: mean 0.575


def tiny(seed=0, eos_bias=2.0):
    """A float64 model whose EOS logit is raised by eos_bias (a forward hook, so every pass sees it):
    sampled rows then end at different lengths and the completions have padding."""
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=40, n_layer=2, n_head=2, n_embd=32, max_seq_len=64)
    model = Transformer(cfg).double().eval()

    def hook(module, args, logits):
        logits[..., EOS] += eos_bias
        return logits
    model.register_forward_hook(hook)
    return model


def rollout(model, prompts, temperature=1.0, max_new_tokens=8, seed=0):
    return generate(model, prompts, max_new_tokens, EOS, PAD, temperature=temperature,
                    generator=torch.Generator().manual_seed(seed))


PROMPTS = [[5, 6, 7], [9], [10, 11, 12, 13, 14]] * 2  # B=3 prompts of different lengths, G=2 (rows interleaved)


# ----------------------------------------------------------------------------- log-probs and masks


def test_completion_logprobs_equal_the_logprobs_the_sampler_returned_at_the_same_temperature():
    model = tiny()
    roll = rollout(model, PROMPTS, temperature=0.7)
    assert 0 < int(roll.mask.sum()) < roll.mask.numel()  # some rows ended early: completion pads exist
    ids, valid = left_pad(PROMPTS, PAD, "cpu")
    logp = completion_logprobs(model, ids, valid, roll.ids, roll.mask, temperature=0.7)
    assert logp.shape == roll.ids.shape
    assert torch.allclose(logp, roll.logprobs, atol=1e-9, rtol=0)  # pads are 0 in both
    assert logp.requires_grad  # callers wrap pi_old / pi_ref in no_grad, not this function


def test_completion_logprobs_do_not_depend_on_padding_or_on_the_tokens_after_eos():
    model = tiny()
    roll = rollout(model, PROMPTS)
    ids, valid = left_pad(PROMPTS, PAD, "cpu")
    batch = completion_logprobs(model, ids, valid, roll.ids, roll.mask)
    # more left pads on every prompt, more right pads on every completion, junk tokens where the mask is False
    ids2 = torch.cat([torch.full((len(PROMPTS), 3), PAD), ids], 1)
    valid2 = torch.cat([torch.zeros(len(PROMPTS), 3, dtype=torch.bool), valid], 1)
    comp2 = torch.cat([roll.ids, torch.full((len(PROMPTS), 2), PAD)], 1)
    comp2 = torch.where(torch.cat([roll.mask, torch.zeros(len(PROMPTS), 2, dtype=torch.bool)], 1), comp2, 17)
    mask2 = torch.cat([roll.mask, torch.zeros(len(PROMPTS), 2, dtype=torch.bool)], 1)
    padded = completion_logprobs(model, ids2, valid2, comp2, mask2)
    assert torch.allclose(padded[:, :-2], batch, atol=1e-12, rtol=0) and (padded[:, -2:] == 0).all()
    for i, p in enumerate(PROMPTS):  # each row alone, with no padding at all
        L = int(roll.mask[i].sum())
        alone = completion_logprobs(model, torch.tensor([p]), torch.ones(1, len(p), dtype=torch.bool),
                                    roll.ids[i:i + 1, :L], torch.ones(1, L, dtype=torch.bool))
        assert torch.allclose(alone[0], batch[i, :L], atol=1e-12, rtol=0)


def test_masked_sum_and_mean_ignore_masked_values_even_inf_and_an_empty_mask_gives_zero():
    x = torch.tensor([[1.0, 2.0, float("inf")], [4.0, float("nan"), 0.0]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert masked_sum(x, mask).item() == 3.0
    assert masked_mean(x, mask, dim=-1).tolist() == [1.5, 0.0]  # (1+2)/2; empty row -> 0, not NaN
    assert masked_mean(x, mask).item() == 1.5


def test_overlong_filter_zeroes_truncated_rows_only_when_asked():
    mask = torch.tensor([[True, True], [True, False]])
    truncated = torch.tensor([True, False])
    assert completion_mask(mask, truncated, overlong_filter=False).tolist() == [[True, True], [True, False]]
    assert completion_mask(mask, truncated, overlong_filter=True).tolist() == [[False, False], [True, False]]


# ----------------------------------------------------------------------------- KL estimators


def test_kl_estimators_on_the_hand_computed_example():
    logp, ref_logp = torch.tensor(-1.0, dtype=F64), torch.tensor(-1.5, dtype=F64)
    # log r = ref - logp = -0.5;  k1 = 0.5;  k2 = 0.5 * 0.25 = 0.125;  k3 = e^-0.5 + 0.5 - 1 = 0.106531
    assert kl_k1(logp, ref_logp).item() == pytest.approx(0.5, abs=1e-12)
    assert kl_k2(logp, ref_logp).item() == pytest.approx(0.125, abs=1e-12)
    assert round(kl_k3(logp, ref_logp).item(), 4) == 0.1065


def test_k3_is_never_negative_even_in_floating_point_and_is_zero_when_the_policies_agree():
    torch.manual_seed(0)
    for dtype in (torch.float32, F64):
        # log-ratios from 1e-12 to 5: the naive exp(d) - d - 1 rounds to about -1e-16 on some of these
        d = torch.cat([torch.randn(20000, dtype=dtype) * s for s in (1e-12, 1e-8, 1e-4, 1e-2, 1.0, 5.0)])
        logp = -torch.rand_like(d) - 0.1
        assert (kl_k3(logp, logp + d) >= 0).all()
        assert (kl_k3(logp, logp) == 0).all()


# ----------------------------------------------------------------------------- advantages


def test_group_advantages_with_population_std_match_the_worked_numbers():
    # centred [0.425, -0.575, -0.075, 0.225]; sum of squares 0.5675; std = sqrt(0.5675/4) = 0.376663
    adv = group_advantages(REWARDS, "group", ddof=0)
    assert torch.allclose(adv, torch.tensor([[1.1283, -1.5266, -0.1991, 0.5974]], dtype=F64), atol=1e-4)


def test_group_advantages_with_sample_std_match_the_worked_numbers():
    # std = sqrt(0.5675/3) = 0.434933
    adv = group_advantages(REWARDS, "group", ddof=1)
    assert torch.allclose(adv, torch.tensor([[0.9772, -1.3220, -0.1724, 0.5173]], dtype=F64), atol=1e-4)


def test_dr_grpo_advantages_are_the_centred_rewards():
    adv = group_advantages(REWARDS, "none")
    assert torch.allclose(adv, torch.tensor([[0.425, -0.575, -0.075, 0.225]], dtype=F64), atol=1e-12)


def test_group_advantages_sum_to_zero_and_their_squares_to_g_or_g_minus_1():
    torch.manual_seed(0)
    r = torch.rand(5, 8, dtype=F64)  # B=5, G=8
    for ddof, expected in ((0, 8.0), (1, 7.0)):
        adv = group_advantages(r, "group", ddof=ddof, eps=0.0)
        assert torch.allclose(adv.sum(-1), torch.zeros(5, dtype=F64), atol=1e-12)
        assert torch.allclose((adv ** 2).sum(-1), torch.full((5,), expected, dtype=F64), atol=1e-12)
    ratio = group_advantages(r, ddof=1, eps=0.0) / group_advantages(r, ddof=0, eps=0.0)
    assert torch.allclose(ratio, torch.full_like(ratio, math.sqrt(7 / 8)))  # sample / population


def test_a_group_with_all_equal_rewards_gets_exactly_zero_advantage_not_nan():
    # 0.1 * 3 = 0.30000000000000004 in floats, so r - mean(r) alone would be ~1e-17, then amplified by 1/eps
    r = torch.tensor([[0.1, 0.1, 0.1], [1.0, 0.0, 0.0]], dtype=F64)
    for scale in ("group", "batch", "none"):
        for eps in (0.0, 1e-6):
            adv = group_advantages(r, scale, eps=eps)
            assert (adv[0] == 0).all() and torch.isfinite(adv).all()
    assert (group_advantages(torch.ones(2, 4), "batch", eps=0.0) == 0).all()  # a whole batch of equal rewards


def test_the_one_correct_answer_example_with_sample_and_population_std():
    r = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=F64)
    # centred [0.25]*3 + [-0.75]; sample std = sqrt(0.75/3) = 0.5; population std = sqrt(0.75/4) = 0.4330
    assert torch.allclose(group_advantages(r, ddof=1, eps=0.0), torch.tensor([[0.5, 0.5, 0.5, -1.5]], dtype=F64))
    pop = group_advantages(r, ddof=0, eps=0.0)
    assert torch.allclose(pop, torch.tensor([[0.577, 0.577, 0.577, -1.732]], dtype=F64), atol=1e-3)


def test_rloo_advantage_is_g_over_g_minus_1_times_the_centred_reward():
    # R_1 - mean(0, 0.5, 0.8) = 1 - 0.43333 = 0.56667 = 4/3 * 0.425
    rloo = rloo_advantages(REWARDS)
    assert torch.allclose(rloo, torch.tensor([[0.5667, -0.7667, -0.1000, 0.3000]], dtype=F64), atol=1e-4)
    assert torch.allclose(rloo, 4 / 3 * group_advantages(REWARDS, "none"), atol=1e-12)


def test_batch_scale_centres_per_group_and_divides_by_the_std_of_the_whole_batch():
    r = torch.tensor([[1.0, 0.0], [1.0, 1.0], [3.0, 1.0]], dtype=F64)
    # centred [[0.5, -0.5], [0, 0], [1, -1]]; population std over the 6 values = sqrt(2.5/6) = 0.645497
    adv = group_advantages(r, "batch", ddof=0, eps=0.0)
    s = math.sqrt(2.5 / 6)
    assert torch.allclose(adv, torch.tensor([[0.5 / s, -0.5 / s], [0, 0], [1 / s, -1 / s]], dtype=F64))
    assert (adv ** 2).sum().item() == pytest.approx(6.0)  # sum of squares N = B*G


def test_group_advantages_name_the_allowed_scales_and_need_two_samples():
    with pytest.raises(ValueError, match="'group', 'batch', 'none'"):
        group_advantages(REWARDS, "prompt")
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.ones(3, 1))


def test_an_outcome_advantage_is_broadcast_to_every_real_token():
    mask = torch.tensor([[True, True, False], [True, False, False]])
    adv = broadcast_outcome_advantage(torch.tensor([0.5, -2.0]), mask)
    assert adv.tolist() == [[0.5, 0.5, 0.0], [-2.0, 0.0, 0.0]]


def test_process_advantages_normalise_over_all_steps_then_sum_the_future_steps():
    # row 0: steps rewarded 1, 0 ending at tokens 1, 3;  row 1: one step rewarded 1 ending at token 4.
    # R = [1, 0, 1]: mean 2/3, population std sqrt((1/9 + 4/9 + 1/9)/3) = sqrt(2/9) = 0.471405
    # r~ = [1/3, -2/3, 1/3] / 0.471405 = [0.70711, -1.41421, 0.70711]
    # row 0: A_t = r~(1) + r~(3) = -0.70711 for t <= 1;  r~(3) = -1.41421 for t = 2, 3;  0 after the last step
    # row 1: A_t = 0.70711 for t <= 4, 0 at t = 5
    a, b = math.sqrt(0.5), math.sqrt(2.0)
    adv = process_advantages([[1.0, 0.0], [1.0]], [[1, 3], [4]], T=6, eps=0.0, dtype=F64)
    expected = torch.tensor([[a - b, a - b, -b, -b, 0, 0], [a, a, a, a, a, 0]], dtype=F64)
    assert torch.allclose(adv, expected, atol=1e-12)


def test_process_advantages_are_zero_when_no_step_can_be_told_apart():
    assert (process_advantages([[1.0], [1.0, 1.0]], [[0], [1, 2]], T=4) == 0).all()
    assert (process_advantages([[], []], [[], []], T=3) == 0).all()
    with pytest.raises(ValueError, match="token index"):
        process_advantages([[1.0]], [[5]], T=3)


def test_dynamic_sampling_keeps_only_groups_whose_rewards_differ():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [-1.0, 1.0, -1.0]])
    assert dynamic_sampling_filter(rewards).tolist() == [False, False, True, True]
    correct = torch.tensor([[True, True], [False, True]])  # 0 < n_correct < G
    assert dynamic_sampling_filter(correct).tolist() == [False, True]


# ----------------------------------------------------------------------------- surrogate and aggregation


def _surrogate_grad(p, p_old, adv, eps_low, eps_high):
    """d/dlogp of the clipped surrogate at pi = p for a token sampled with pi_old = p_old."""
    logp = torch.tensor(math.log(p), dtype=F64, requires_grad=True)
    ratio = policy_ratio(logp, torch.tensor(math.log(p_old), dtype=F64))
    clipped_surrogate(ratio, torch.tensor(adv, dtype=F64), eps_low, eps_high).backward()
    return logp.grad.item()


def test_clip_higher_lets_a_rare_token_rise_to_0_0128_instead_of_0_012():
    # DAPO: pi_old = 0.01, A > 0. eps_high 0.2 caps the ratio at 1.2 (pi = 0.012), eps_high 0.28 at 1.28 (0.0128);
    # beyond the cap the surrogate is flat, so its gradient is zero
    assert _surrogate_grad(0.0119, 0.01, 1.0, 0.2, 0.2) > 0 and _surrogate_grad(0.0121, 0.01, 1.0, 0.2, 0.2) == 0
    assert _surrogate_grad(0.0127, 0.01, 1.0, 0.2, 0.28) > 0 and _surrogate_grad(0.0129, 0.01, 1.0, 0.2, 0.28) == 0
    capped = clipped_surrogate(torch.tensor([2.0]), torch.tensor([1.0]), 0.2, 0.28)
    assert capped.item() == pytest.approx(1.28)


def test_for_a_negative_advantage_the_lower_clip_acts_and_the_upper_one_does_not():
    # A = -1, eps_low 0.2: a ratio of 0.7 is clipped to 0.8 (surrogate -0.8, no gradient); 0.9 is not clipped;
    # a ratio of 1.5 is NOT clipped to 1.28: min(-1.5, -1.28) = -1.5 keeps the pessimistic branch
    s = clipped_surrogate(torch.tensor([0.7, 0.9, 1.5]), torch.tensor(-1.0), 0.2, 0.28)
    assert torch.allclose(s, torch.tensor([-0.8, -0.9, -1.5]))
    assert _surrogate_grad(0.007, 0.01, -1.0, 0.2, 0.28) == 0
    assert _surrogate_grad(0.009, 0.01, -1.0, 0.2, 0.28) < 0 and _surrogate_grad(0.015, 0.01, -1.0, 0.2, 0.28) < 0


def test_clip_fraction_counts_masked_tokens_whose_gradient_the_clip_removed():
    ratio = torch.tensor([[1.5, 0.5, 1.0, 1.3, 1.5]])
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    # clipped: 1.5 with A>0 (above 1.2) and 0.5 with A<0 (below 0.8); 1.0 and (1.3, A<0) are not; the 5th is masked
    assert clip_fraction(ratio, adv, mask, 0.2).item() == 0.5


PER_TOKEN = torch.tensor([[1.0, 2.0, 3.0], [4.0, 99.0, 99.0], [7.0, 7.0, 7.0]])
AGG_MASK = torch.tensor([[True, True, True], [True, False, False], [False, False, False]])


def test_aggregate_seq_mean_token_mean_and_constant_on_hand_numbers():
    # seq_mean: rows (1+2+3)/3 = 2 and 4/1 = 4, the empty row left out: (2 + 4) / 2 = 3
    assert aggregate(PER_TOKEN, AGG_MASK, "seq_mean").item() == 3.0
    # token_mean: (1+2+3+4) / 4 tokens = 2.5
    assert aggregate(PER_TOKEN, AGG_MASK, "token_mean").item() == 2.5
    # constant: 10 / (N * max_len) = 10 / (3 * 5) = 0.6667, every row counted
    assert aggregate(PER_TOKEN, AGG_MASK, "constant", max_len=5).item() == pytest.approx(10 / 15)


def test_aggregate_weight_splits_each_aggregate_exactly_over_micro_batches():
    # micro-batches: rows {0, 1} and row {2} of AGG_MASK (3 + 1 tokens, then an empty row)
    first, second = AGG_MASK[:2], AGG_MASK[2:]
    # seq_mean: 2 rows with tokens of 2, and 0 of 2;  token_mean: 4 tokens of 4, 0 of 4;  constant: 2 rows of 3, 1 of 3
    assert (aggregate_weight(first, AGG_MASK, "seq_mean"), aggregate_weight(second, AGG_MASK, "seq_mean")) == (1.0, 0.0)
    assert (aggregate_weight(first, AGG_MASK, "token_mean"), aggregate_weight(second, AGG_MASK, "token_mean")) == (1, 0)
    assert aggregate_weight(first, AGG_MASK, "constant") == pytest.approx(2 / 3)
    assert aggregate_weight(second, AGG_MASK, "constant") == pytest.approx(1 / 3)
    # a split through the tokens: rows {0} and {1}: seq_mean 1/2 each, token_mean 3/4 and 1/4
    assert aggregate_weight(AGG_MASK[1:2], AGG_MASK[:2], "seq_mean") == 0.5
    assert aggregate_weight(AGG_MASK[:1], AGG_MASK[:2], "token_mean") == 0.75
    assert aggregate_weight(AGG_MASK[2:], AGG_MASK[2:], "token_mean") == 0.0  # nothing to average: weight 0
    # the identity gradient accumulation rests on, for random numbers and uneven micro-batches
    torch.manual_seed(0)
    x = torch.randn(7, 5, dtype=torch.float64)
    mask = torch.rand(7, 5) < 0.6
    mask[3] = False  # a row without tokens
    for mode in ("seq_mean", "token_mean", "constant"):
        whole = aggregate(x, mask, mode, max_len=5)
        parts = [slice(0, 3), slice(3, 4), slice(4, 7)]
        split = sum(aggregate_weight(mask[p], mask, mode) * aggregate(x[p], mask[p], mode, max_len=5) for p in parts)
        assert split.item() == pytest.approx(whole.item(), abs=1e-12), mode


def test_aggregate_names_the_allowed_modes_and_constant_needs_max_len():
    with pytest.raises(ValueError, match="'seq_mean', 'token_mean', 'constant'"):
        aggregate(PER_TOKEN, AGG_MASK, "mean")
    with pytest.raises(ValueError, match="max_len"):
        aggregate(PER_TOKEN, AGG_MASK, "constant")


# ----------------------------------------------------------------------------- the GRPO objective


def _objective_case():
    mask = torch.tensor([[True, True, True], [True, True, False]])
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -1.0, 0.0]], dtype=F64)
    ref_logp = logp + torch.tensor([[0.0, 0.0, 0.0], [-0.5, 0.5, 3.0]], dtype=F64)  # log r per token
    return logp, ref_logp, torch.tensor([1.0, -0.5], dtype=F64), mask


def test_grpo_objective_puts_the_k3_penalty_inside_the_token_average():
    logp, ref_logp, adv, mask = _objective_case()
    # ratio 1, so the surrogate is A. k3(-0.5) = e^-0.5 - 0.5 = 0.106531, k3(0.5) = e^0.5 - 1.5 = 0.148721
    # row 0: 1.0 per token -> 1.0.   row 1: -0.5 - 0.1 * (0.106531, 0.148721) -> mean -0.5127626
    # seq_mean (1.0 - 0.5127626) / 2 = 0.2436187;  token_mean (3 - 1.0255252) / 5 = 0.3948950;
    # constant (3 - 1.0255252) / (2 * 4) = 0.2468094
    for agg, expected in (("seq_mean", 0.2436187), ("token_mean", 0.3948950), ("constant", 0.2468094)):
        J, stats = grpo_objective(logp, logp, ref_logp, adv, mask, kl_coef=0.1, agg=agg, max_len=4)
        assert J.item() == pytest.approx(expected, abs=1e-7)
    assert stats["kl"] == pytest.approx((0.106531 + 0.148721) / 5, abs=1e-6)  # token mean of k3
    assert stats["clip_frac"] == 0.0 and stats["ratio_mean"] == 1.0 and stats["tokens"] == 5


def test_grpo_loss_is_minus_the_objective_and_runs_without_a_reference_when_beta_is_zero():
    logp, ref_logp, adv, mask = _objective_case()
    J, _ = grpo_objective(logp, logp, ref_logp, adv, mask, 0.1)
    loss, _ = grpo_loss(logp, logp, ref_logp, adv, mask, 0.1)
    assert loss.item() == -J.item()
    J0, stats = grpo_objective(logp, logp, None, adv, mask, kl_coef=0.0)
    assert J0.item() == pytest.approx((1.0 - 0.5) / 2) and math.isnan(stats["kl"])
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_objective(logp, logp, None, adv, mask, kl_coef=0.1)


def test_ppo_loss_is_the_same_surrogate_without_the_kl_term():
    logp, ref_logp, adv, mask = _objective_case()
    adv_tok = broadcast_outcome_advantage(adv, mask)
    assert ppo_loss(logp, logp, adv_tok, mask)[0].item() == grpo_loss(logp, logp, None, adv, mask, 0.0)[0].item()


# ----------------------------------------------------------------------------- gradient coefficients (Eq. 5)


@pytest.mark.parametrize("agg", ["seq_mean", "token_mean", "constant"])
def test_autograd_of_the_grpo_loss_at_mu_1_is_minus_the_gradient_coefficient_over_the_normaliser(agg):
    torch.manual_seed(0)
    N, T, beta = 4, 5, 0.3
    lengths = torch.tensor([5, 3, 1, 4])
    mask = torch.arange(T)[None, :] < lengths[:, None]  # (N, T)
    logp = (-torch.rand(N, T, dtype=F64) * 3 - 0.05).requires_grad_()
    ref_logp = logp.detach() + 0.5 * torch.randn(N, T, dtype=F64)
    adv = torch.randn(N, dtype=F64)
    loss, _ = grpo_loss(logp, logp.detach(), ref_logp, adv, mask, beta, agg=agg, max_len=T)  # mu = 1: pi_old = pi
    loss.backward()
    gc = grpo_gradient_coefficient(broadcast_outcome_advantage(adv, mask), logp, ref_logp, beta)
    # Eq. 20: grad J = 1/G sum_i 1/|o_i| sum_t GC_{i,t} grad logp_{i,t}, so dloss/dlogp_{i,t} = -GC_{i,t} / norm
    norm = {"seq_mean": (lengths * N)[:, None], "token_mean": lengths.sum(), "constant": N * T}[agg]
    assert torch.allclose(logp.grad, -gc * mask / norm, atol=1e-14, rtol=0)


def test_through_a_real_model_the_grpo_loss_and_the_gradient_coefficient_loss_give_the_same_parameter_gradient():
    model, ref_model = tiny(seed=0), tiny(seed=1)
    roll = rollout(model, PROMPTS)
    ids, valid = left_pad(PROMPTS, PAD, "cpu")
    logp = completion_logprobs(model, ids, valid, roll.ids, roll.mask)  # (N, T), with grad
    with torch.no_grad():
        ref_logp = completion_logprobs(ref_model, ids, valid, roll.ids, roll.mask)
    adv = torch.tensor([1.0, -0.7, 0.3, -1.0, 0.7, -0.3], dtype=F64)  # (N,) any advantages will do
    mask, beta = roll.mask, 0.5
    params = list(model.parameters())
    loss, _ = grpo_loss(logp, logp.detach(), ref_logp, adv, mask, beta, agg="seq_mean")
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    gc = grpo_gradient_coefficient(broadcast_outcome_advantage(adv, mask), logp, ref_logp, beta)
    gc_loss = -(masked_sum(gc * logp, mask, -1) / mask.sum(-1)).mean()  # -Eq. 5 with the GRPO coefficient
    gc_grads = torch.autograd.grad(gc_loss, params)
    for g, h in zip(grads, gc_grads):
        assert torch.allclose(g, h, atol=1e-13, rtol=1e-9)
    assert max(g.abs().max().item() for g in grads) > 1e-4  # the gradient is not trivially zero


def test_gradient_coefficients_of_table_10_on_small_numbers():
    mask = torch.tensor([[True, True], [True, False]])
    assert gradient_coefficient("sft", mask).tolist() == [[1.0, 1.0], [1.0, 0.0]]
    for method in ("rft", "online_rft"):  # I(o): same coefficient, different data source
        assert gradient_coefficient(method, mask, correct=torch.tensor([1, 0])).tolist() == [[1.0, 1.0], [0.0, 0.0]]
    adv = torch.tensor([[0.5, -0.2], [1.0, 7.0]], dtype=F64)
    assert gradient_coefficient("ppo", mask, adv=adv).tolist() == [[0.5, -0.2], [1.0, 0.0]]
    logp = torch.full((2, 2), -1.0, dtype=F64)
    ref_logp = torch.full((2, 2), -1.5, dtype=F64)
    # GRPO: A + beta (e^{-0.5} - 1) = A + 0.1 * (0.606531 - 1) = A - 0.0393469
    gc = gradient_coefficient("grpo", mask, adv=adv, logp=logp, ref_logp=ref_logp, kl_coef=0.1)
    assert torch.allclose(gc, torch.tensor([[0.4606531, -0.2393469], [0.9606531, 0.0]], dtype=F64), atol=1e-7)
    with pytest.raises(ValueError, match="'sft'"):
        gradient_coefficient("dpo", mask)


# ----------------------------------------------------------------------------- the PPO baseline


def test_ppo_token_rewards_are_minus_beta_k1_on_every_token_plus_the_score_on_the_last():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-1.0, -2.0, -0.5]], dtype=F64, requires_grad=True)
    ref_logp = torch.tensor([[-1.5, -1.5, -1.0], [-1.5, -1.5, -1.0]], dtype=F64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    # -0.1 * (logp - ref) = [-0.05, 0.05, -0.05]; score 1 on token 2 of row 0, score 2 on token 1 of row 1
    r = ppo_token_rewards(torch.tensor([1.0, 2.0], dtype=F64), logp, ref_logp, mask, kl_coef=0.1)
    assert torch.allclose(r, torch.tensor([[-0.05, 0.05, 0.95], [-0.05, 2.05, 0.0]], dtype=F64))
    assert not r.requires_grad  # a reward, not a loss term


def test_gae_on_a_hand_computed_three_token_example():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.2, 1.0, 0.0]], dtype=F64)
    values = torch.tensor([[0.5, 0.6, 0.7], [0.1, 0.4, 9.0]], dtype=F64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    # gamma 0.9, lam 0.8, gamma*lam = 0.72. row 0: delta = [0.9*0.6-0.5, 0.9*0.7-0.6, 1-0.7] = [0.04, 0.03, 0.3]
    #   A_2 = 0.3;  A_1 = 0.03 + 0.72*0.3 = 0.246;  A_0 = 0.04 + 0.72*0.246 = 0.21712
    # row 1 ends at t=1, so V(s_2) = 0: delta_1 = 1 - 0.4 = 0.6;  delta_0 = 0.2 + 0.9*0.4 - 0.1 = 0.46
    #   A_1 = 0.6;  A_0 = 0.46 + 0.72*0.6 = 0.892
    adv, returns = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    assert torch.allclose(adv, torch.tensor([[0.21712, 0.246, 0.3], [0.892, 0.6, 0.0]], dtype=F64), atol=1e-12)
    assert torch.allclose(returns, torch.tensor([[0.71712, 0.846, 1.0], [0.992, 1.0, 0.0]], dtype=F64), atol=1e-12)


def test_gae_with_gamma_and_lambda_1_is_the_sum_of_future_rewards_minus_the_value():
    torch.manual_seed(0)
    rewards, values = torch.randn(3, 6, dtype=F64), torch.randn(3, 6, dtype=F64)
    mask = torch.arange(6)[None, :] < torch.tensor([[6], [4], [1]])
    adv, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    future = (rewards * mask).flip(-1).cumsum(-1).flip(-1)  # sum_{l >= t} r_l
    assert torch.allclose(returns, future * mask, atol=1e-12)
    assert torch.allclose(adv, (future - values) * mask, atol=1e-12)


def test_the_clipped_value_loss_takes_the_worse_of_the_clipped_and_unclipped_errors():
    values = torch.tensor([[1.0, 1.0]])
    old_values = torch.tensor([[0.5, 0.5]])
    returns = torch.tensor([[2.0, 0.0]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # token 0: unclipped (1-2)^2 = 1, clipped V = 0.7: (0.7-2)^2 = 1.69 -> 1.69
    # token 1: unclipped (1-0)^2 = 1, clipped (0.7-0)^2 = 0.49 -> 1.     0.5 * mean(1.69, 1) = 0.6725
    assert value_loss(values, old_values, returns, mask, clip_eps=0.2).item() == pytest.approx(0.6725)
    assert value_loss(values, old_values, returns, mask, clip_eps=None).item() == pytest.approx(0.5)


def test_whitened_advantages_have_zero_mean_and_unit_variance_over_the_masked_tokens():
    torch.manual_seed(0)
    adv = torch.randn(4, 7, dtype=F64) * 3 + 2
    mask = torch.rand(4, 7) < 0.6
    w = whiten(adv, mask)
    assert masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-12)
    assert masked_mean(w ** 2, mask).item() == pytest.approx(1.0, abs=1e-6)
    assert (w[~mask] == 0).all()


# ----------------------------------------------------------------------------- evaluation


def test_pass_at_k_on_hand_numbers_and_against_the_binomial_formula():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 3) == 1.0
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)  # 1 - C(3,1)/C(5,1) = 1 - 3/5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    for n, c, k in ((20, 3, 5), (16, 7, 1), (30, 1, 10)):
        assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)


def test_majority_vote_counts_answers_ties_go_to_the_first_seen_and_abstentions_never_win():
    assert majority_vote([3, 5, 3, None]) == 3
    assert majority_vote([5, 3]) == 5  # a tie: the first seen
    assert majority_vote([None, 7, None, None]) == 7  # three abstentions lose to one answer
    assert majority_vote([None, None]) is None and majority_vote([]) is None
    from fractions import Fraction
    assert majority_vote([Fraction(12), Fraction(24, 2), Fraction(5)]) == 12  # parsed "12" and "12.0" are one vote


# ----------------------------------------------------------------------------- the clip at work: ratios other than 1
#
# At ratio 1 (logp == old_logp, one update per rollout) the clip can never act, so the tests above cannot see it.
# Below, old_logp and ref_logp are built from chosen ratios, old_logp = logp - log(rho) and
# ref_logp = logp + log(r), so that rho = pi_theta/pi_old and r = pi_ref/pi_theta are round numbers and every
# expected value is arithmetic a student can redo. eps_low = 0.2, eps_high = 0.28 (DAPO), so the clip
# interval is [0.8, 1.28]. Two rows: row 0 has 3 real tokens, row 1 has 2 real tokens and a padded token that
# carries junk (a ratio of e^3 = 20.1, a reference 5 nats above, an advantage of 100) which must not count.
#
#   token   A      rho    clip(rho)  min(rho A, clip(rho) A)              r = pi_ref/pi_theta   k3 = r - 1 - ln r
#   (0,0)   +1     1.5    1.28       1.28    clipped (A > 0, rho > 1.28)   2                     1 - ln 2 = 0.3068528
#   (0,1)   +1     1.1    1.1        1.1     inside                        1                     0
#   (0,2)   +1     1.25   1.25       1.25    inside only because eps_high = 0.28 (eps 0.2 would clip it to 1.2)
#                                                                          0.5                   ln 2 - 0.5 = 0.1931472
#   (1,0)   -0.5   0.5    0.8        -0.4    clipped (A < 0, rho < 0.8): min(-0.25, -0.4)
#                                                                          0.5                   0.1931472
#   (1,1)   -0.5   2.0    1.28       -1.0    NOT clipped: min(-1.0, -0.64) keeps rho A
#                                                                          2                     0.3068528
#   (1,2)   pad    (junk)
#
# beta = 0.1, and k3(2) + k3(0.5) = 0.5 exactly, so with x = surrogate - beta k3 per token:
#   row 0 sum: 1.28 + 1.1 + 1.25 - 0.1 * (0.3068528 + 0 + 0.1931472) = 3.63 - 0.05 = 3.58
#   row 1 sum: -0.4 - 1.0 - 0.1 * (0.1931472 + 0.3068528) = -1.4 - 0.05 = -1.45
EPS_LOW, EPS_HIGH, BETA = 0.2, 0.28, 0.1
CLIP_MASK = torch.tensor([[True, True, True], [True, True, False]])
CLIP_RHO = [[1.5, 1.1, 1.25], [0.5, 2.0, math.exp(3.0)]]  # pi_theta / pi_old; the pad's junk ratio e^3 = 20.09
CLIP_R = [[2.0, 1.0, 0.5], [0.5, 2.0, math.exp(5.0)]]  # pi_ref / pi_theta; the pad's junk k3 = e^5 - 6 = 142.4
CLIP_ADV = torch.tensor([1.0, -0.5], dtype=F64)  # (N,) outcome advantages; broadcast gives the pad A = 0
CLIP_ADV_TOKENS = torch.tensor([[1.0, 1.0, 1.0], [-0.5, -0.5, 100.0]], dtype=F64)  # the same per token, junk on the pad
# the three normalisers of a token: seq_mean G * |o_i| = 2*3 for row 0 and 2*2 for row 1; token_mean 5 tokens;
# constant N * max_len = 2 * 4 = 8
CLIP_NORM = {"seq_mean": torch.tensor([[6.0], [4.0]], dtype=F64), "token_mean": 5.0, "constant": 8.0}


def _logps(rho, r):
    """A leaf logp (with grad) and old_logp, ref_logp built so that exp(logp - old_logp) = rho and
    exp(ref_logp - logp) = r; the pad's logp is 0, as completion_logprobs leaves it."""
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-1.5, -0.7, 0.0]], dtype=F64)
    old_logp = logp - torch.tensor(rho, dtype=F64).log()  # log pi_old = log pi_theta - log rho
    ref_logp = logp + torch.tensor(r, dtype=F64).log()  # log pi_ref = log pi_theta + log r
    return logp.clone().requires_grad_(), old_logp, ref_logp


@pytest.mark.parametrize("agg, expected", [
    ("seq_mean", 0.2341666666667),  # (3.58/3 + (-1.45)/2) / 2 = (1.1933333 - 0.725) / 2 = 0.2341667
    ("token_mean", 0.426),  # (3.58 - 1.45) / 5 tokens = 2.13 / 5
    ("constant", 0.26625),  # 2.13 / (N * max_len) = 2.13 / 8
])
def test_the_grpo_objective_off_ratio_1_takes_the_pessimistic_min_on_both_sides_of_the_clip_in_each_aggregation(
        agg, expected):
    logp, old_logp, ref_logp = _logps(CLIP_RHO, CLIP_R)
    for adv in (CLIP_ADV, CLIP_ADV_TOKENS):  # outcome (N,) or per-token (N, T) with junk on the pad: the same J
        J, stats = grpo_objective(logp, old_logp, ref_logp, adv, CLIP_MASK, BETA, EPS_LOW, EPS_HIGH, agg, max_len=4)
        assert J.item() == pytest.approx(expected, abs=1e-12)
        assert stats["objective"] == pytest.approx(expected, abs=1e-12)
        loss, loss_stats = grpo_loss(logp, old_logp, ref_logp, adv, CLIP_MASK, BETA, EPS_LOW, EPS_HIGH, agg, max_len=4)
        assert loss.item() == -J.item()  # loss = -J, the same number with its sign flipped
        assert loss_stats == stats  # the loss reports the objective's stats


def test_the_grpo_stats_off_ratio_1_count_clipped_tokens_and_average_ratio_and_kl_over_the_real_tokens_only():
    logp, old_logp, ref_logp = _logps(CLIP_RHO, CLIP_R)
    _, stats = grpo_objective(logp, old_logp, ref_logp, CLIP_ADV_TOKENS, CLIP_MASK, BETA, EPS_LOW, EPS_HIGH)
    assert stats["clip_frac"] == pytest.approx(2 / 5)  # (0,0) and (1,0) of 5 real tokens; (1,1) is not clipped
    assert stats["ratio_mean"] == pytest.approx(1.27, abs=1e-12)  # (1.5 + 1.1 + 1.25 + 0.5 + 2.0) / 5 = 6.35 / 5
    assert stats["ratio_min"] == pytest.approx(0.5, abs=1e-12)
    assert stats["ratio_max"] == pytest.approx(2.0, abs=1e-12)  # not the pad's e^3 = 20.1
    # token mean of k3: (0.3068528 + 0 + 0.1931472 + 0.1931472 + 0.3068528) / 5 = 1.0 / 5, not the pad's 142.4
    assert stats["kl"] == pytest.approx(0.2, abs=1e-12)
    assert stats["tokens"] == 5


@pytest.mark.parametrize("agg", ["seq_mean", "token_mean", "constant"])
def test_the_grpo_objective_clips_a_positive_advantage_token_above_1_plus_eps_high_and_its_gradient_is_only_the_kl_term(
        agg):
    # loss = -J, J = sum_{i,t} (surrogate - beta k3) / norm_{i,t}. Per token, times its normaliser:
    #   d(-surrogate)/dlogp = -rho A where the unclipped branch is taken (d rho / dlogp = rho), 0 where clipped
    #   d(+beta k3)/dlogp  = beta (1 - r)  (k3 = r - 1 - ln r, dr/dlogp = -r; for J it is beta (r - 1))
    #   (0,0) clipped:      0          + 0.1 * (1 - 2)   = -0.1
    #   (0,1) inside:      -1.1 * 1    + 0.1 * (1 - 1)   = -1.1
    #   (0,2) inside:      -1.25 * 1   + 0.1 * (1 - 0.5) = -1.2
    #   (1,0) clipped:      0          + 0.1 * (1 - 0.5) = +0.05
    #   (1,1) not clipped: -2.0 * -0.5 + 0.1 * (1 - 2)   = +0.9
    #   (1,2) pad:          0
    logp, old_logp, ref_logp = _logps(CLIP_RHO, CLIP_R)
    loss, _ = grpo_loss(logp, old_logp, ref_logp, CLIP_ADV, CLIP_MASK, BETA, EPS_LOW, EPS_HIGH, agg, max_len=4)
    loss.backward()
    times_norm = torch.tensor([[-0.1, -1.1, -1.2], [0.05, 0.9, 0.0]], dtype=F64)
    assert torch.allclose(logp.grad, times_norm / CLIP_NORM[agg], atol=1e-12, rtol=0)
    # seq_mean, spelled out: row 0 over 6, row 1 over 4
    if agg == "seq_mean":
        expected = torch.tensor([[-0.1 / 6, -1.1 / 6, -1.2 / 6], [0.05 / 4, 0.9 / 4, 0.0]], dtype=F64)
        assert torch.allclose(logp.grad, expected, atol=1e-12, rtol=0)
    assert logp.grad[1, 2] == 0.0  # the pad's junk gets no gradient at all


@pytest.mark.parametrize("agg", ["seq_mean", "token_mean", "constant"])
def test_with_beta_zero_the_clipped_tokens_of_the_grpo_loss_get_exactly_zero_gradient(agg):
    # beta = 0: the KL part is gone, so the clipped tokens (0,0) and (1,0) have nothing left: exactly 0.0.
    # The others keep -rho A / norm: (0,1) -1.1, (0,2) -1.25, (1,1) +1.0 (times 1/norm)
    logp, old_logp, ref_logp = _logps(CLIP_RHO, CLIP_R)
    for ref in (ref_logp, None):  # with a reference at beta 0, and without one
        logp.grad = None
        loss, _ = grpo_loss(logp, old_logp, ref, CLIP_ADV, CLIP_MASK, 0.0, EPS_LOW, EPS_HIGH, agg, max_len=4)
        loss.backward()
        assert logp.grad[0, 0].item() == 0.0 and logp.grad[1, 0].item() == 0.0
        times_norm = torch.tensor([[0.0, -1.1, -1.25], [0.0, 1.0, 0.0]], dtype=F64)
        assert torch.allclose(logp.grad, times_norm / CLIP_NORM[agg], atol=1e-12, rtol=0)


def test_the_reference_log_probs_get_no_gradient_from_the_grpo_loss_even_if_passed_with_requires_grad():
    # (design: k3 via expm1) ref_logp carries no gradient (pi_ref is frozen). A ref_logp that still has a graph (a caller who
    # forgot no_grad) must neither receive a gradient nor change the policy's.
    logp, old_logp, ref_logp = _logps(CLIP_RHO, CLIP_R)
    ref_leaf = ref_logp.clone().requires_grad_()
    loss, _ = grpo_loss(logp, old_logp, ref_leaf, CLIP_ADV, CLIP_MASK, BETA, EPS_LOW, EPS_HIGH)
    g_logp, g_ref = torch.autograd.grad(loss, (logp, ref_leaf), allow_unused=True)
    assert g_ref is None  # not in the graph at all
    expected = torch.tensor([[-0.1 / 6, -1.1 / 6, -1.2 / 6], [0.05 / 4, 0.9 / 4, 0.0]], dtype=F64)  # as above
    assert torch.allclose(g_logp, expected, atol=1e-12, rtol=0)


# PPO with per-token advantages (N, T), the same eps_low = 0.2, eps_high = 0.28 (clip interval [0.8, 1.28]):
#
#   token   A      rho    min(rho A, clip(rho) A)
#   (0,0)   +2     1.5    min(3.0, 2.56)  = 2.56   clipped (A > 0, rho > 1.28)
#   (0,1)   -1     0.5    min(-0.5, -0.8) = -0.8   clipped (A < 0, rho < 0.8)
#   (0,2)   +0.5   0.6    min(0.3, 0.4)   = 0.3    NOT clipped (A > 0 below 0.8: the min keeps rho A)
#   (1,0)   -2     1.5    min(-3.0, -2.56) = -3.0  NOT clipped (A < 0 above 1.28)
#   (1,1)   +1     1.25   1.25                     inside only because eps_high = 0.28
#   (1,2)   pad: A = 100, rho = e^3 (junk)
#   row sums: 2.56 - 0.8 + 0.3 = 2.06;  -3.0 + 1.25 = -1.75
PPO_RHO = [[1.5, 0.5, 0.6], [1.5, 1.25, math.exp(3.0)]]
PPO_ADV = torch.tensor([[2.0, -1.0, 0.5], [-2.0, 1.0, 100.0]], dtype=F64)


@pytest.mark.parametrize("agg, expected", [
    ("seq_mean", -0.0941666666667),  # (2.06/3 + (-1.75)/2) / 2 = (0.6866667 - 0.875) / 2 = -0.0941667
    ("token_mean", 0.062),  # (2.06 - 1.75) / 5 = 0.31 / 5
    ("constant", 0.03875),  # 0.31 / (2 * 4)
])
def test_the_ppo_objective_off_ratio_1_clips_per_token_advantages_on_both_sides_in_each_aggregation(agg, expected):
    logp, old_logp, _ = _logps(PPO_RHO, [[1.0] * 3] * 2)
    J, stats = ppo_objective(logp, old_logp, PPO_ADV, CLIP_MASK, EPS_LOW, EPS_HIGH, agg, max_len=4)
    assert J.item() == pytest.approx(expected, abs=1e-12)
    loss, loss_stats = ppo_loss(logp, old_logp, PPO_ADV, CLIP_MASK, EPS_LOW, EPS_HIGH, agg, max_len=4)
    assert loss.item() == -J.item() and loss_stats == stats
    assert stats["clip_frac"] == pytest.approx(2 / 5)  # (0,0) and (0,1); not (0,2) nor (1,0)
    assert stats["ratio_mean"] == pytest.approx(1.07, abs=1e-12)  # (1.5 + 0.5 + 0.6 + 1.5 + 1.25) / 5 = 5.35 / 5
    assert (stats["ratio_min"], stats["ratio_max"]) == (pytest.approx(0.5), pytest.approx(1.5))  # not the pad's 20.1
    assert stats["tokens"] == 5 and "kl" not in stats  # PPO's KL is in the reward, not the loss


@pytest.mark.parametrize("agg", ["seq_mean", "token_mean", "constant"])
def test_the_ppo_loss_gradient_is_zero_on_clipped_tokens_and_minus_rho_a_over_the_normaliser_elsewhere(agg):
    # d(-surrogate)/dlogp times the normaliser: clipped (0,0), (0,1): 0;  (0,2): -0.6 * 0.5 = -0.3;
    # (1,0): -1.5 * -2 = +3.0;  (1,1): -1.25 * 1 = -1.25;  pad 0
    logp, old_logp, _ = _logps(PPO_RHO, [[1.0] * 3] * 2)
    loss, _ = ppo_loss(logp, old_logp, PPO_ADV, CLIP_MASK, EPS_LOW, EPS_HIGH, agg, max_len=4)
    loss.backward()
    assert logp.grad[0, 0].item() == 0.0 and logp.grad[0, 1].item() == 0.0  # exactly zero where clipped
    times_norm = torch.tensor([[0.0, 0.0, -0.3], [3.0, -1.25, 0.0]], dtype=F64)
    assert torch.allclose(logp.grad, times_norm / CLIP_NORM[agg], atol=1e-12, rtol=0)


def test_clipped_surrogate_with_eps_low_0_2_and_eps_high_0_28_clips_at_0_8_below_and_1_28_above():
    ratio = torch.tensor([0.7, 0.75, 1.25, 1.3, 0.75, 0.85, 1.25, 1.3], dtype=F64, requires_grad=True)
    adv = torch.tensor([2.0, 2.0, 2.0, 2.0, -3.0, -3.0, -3.0, -3.0], dtype=F64)
    s = clipped_surrogate(ratio, adv, EPS_LOW, EPS_HIGH)
    expected = torch.tensor([
        1.4,  # A=2, 0.7:   min(1.4, 0.8*2 = 1.6) = 1.4        (A > 0: the lower clip never acts)
        1.5,  # A=2, 0.75:  min(1.5, 1.6) = 1.5
        2.5,  # A=2, 1.25:  inside [0.8, 1.28]: 2.5            (eps_high = eps_low = 0.2 would give 2.4)
        2.56,  # A=2, 1.3:  min(2.6, 1.28*2 = 2.56) = 2.56     clipped above
        -2.4,  # A=-3, 0.75: min(-2.25, 0.8*-3 = -2.4) = -2.4  clipped below (eps_low 0.28 would give -2.25)
        -2.55,  # A=-3, 0.85: inside: -2.55
        -3.75,  # A=-3, 1.25: min(-3.75, -3.75) = -3.75        inside
        -3.9,  # A=-3, 1.3:  min(-3.9, 1.28*-3 = -3.84) = -3.9  NOT clipped (A < 0: the upper clip never acts)
    ], dtype=F64)
    assert torch.allclose(s, expected, atol=1e-12, rtol=0)
    s.sum().backward()
    # d/drho: A on the unclipped branch, 0 where the clipped constant wins (1.3 with A > 0, 0.75 with A < 0)
    assert ratio.grad.tolist() == [2.0, 2.0, 2.0, 0.0, 0.0, -3.0, -3.0, -3.0]


def test_at_a_ratio_exactly_on_the_clip_boundary_the_surrogate_keeps_its_full_gradient_and_is_not_counted_clipped():
    # 1 + 0.28 == 1.28 and 1 - 0.2 == 0.8 exactly in float64, so these ratios sit exactly on the bounds.
    ratio = torch.tensor([1.28, 0.8, 1.28, 0.8], dtype=F64, requires_grad=True)
    adv = torch.tensor([2.0, -3.0, -3.0, 2.0], dtype=F64)
    s = clipped_surrogate(ratio, adv, EPS_LOW, EPS_HIGH)
    # both branches are equal on the boundary: 1.28*2 = 2.56, 0.8*-3 = -2.4, 1.28*-3 = -3.84, 0.8*2 = 1.6
    assert torch.allclose(s, torch.tensor([2.56, -2.4, -3.84, 1.6], dtype=F64), atol=1e-12, rtol=0)
    s.sum().backward()
    # What torch gives on the boundary: the full A, as if unclipped. Two rules make it so:
    #   - clamp passes the gradient through where min <= x <= max, bounds included, so d clip(rho)/drho = 1 there;
    #   - minimum(a, b) with a == b sends half the gradient to each: 1/2 * A (rho A) + 1/2 * A * 1 (clip(rho) A) = A.
    # So the clip removes the gradient only strictly beyond 1 + eps_high (A > 0) or 1 - eps_low (A < 0), and
    # clip_fraction (strict <) agrees: a token on the boundary is not counted as clipped.
    assert ratio.grad.tolist() == [2.0, -3.0, -3.0, 2.0]
    assert clip_fraction(ratio.detach(), adv, torch.ones(4, dtype=torch.bool), EPS_LOW, EPS_HIGH).item() == 0.0
