"""Inference-time scaling (inference.py): the selectors that never see the gold answer, and accuracy against N
from one sampling pass, on hand-made samples whose answers are worked out here."""

import pytest

import inference

# Three questions, three samples each: (parsed answer, right?, a verifier's score)
Q1 = [(5, True, 0.9), (4, False, 0.1), (5, True, 0.2)]  # the majority is right, and the top score
Q2 = [(7, False, 0.8), (8, True, 0.3), (7, False, 0.1)]  # the majority is wrong, and the top score
Q3 = [(2, False, 0.1), (3, True, 0.9), (2, False, 0.2)]  # the majority is wrong, the top score right
SAMPLES = [Q1, Q2, Q3]


def test_the_weighted_vote_sums_weights_per_answer_ties_to_the_first_and_none_abstains():
    assert inference.weighted_vote([3, 5, 5, 3], [0.9, 0.2, 0.3, 0.1]) == 3  # 1.0 against 0.5
    assert inference.weighted_vote([3, 5, 5, 3], [0.1, 0.2, 0.3, 0.1]) == 5  # 0.2 against 0.5
    assert inference.weighted_vote([3, 5], [1.0, 1.0]) == 3 and inference.weighted_vote([5, 3], [1, 1]) == 5
    assert inference.weighted_vote([None, 4, None], [5.0, 0.1, 5.0]) == 4 and inference.weighted_vote([None], [1]) is None
    with pytest.raises(ValueError, match="one weight per answer, got 2 answers and 1 weights"):
        inference.weighted_vote([3, 5], [1.0])


def test_best_of_n_takes_the_top_score_ties_to_the_first_even_without_an_answer():
    assert inference.best_of_n([3, 5, 4], [0.1, 0.7, 0.2]) == 5
    assert inference.best_of_n([3, 5], [0.5, 0.5]) == 3
    assert inference.best_of_n([None, 5], [0.9, 0.1]) is None  # the verifier trusted a completion with no answer
    with pytest.raises(ValueError, match="one score per answer"):
        inference.best_of_n([3, 5], [0.5])


def test_the_process_score_is_the_share_of_calculator_steps_the_rule_checker_accepts():
    assert inference.process_score("2+3 = <<2+3=5>>5, 5*4 = <<5*4=21>>21") == 0.5
    assert inference.process_score("12*3 = <<12*3=36>>36\n36+4 = <<36+4=40>>40") == 1.0
    assert inference.process_score("the answer is 20") == 0.0


def test_with_all_n_samples_each_selector_picks_as_worked_out_by_hand():
    # N = 3, every sample: vote 5 / 7 / 2 (right, wrong, wrong); best of n 5 / 7 / 3; weighted 5 (1.1 vs 0.1),
    # 7 (0.9 vs 0.3), 3 (0.9 vs 0.3); pass@3: each question has a right sample
    assert inference.accuracy_at_n(SAMPLES, [3], "vote", 5) == {3: pytest.approx(1 / 3)}
    assert inference.accuracy_at_n(SAMPLES, [3], "best_of_n", 5) == {3: pytest.approx(2 / 3)}
    assert inference.accuracy_at_n(SAMPLES, [3], "weighted_vote", 5) == {3: pytest.approx(2 / 3)}
    assert inference.accuracy_at_n(SAMPLES, [3], "pass", 1) == {3: 1.0}


def test_smaller_n_comes_from_random_subsets_whose_mean_is_the_exact_expectation():
    # N = 1: a pick is one sample, right with the question's share of right samples: (2/3 + 1/3 + 1/3) / 3 = 4/9
    # N = 2, best of n, over the three pairs of each question: Q1 1, Q2 1/3 (only (8, 7)), Q3 2/3 -> 2/3
    # pass@2 = 1 - C(n-c, 2) / C(n, 2): Q1 1, Q2 and Q3 1 - 1/3 -> 7/9, exactly
    curve = {s: inference.accuracy_at_n(SAMPLES, [1, 2], s, 3000) for s in ("vote", "best_of_n")}
    assert curve["vote"][1] == pytest.approx(4 / 9, abs=0.02) and curve["best_of_n"][1] == pytest.approx(4 / 9, abs=0.02)
    assert curve["best_of_n"][2] == pytest.approx(2 / 3, abs=0.02)
    assert inference.accuracy_at_n(SAMPLES, [1, 2], "pass", 1) == {1: pytest.approx(4 / 9), 2: pytest.approx(7 / 9)}
    # seeded: the same subsets again, and the same subsets for every selector
    assert inference.accuracy_at_n(SAMPLES, [2], "vote", 50) == inference.accuracy_at_n(SAMPLES, [2], "vote", 50)


def test_accuracy_at_n_refuses_more_samples_than_drawn_and_unknown_selectors():
    with pytest.raises(ValueError, match="N=4: every question needs at least N samples"):
        inference.accuracy_at_n(SAMPLES, [4], "vote", 1)
    with pytest.raises(ValueError, match="unknown selector 'oracle'; allowed: pass, vote, weighted_vote, best_of_n"):
        inference.accuracy_at_n(SAMPLES, [1], "oracle", 1)
