"""Grader of assignment 5, the loss aggregations: GRPO's, DAPO's token-mean and Dr. GRPO's constant."""

import pytest
import torch

import grpo

X = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 100.0, 100.0, 100.0]], dtype=torch.float64)  # 100: off the mask
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)


@pytest.mark.points(2)
def test_seq_mean_averages_each_completion_then_the_completions():
    """seq_mean (GRPO Eq. 3): mean of the rows' token means, (2 + 4) / 2"""
    assert grpo.aggregate(X, MASK, "seq_mean").item() == pytest.approx(3.0)


@pytest.mark.points(2)
def test_token_mean_averages_every_token_of_the_batch():
    """token_mean (DAPO Eq. 12): (1 + 2 + 3 + 4) / 4"""
    assert grpo.aggregate(X, MASK, "token_mean").item() == pytest.approx(2.5)


@pytest.mark.points(2)
def test_constant_divides_by_the_rows_and_the_generation_budget():
    """constant (Dr. GRPO): the sum over N rows x L_max, 10 / (2 x 8)"""
    assert grpo.aggregate(X, MASK, "constant", max_len=8).item() == pytest.approx(10 / 16)


@pytest.mark.points(1)
def test_a_row_without_tokens_counts_as_a_row_only_for_the_constant():
    """an all-masked row: skipped by seq_mean, no tokens for token_mean, one of N rows for constant"""
    x, mask = torch.cat([X, torch.ones(1, 4, dtype=X.dtype)]), torch.cat([MASK, torch.zeros(1, 4, dtype=torch.bool)])
    assert grpo.aggregate(x, mask, "seq_mean").item() == pytest.approx(3.0)
    assert grpo.aggregate(x, mask, "token_mean").item() == pytest.approx(2.5)
    assert grpo.aggregate(x, mask, "constant", max_len=8).item() == pytest.approx(10 / 24)


@pytest.mark.points(2)
def test_each_aggregation_weighs_a_token_by_its_completions_length_as_the_paper_writes():
    """the gradient per token: 1/(G |o_i|) for seq_mean (length bias), 1/sum|o_i| for token_mean"""
    x = X.clone().requires_grad_(True)
    (g_seq,) = torch.autograd.grad(grpo.aggregate(x, MASK, "seq_mean"), x)
    (g_tok,) = torch.autograd.grad(grpo.aggregate(x, MASK, "token_mean"), x)
    assert g_seq[0, 0].item() == pytest.approx(1 / 6) and g_seq[1, 0].item() == pytest.approx(1 / 2)
    assert torch.allclose(g_tok[MASK], torch.full((4,), 0.25, dtype=X.dtype)) and (g_seq[~MASK] == 0).all()
