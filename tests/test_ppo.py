"""PPO, the baseline GRPO is compared with (DeepSeekMath Eqs. 1-2, GAE as DAPO Eqs. 2-3): the critic-side
equations on hand-computed numbers, and the critic's alignment with the completion tokens.

Run: python -m pytest -q tests/test_ppo.py
"""

import math

import pytest
import torch

import grpo
from model import Critic, left_pad, load_checkpoint, load_critic, save_checkpoint
from test_grpo import PAD, PROMPTS, rollout, tiny

F64 = torch.float64


# ----------------------------------------------------------------------------- the critic-side equations


def test_token_rewards_gae_returns_value_loss_and_explained_variance_on_a_hand_computed_example():
    old_logp = torch.tensor([[-1.0, -0.5, -2.0], [-0.2, -1.0, 0.0]], dtype=F64)
    ref_logp = torch.tensor([[-1.5, -0.5, -1.0], [-0.2, -2.0, 0.0]], dtype=F64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    # k1 = old - ref = [[0.5, 0, -1], [0, 1]]; beta 0.1: r = -0.1 k1 = [[-0.05, 0, 0.1], [0, -0.1]], plus the
    # score on the last token: 1.0 on token 2 of row 0, 0.0 on token 1 of row 1
    r = grpo.ppo_token_rewards(torch.tensor([1.0, 0.0], dtype=F64), old_logp, ref_logp, mask, kl_coef=0.1)
    assert torch.allclose(r, torch.tensor([[-0.05, 0.0, 1.1], [0.0, -0.1, 0.0]], dtype=F64), atol=1e-15)
    values = torch.tensor([[0.5, 0.6, 0.8], [0.2, 0.1, 7.0]], dtype=F64)  # 7.0 is past the end: never read
    # gamma 1, lambda 0.95.  row 0: delta = [-0.05 + 0.6 - 0.5, 0 + 0.8 - 0.6, 1.1 - 0.8] = [0.05, 0.2, 0.3]
    #   A_2 = 0.3;  A_1 = 0.2 + 0.95 * 0.3 = 0.485;  A_0 = 0.05 + 0.95 * 0.485 = 0.51075
    # row 1: delta = [0 + 0.1 - 0.2, -0.1 - 0.1] = [-0.1, -0.2]: A_1 = -0.2;  A_0 = -0.1 + 0.95 * (-0.2) = -0.29
    adv, returns = grpo.gae(r, values, mask, gamma=1.0, lam=0.95)
    assert torch.allclose(adv, torch.tensor([[0.51075, 0.485, 0.3], [-0.29, -0.2, 0.0]], dtype=F64), atol=1e-12)
    # R = A + V = [[1.01075, 1.085, 1.1], [-0.09, -0.1]]
    assert torch.allclose(returns, torch.tensor([[1.01075, 1.085, 1.1], [-0.09, -0.1, 0.0]], dtype=F64), atol=1e-12)
    # the critic after an update, V = V_old + [[0.3, -0.1, 0.5], [0, -0.5]], clipped to V_old +- 0.2:
    # (0,0) V 0.8, V_clip 0.7: max(0.21075^2, 0.31075^2) = 0.0965655625;  (0,1) V = V_clip = 0.5: 0.585^2 = 0.342225
    # (0,2) V 1.3, V_clip 1.0: max(0.2^2, 0.1^2) = 0.04;  (1,0) 0.29^2 = 0.0841;  (1,1) V -0.4, V_clip -0.1:
    # max(0.3^2, 0) = 0.09.   L_V = 0.5 * (sum 0.6528905625) / 5 tokens = 0.06528905625
    new_values = values + torch.tensor([[0.3, -0.1, 0.5], [0.0, -0.5, 3.0]], dtype=F64)
    assert grpo.value_loss(new_values, values, returns, mask, clip_eps=0.2).item() == pytest.approx(0.06528905625,
                                                                                                   abs=1e-12)
    # explained variance of V_old: Var(R) = 0.6853881125 - 0.60115^2 = 0.32400679,
    # Var(R - V) = Var(A) = 0.1420381125 - 0.16115^2 = 0.11606879;  EV = 1 - 0.11606879 / 0.32400679
    ev = grpo.explained_variance(values, returns, mask)
    assert ev == pytest.approx(1 - 0.11606879 / 0.32400679, abs=1e-12) and ev == pytest.approx(0.641771, abs=1e-6)


def test_explained_variance_is_1_for_a_perfect_critic_0_for_the_mean_and_nan_for_equal_returns():
    returns = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 99.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert grpo.explained_variance(returns, returns, mask) == 1.0
    assert grpo.explained_variance(torch.full_like(returns, 3.0), returns, mask) == pytest.approx(0.0)  # mean(R) = 3
    assert math.isnan(grpo.explained_variance(torch.zeros(2, 3), torch.ones(2, 3), mask))  # nothing to explain


def test_gae_with_gamma_and_lambda_1_is_the_return_minus_the_value_on_a_hand_example():
    rewards = torch.tensor([[0.0, -0.1, 1.0], [0.5, 0.25, 0.0]], dtype=F64)
    values = torch.tensor([[0.4, 0.5, 0.9], [0.3, 0.2, 5.0]], dtype=F64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    # returns G_t = sum_{l >= t} r_l: row 0 [0.9, 0.9, 1.0], row 1 [0.75, 0.25];  A = G - V
    adv, returns = grpo.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(returns, torch.tensor([[0.9, 0.9, 1.0], [0.75, 0.25, 0.0]], dtype=F64), atol=1e-12)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.4, 0.1], [0.45, 0.05, 0.0]], dtype=F64), atol=1e-12)


