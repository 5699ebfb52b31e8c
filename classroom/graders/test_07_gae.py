"""Grader of assignment 7, generalised advantage estimation for PPO's critic (GAE; DAPO Eqs. 2-3)."""

import pytest
import torch

import grpo

T = lambda rows: torch.tensor(rows, dtype=torch.float64)
ALL = torch.ones(1, 3, dtype=torch.bool)


@pytest.mark.points(2)
def test_gamma_lambda_1_gives_the_return_minus_the_value():
    """gamma = lambda = 1: A_t = (sum of the rewards from t on) - V(s_t); returns = A + V"""
    adv, ret = grpo.gae(T([[0, 0, 1]]), T([[0.5, 0.5, 0.5]]), ALL, 1.0, 1.0)
    assert torch.allclose(adv, T([[0.5, 0.5, 0.5]])) and torch.allclose(ret, T([[1.0, 1.0, 1.0]]))


@pytest.mark.points(2)
def test_gae_by_hand_with_discounting():
    """gamma 0.9, lambda 0.5: deltas 0.5, -0.05, -0.05 from the end; A = 0.02875, 0.175, 0.5"""
    adv, ret = grpo.gae(T([[0, 0, 1]]), T([[0.5, 0.5, 0.5]]), ALL, 0.9, 0.5)
    assert torch.allclose(adv, T([[0.02875, 0.175, 0.5]])) and torch.allclose(ret, T([[0.52875, 0.675, 1.0]]))


@pytest.mark.points(2)
def test_a_row_ends_at_its_last_real_token():
    """past a row's end nothing counts: V(s_{|o|+1}) = 0, rewards and values there are ignored, A and R are 0"""
    adv, ret = grpo.gae(T([[0, 1, 7]]), T([[0.5, 0.5, 9.0]]), T([[1, 1, 0]]).bool(), 1.0, 1.0)
    assert torch.allclose(adv, T([[0.5, 0.5, 0.0]])) and torch.allclose(ret, T([[1.0, 1.0, 0.0]]))


@pytest.mark.points(1)
def test_lambda_0_is_the_one_step_td_error():
    """lambda = 0: A_t = delta_t = r_t + gamma V(s_{t+1}) - V(s_t)"""
    adv, _ = grpo.gae(T([[0, 0, 1]]), T([[0.2, 0.4, 0.6]]), ALL, 1.0, 0.0)
    assert torch.allclose(adv, T([[0.2, 0.2, 0.4]]))  # 0 + 0.4 - 0.2, 0 + 0.6 - 0.4, 1 + 0 - 0.6


@pytest.mark.points(1)
def test_no_gradient_flows_into_the_critic_through_the_advantages():
    """the values are a baseline: neither A nor the returns carry their gradient"""
    values = T([[0.5, 0.5, 0.5]]).requires_grad_(True)
    adv, ret = grpo.gae(T([[0, 0, 1]]), values, ALL, 1.0, 1.0)
    assert not adv.requires_grad and not ret.requires_grad
