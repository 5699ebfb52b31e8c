"""Inference-time scaling: spend more samples at test time, then pick one answer without the gold answer.

Training Verifiers to Solve Math Word Problems (Cobbe et al. 2021, arXiv 2110.14168) samples many solutions and
lets a verifier pick; Self-Consistency (Wang et al. 2022, arXiv 2203.11171) takes the majority answer. DeepSeek-R1
reports both beside pass@1 (cons@64). Every selector here sees only the sampled completions and scores a model
gives them, never the gold answer; pass@N, which does see it, is the oracle they are measured against.

    weighted_vote      the answer with the largest total weight (all weights 1: grpo.majority_vote, cons@k's vote)
    best_of_n          the answer of the highest-scoring sample (a verifier's score, a process score, a log-prob)
    process_score      the share of a completion's calculator steps that the rule checker accepts (no gold answer)
    SELECTORS          the selectors by name, each (answers, scores) -> the chosen answer
    accuracy_at_n      accuracy against N from one sampling pass: every smaller N from random subsets of the n
                       samples (bootstrapped), pass@N exactly (grpo.pass_at_k)

>>> weighted_vote([3, 5, 5, 3], [0.9, 0.2, 0.3, 0.1])   # 3: 1.0 against 5: 0.5
3
>>> best_of_n([3, 5, 4], [0.1, 0.7, 0.2])
5
"""

from __future__ import annotations

import random

import grpo
import rewards


def weighted_vote(answers: list, weights: list[float]) -> object | None:
    """The answer whose samples' weights sum highest, ties going to the one seen first; None if no sample gave
    an answer (a None answer abstains). With every weight 1 this is the majority vote of cons@k; with a
    verifier's probabilities it is the verifier-weighted vote (Uesato et al. 2022, arXiv 2211.14275).

    [3, 5, 5, 3] with [0.9, 0.2, 0.3, 0.1] -> 3 (1.0 > 0.5);   [3, 5] with [1, 1] -> 3;   [None] -> None
    """
    if len(answers) != len(weights):
        raise ValueError(f"weighted_vote needs one weight per answer, got {len(answers)} answers and {len(weights)} "
                         "weights")
    totals: dict = {}
    for answer, weight in zip(answers, weights):
        if answer is not None:
            totals[answer] = totals.get(answer, 0.0) + weight  # dicts keep insertion order: ties to the first seen
    return max(totals, key=totals.get) if totals else None


def best_of_n(answers: list, scores: list[float]) -> object | None:
    """The answer of the highest-scoring sample, ties going to the first; its answer may be None (no answer), and
    then the pick is wrong, as a verifier that trusts a completion without an answer deserves.

    [3, 5, 4] with [0.1, 0.7, 0.2] -> 5;   [3, 5] with [0.5, 0.5] -> 3
    """
    if len(answers) != len(scores) or not answers:
        raise ValueError(f"best_of_n needs one score per answer and at least one, got {len(answers)} answers and "
                         f"{len(scores)} scores")
    return answers[max(range(len(scores)), key=scores.__getitem__)]


def process_score(completion: str) -> float:
    """The share of a completion's <<expr=value>> calculator steps whose arithmetic the rule checker accepts
    (rewards.step_rewards), 0.0 without any: a score of the working, computed without the gold answer.

    "2+3 = <<2+3=5>>5, 5*4 = <<5*4=21>>21" -> 0.5;   "the answer is 20" -> 0.0
    """
    steps = rewards.step_rewards(completion)
    return sum(s.reward for s in steps) / len(steps) if steps else 0.0


SELECTORS = {
    "vote": lambda answers, scores: grpo.majority_vote(answers),  # maj@N, the vote of cons@k
    "weighted_vote": weighted_vote,  # weights: the scores
    "best_of_n": best_of_n,
}


def accuracy_at_n(samples: list[list[tuple]], ns: list[int], selector: str, resamples: int,
                  seed: int = 0) -> dict[int, float]:
    """Accuracy against N for one selector, from one sampling pass of n samples per question.

    samples: per question, its n samples as (answer, correct, score) (answer: the parsed value or None; correct:
    whether it matches the gold answer, used only to score the pick). For each N, `resamples` random N-subsets of
    each question's samples (drawn from Random(f"{seed}-{N}"), the same subsets for every selector) are given to
    SELECTORS[selector]; the accuracy is the share of picks whose answer is a correct sample's. selector "pass"
    is the oracle pass@N, computed exactly by grpo.pass_at_k instead.

    Two questions, 3 samples each, all of them picked from (N = 3): the majority is right in the first only, the
    top score in both, and each has a right sample:
    >>> s = [[(5, True, 0.9), (4, False, 0.1), (5, True, 0.2)], [(2, False, 0.1), (3, True, 0.9), (2, False, 0.2)]]
    >>> accuracy_at_n(s, [3], "vote", 1), accuracy_at_n(s, [3], "best_of_n", 1), accuracy_at_n(s, [3], "pass", 1)
    ({3: 0.5}, {3: 1.0}, {3: 1.0})
    """
    if selector not in SELECTORS and selector != "pass":
        raise ValueError(f"unknown selector {selector!r}; allowed: pass, {', '.join(SELECTORS)}")
    out = {}
    for n in ns:
        if not all(1 <= n <= len(q) for q in samples):
            raise ValueError(f"N={n}: every question needs at least N samples (fewest: {min(map(len, samples))})")
        if selector == "pass":
            out[n] = sum(grpo.pass_at_k(len(q), sum(c for _, c, _ in q), n) for q in samples) / len(samples)
            continue
        pick, rng, hits = SELECTORS[selector], random.Random(f"{seed}-{n}"), 0
        for q in samples:
            right = {a for a, c, _ in q if c and a is not None}
            for _ in range(resamples):
                subset = rng.sample(q, n)
                hits += pick([a for a, _, _ in subset], [s for _, _, s in subset]) in right
        out[n] = hits / (len(samples) * resamples)
    return out