# ----------------------------------------------------------------------------- the critic


def critic_with_random_head(policy, seed=0) -> Critic:
    critic = Critic.from_policy(policy)
    torch.manual_seed(seed)
    torch.nn.init.normal_(critic.value_head.weight, std=0.5)  # nonzero values, so that alignment can be seen
    torch.nn.init.normal_(critic.value_head.bias, std=0.5)
    return critic


def test_critic_values_are_read_at_the_state_before_each_completion_token():
    policy = tiny()
    roll = rollout(policy, PROMPTS)
    ids, valid = left_pad(PROMPTS, PAD, "cpu")
    critic = critic_with_random_head(policy)
    values = grpo.completion_values(critic, ids, valid, roll.ids, roll.mask)  # (N, T)
    assert values.shape == roll.ids.shape and values.requires_grad and (values[~roll.mask] == 0).all()
    for i, prompt in enumerate(PROMPTS):
        completion = roll.ids[i].tolist()
        for t in range(int(roll.mask[i].sum())):  # V(s_t), s_t = prompt + o_<t, alone and unpadded
            state = torch.tensor([prompt + completion[:t]])
            assert values[i, t].item() == pytest.approx(critic(state)[0, -1].item(), abs=1e-12)


def test_critic_values_do_not_depend_on_padding_or_on_the_tokens_after_eos():
    policy = tiny()
    roll = rollout(policy, PROMPTS)
    ids, valid = left_pad(PROMPTS, PAD, "cpu")
    critic = critic_with_random_head(policy)
    batch = grpo.completion_values(critic, ids, valid, roll.ids, roll.mask)
    n = len(PROMPTS)
    ids2 = torch.cat([torch.full((n, 3), PAD), ids], 1)  # 3 more left pads
    valid2 = torch.cat([torch.zeros(n, 3, dtype=torch.bool), valid], 1)
    mask2 = torch.cat([roll.mask, torch.zeros(n, 2, dtype=torch.bool)], 1)  # 2 more right pads, junk under them
    comp2 = torch.where(mask2, torch.cat([roll.ids, torch.full((n, 2), PAD)], 1), 17)
    padded = grpo.completion_values(critic, ids2, valid2, comp2, mask2)
    assert torch.allclose(padded[:, :-2], batch, atol=1e-12, rtol=0) and (padded[:, -2:] == 0).all()


def test_the_critic_starts_from_the_policys_weights_with_a_zero_head_and_shares_nothing_with_it():
    policy = tiny()
    critic = Critic.from_policy(policy)
    policy_state = policy.state_dict()
    assert all(torch.equal(v, policy_state[k]) for k, v in critic.trunk.state_dict().items())
    assert critic.value_head.weight.dtype == F64 and critic.num_params() == policy.num_params() + 32 + 1
    x = torch.tensor([[5, 6, 7, 8]])
    assert torch.equal(critic.trunk.hidden(x), policy.hidden(x))  # the SFT trunk's final hidden states
    assert (critic(x) == 0).all()  # a zero value head: V = 0 in every state at the start
    with torch.no_grad():
        policy.tok_emb.weight.add_(1.0)
    assert not torch.equal(critic.trunk.tok_emb.weight, policy.tok_emb.weight)  # a copy, not shared


def test_a_saved_critic_loads_with_the_same_values_and_is_not_mistaken_for_a_policy(tmp_path):
    critic = critic_with_random_head(tiny())
    save_checkpoint(str(tmp_path), critic, None, {"stage": "ppo_critic"})
    loaded, meta = load_critic(str(tmp_path))
    x = torch.tensor([[5, 6, 7, 8]])
    assert meta["stage"] == "ppo_critic" and torch.allclose(loaded(x).double(), critic(x), atol=1e-6)
    with pytest.raises(ValueError, match="value_head"):  # a critic is no policy checkpoint
        load_checkpoint(str(tmp_path))
