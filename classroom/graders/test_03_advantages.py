"""Grader of assignment 3, group-relative advantages (grpo.group_advantages; DeepSeekMath §4.1.2)."""

import pytest
import torch

import grpo

T = lambda rows: torch.tensor(rows, dtype=torch.float64)


@pytest.mark.points(3)
def test_each_group_is_centred_and_divided_by_its_population_std():
    """each group centred, divided by its population std; groups independent"""
    A = grpo.group_advantages(T([[1, 0, 0, 1], [2, 0, 2, 0]]), eps=0.0)  # mean 0.5 / 1, std 0.5 / 1
    assert torch.allclose(A, T([[1, -1, -1, 1], [1, -1, 1, -1]]), atol=1e-12)


@pytest.mark.points(2)
def test_a_group_of_equal_rewards_gets_exactly_zero_even_with_eps_zero():
    """a group of equal rewards gets exactly 0 (no NaN), even with eps = 0"""
    A = grpo.group_advantages(T([[3, 3, 3], [1, 0, 1]]), eps=0.0)
    assert A[0].tolist() == [0.0, 0.0, 0.0] and not torch.isnan(A).any()


@pytest.mark.points(1)
def test_eps_is_added_to_the_std():
    """eps is added to the std: (r - mean) / (std + eps)"""
    assert torch.allclose(grpo.group_advantages(T([[1, 0]]), eps=0.5), T([[0.5, -0.5]]))


@pytest.mark.points(1)
def test_ddof_1_is_the_sample_std():
    """ddof = 1: the sample std, sqrt(sum (r - mean)^2 / (G - 1))"""
    A = grpo.group_advantages(T([[1, 0, 0, 1]]), ddof=1, eps=0.0)  # std sqrt(1/3): 0.5 / 0.57735 = 0.866025
    assert torch.allclose(A, T([[1, -1, -1, 1]]) * 0.8660254037844386, atol=1e-9)


@pytest.mark.points(1)
def test_scale_none_only_centres_as_dr_grpo():
    """scale = 'none' (Dr. GRPO): centred, not divided"""
    assert torch.allclose(grpo.group_advantages(T([[2, 0, 1]]), scale="none"), T([[1, -1, 0]]))


@pytest.mark.points(2)
def test_scale_batch_uses_the_group_mean_and_the_std_of_the_whole_batch():
    """scale = 'batch': each group's mean, one std over every centred reward of the batch"""
    A = grpo.group_advantages(T([[1, 0], [4, 2]]), scale="batch", eps=0.0)  # centred +-0.5, +-1: std sqrt(0.625)
    assert torch.allclose(A, T([[0.5, -0.5], [1, -1]]) / 0.625 ** 0.5, atol=1e-9)


@pytest.mark.points(1)
def test_the_shape_is_kept_and_the_input_left_unchanged():
    """(B, G) in, (B, G) out; the rewards tensor is not modified"""
    r = torch.rand(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    before = r.clone()
    assert grpo.group_advantages(r).shape == (3, 5) and torch.equal(r, before)
