"""Grader of assignment 8, evaluation: the unbiased pass@k (Chen et al. 2021) and majority voting (cons@k)."""

import math
from fractions import Fraction

import pytest

from grpo import majority_vote, pass_at_k


@pytest.mark.points(2)
def test_pass_at_k_by_hand():
    """1 - C(n-c, k) / C(n, k): (5, 2, 1) 0.4, (4, 1, 2) 0.5"""
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4) and pass_at_k(4, 1, 2) == pytest.approx(0.5)


@pytest.mark.points(1)
def test_pass_at_k_at_the_edges():
    """no correct sample: 0; fewer wrong samples than k: 1"""
    assert pass_at_k(10, 0, 1) == 0.0 and pass_at_k(3, 3, 2) == 1.0 and pass_at_k(5, 4, 2) == 1.0


@pytest.mark.points(1)
def test_pass_at_k_with_large_n_needs_no_huge_binomials():
    """n = 200, c = 100, k = 50: exact to 1e-12"""
    expected = 1 - Fraction(math.comb(100, 50), math.comb(200, 50))
    assert pass_at_k(200, 100, 50) == pytest.approx(float(expected), abs=1e-12)


@pytest.mark.points(2)
def test_the_majority_vote():
    """the most common answer; a tie goes to the one seen first; None never wins"""
    assert majority_vote([3, 5, 3, None]) == 3 and majority_vote([5, 3]) == 5
    assert majority_vote([None, None, 7]) == 7 and majority_vote([None, None]) is None and majority_vote([]) is None
