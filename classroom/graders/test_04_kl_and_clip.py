"""Grader of assignment 4, the ratio, the k3 estimator and the clipped surrogate (DeepSeekMath Eqs. 1, 3, 4)."""

import math

import pytest
import torch

import grpo

T = lambda values: torch.tensor(values, dtype=torch.float64)


@pytest.mark.points(1)
def test_the_ratio_from_log_probs():
    """rho = pi_theta / pi_old = exp(log pi_theta - log pi_old)"""
    assert torch.allclose(grpo.policy_ratio(T([math.log(0.5), 0.0]), T([math.log(0.25), 0.0])), T([2.0, 1.0]))


@pytest.mark.points(2)
def test_k3_by_hand():
    """k3 = r - log r - 1 with r = pi_ref / pi_theta (pi 0.5, pi_ref 0.25: 0.193147)"""
    k3 = grpo.kl_k3(T([math.log(0.5)]), T([math.log(0.25)]))
    assert k3.item() == pytest.approx(0.5 - math.log(0.5) - 1, abs=1e-12)


@pytest.mark.points(1)
def test_k3_is_zero_where_the_policies_agree_and_positive_elsewhere():
    """k3 = 0 where pi_theta = pi_ref, > 0 elsewhere, on both sides"""
    k3 = grpo.kl_k3(T([-1.0, -1.0, -1.0]), T([-1.0, -3.0, 0.5]))
    assert k3[0].item() == 0.0 and (k3[1:] > 0).all()


@pytest.mark.points(1)
def test_k3_stays_precise_when_the_policies_nearly_agree():
    """k3 keeps its precision when pi_ref / pi_theta is within 1e-8 of 1 (k3 ~ x^2 / 2)"""
    x = 1e-8
    k3 = grpo.kl_k3(T([0.0]), T([x])).item()
    assert k3 == pytest.approx(x * x / 2, rel=1e-6)


@pytest.mark.points(2)
def test_the_clipped_surrogate_for_a_positive_advantage():
    """A > 0: min(rho A, clip(rho) A) stops at 1 + eps"""
    out = grpo.clipped_surrogate(T([0.5, 1.0, 1.5]), T([1.0, 1.0, 1.0]), 0.2)
    assert torch.allclose(out, T([0.5, 1.0, 1.2]))


@pytest.mark.points(2)
def test_the_clipped_surrogate_for_a_negative_advantage():
    """A < 0: the min takes the clipped value below 1 - eps"""
    out = grpo.clipped_surrogate(T([0.5, 1.0, 1.5]), T([-1.0, -1.0, -1.0]), 0.2)
    assert torch.allclose(out, T([-0.8, -1.0, -1.5]))


@pytest.mark.points(1)
def test_clip_higher_uses_eps_low_below_and_eps_high_above():
    """eps_low below 1, eps_high above (DAPO clip-higher: 0.2 and 0.28)"""
    out = grpo.clipped_surrogate(T([0.5, 1.5]), T([-1.0, 1.0]), 0.2, 0.28)
    assert torch.allclose(out, T([-0.8, 1.28]))


@pytest.mark.points(1)
def test_eps_high_defaults_to_eps_low():
    """without eps_high the clip is symmetric"""
    assert grpo.clipped_surrogate(T([1.5]), T([1.0]), 0.3).item() == pytest.approx(1.3)
