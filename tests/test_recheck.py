"""The "aha" question made countable: worked solutions that catch a slip (tasks.with_recheck, --recheck_frac), and
what each RL step logs about them (rollouts.rollout_stats): the share of completions that re-check, their
accuracy against the others', and the mean length by difficulty."""

import dataclasses
import random
import re
from dataclasses import asdict

import pytest
import torch

import config
import sample
import rewards
import rollouts
import tasks
import train

P2 = tasks.Problem("What is 15+3*40?", "3*40 = <<3*40=120>>120\n15+120 = <<15+120=135>>135", "135")
WORD = tasks.Problem("Ann buys 4 pens at 3 dollars each and a 7 dollar book. How much does she pay?",
                     "The pens cost 4*3 = <<4*3=12>>12 dollars.\nShe pays 12+7 = <<12+7=19>>19 dollars.", "19")


def test_a_recheck_writes_one_step_wrong_by_one_digit_then_the_words_then_the_step_right():
    for p in (P2, WORD):
        for seed in range(40):
            q = tasks.with_recheck(p, random.Random(seed))
            assert (q.question, q.answer) == (p.question, p.answer) and tasks.count_rechecks(q.reasoning) == 1
            slip = re.search(r"(\S+) = <<\1=(-?\d+)>>\2 " + re.escape(tasks.RECHECK) + " ", q.reasoning)
            assert q.reasoning.replace(slip.group(0), "") == p.reasoning  # the slip, inserted; nothing else changed
            # the step written again right after it, its result one digit off by one in the slip
            expr, wrong = slip.group(1), int(slip.group(2))
            right = int(re.match(re.escape(f"{expr} = <<{expr}=") + r"(-?\d+)>>", q.reasoning[slip.end():]).group(1))
            assert abs(wrong - right) in (1, 10, 100, 1000) and len(str(abs(wrong - right))) <= len(str(right))
            # the rule checker of process supervision sees exactly that one step wrong
            assert [s.reward for s in rewards.step_rewards(q.reasoning)].count(0.0) == 1
            assert tasks.difficulty(q) == tasks.difficulty(p) == 2
    plain = tasks.Problem("Tom has 5 apples. How many?", "He has 5 apples.", "5")  # no calculator step: unchanged
    assert tasks.with_recheck(plain, random.Random(0)) is plain


def test_rechecks_go_to_the_share_asked_of_the_training_split_only():
    cfg = config.parse_config(["--n_train", "3000", "--n_test", "200", "--recheck_frac", "0.1"])
    train_split, test = train.load_problems(cfg)
    plain_train, plain_test = train.load_problems(config.parse_config(["--n_train", "3000", "--n_test", "200"]))
    assert test == plain_test and [p.question for p in train_split] == [p.question for p in plain_train]
    changed = sum(tasks.count_rechecks(p.reasoning) for p in train_split)
    assert 300 - 50 <= changed <= 300 + 50  # 10% of 3,000, within 3 standard deviations
    assert train.load_problems(cfg)[0] == train_split  # seeded
    # a checkpoint's splits, rebuilt from its config (sample.py, distill.py): the same rechecks, on a prefix too
    assert sample.rebuild_splits(asdict(cfg), 500) == (train_split[:500], test)
    with pytest.raises(ValueError, match="recheck_frac=2: a share"):
        tasks.with_rechecks(plain_train, 2, seed=0)
    with pytest.raises(ValueError, match=r"--recheck_frac must be in \[0, 1\], got -0.5"):
        config.check_config(config.TrainConfig(recheck_frac=-0.5))
    with pytest.raises(ValueError, match="--recheck_frac 0.1 has no effect here: it acts only with a run that "
                                         "trains its own stage 1"):
        config.check_config(config.TrainConfig(recheck_frac=0.1, init_from="."))


def test_each_rl_step_logs_who_rechecks_how_often_they_are_right_and_length_by_difficulty():
    one = tasks.Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5")  # 1 step; P2: 2 steps
    slip = " <think> 2+3 = <<2+3=6>>6 wait, re-check: 2+3 = <<2+3=5>>5 </think> <answer> 5 </answer>"
    texts = [slip, slip, " <think> 3*40 = <<3*40=120>>120 </think> <answer> 1 </answer>", " 135"]
    lengths = [20, 22, 10, 4]
    mask = torch.tensor([[t < n for t in range(22)] for n in lengths])
    roll = rollouts.Rollouts(problems=[one, P2], prompts=[[1]] * 4, ids=torch.zeros(4, 22, dtype=torch.long),
                             mask=mask, truncated=torch.zeros(4, dtype=torch.bool), texts=texts,
                             rewards=torch.tensor([[2.0, 2.0], [1.0, 1.0]]), correct=torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    stats = rollouts.rollout_stats(roll, roll, 0)
    assert stats["recheck_frac"] == 0.5  # the two slips caught, both right; of the other two, one right
    assert (stats["accuracy_recheck"], stats["accuracy_no_recheck"]) == (1.0, 0.5)
    assert stats["length_by_steps"] == {"1": 21.0, "2": 7.0}  # the question's steps, not the completion's
    assert stats["format"] == 0.75
    plain = dataclasses.replace(roll, texts=[" 5"] * 4)
    none = rollouts.rollout_stats(plain, plain, 0)
    assert (none["recheck_frac"], none["accuracy_recheck"], none["accuracy_no_recheck"]) == (0.0, None, 0.75)
