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


# ---- a verifier that prefers a wrong answer, all-wrong groups, abstentions -----------------------------------
def test_a_verifier_that_prefers_a_wrong_answer_misleads_best_of_n_but_not_a_confident_majority():
    # two right samples (5) the verifier dislikes, one wrong (4) it loves
    q = [(5, True, 0.2), (4, False, 0.95), (5, True, 0.3)]
    assert inference.accuracy_at_n([q], [3], "best_of_n", 1) == {3: 0.0}
    assert inference.accuracy_at_n([q], [3], "vote", 1) == {3: 1.0}
    assert inference.accuracy_at_n([q], [3], "weighted_vote", 1) == {3: 0.0}  # 0.95 > 0.2 + 0.3
    assert inference.accuracy_at_n([[(5, True, 0.5), (4, False, 0.95), (5, True, 0.5)]], [3], "weighted_vote", 1) \
        == {3: 1.0}  # 1.0 > 0.95


def test_an_all_wrong_group_scores_zero_for_every_selector_and_abstentions_never_win():
    wrong = [(4, False, 0.9), (6, False, 0.1), (4, False, 0.5)]
    for selector in ("pass", "vote", "weighted_vote", "best_of_n"):
        assert inference.accuracy_at_n([wrong], [1, 3], selector, 20) == {1: 0.0, 3: 0.0}
    abstain = [(None, False, 0.9), (None, False, 0.8), (7, True, 0.1)]  # two completions without an answer
    assert inference.accuracy_at_n([abstain], [3], "vote", 1) == {3: 1.0}
    assert inference.accuracy_at_n([abstain], [3], "weighted_vote", 1) == {3: 1.0}
    assert inference.accuracy_at_n([abstain], [3], "best_of_n", 1) == {3: 0.0}  # it trusted a non-answer
    assert inference.accuracy_at_n([[(None, False, 1.0)] * 2], [2], "vote", 1) == {2: 0.0}


def test_sequence_flops_on_numbers_computed_by_hand():
    # sum_{t=1}^{3} (2*10 + 2*2*t*4) = 60 + 16 * (1 + 2 + 3) = 156
    assert inference.sequence_flops(10, 2, 4, 3) == 156
    assert inference.sequence_flops(10, 2, 4, 1) == 2 * 10 + 2 * 2 * 4
    assert inference.powers_of_two(64) == [1, 2, 4, 8, 16, 32, 64] and inference.powers_of_two(6) == [1, 2, 4, 6]


def test_the_curve_reads_each_pick_its_own_score_and_skips_the_verifier_without_one():
    cands = [{"answers": [a for a, _, _ in q], "correct": [c for _, c, _ in q],
              "scores": {"logprob": [s for *_, s in q], "process": [1 - s for *_, s in q]}} for q in SAMPLES]
    table = inference.curve(cands, [3], 1)
    assert list(table) == ["pass@N", "vote", "process", "logprob"]  # no verifier scores: no verifier columns
    # logprob reads the scores as given (best of n: 5 / 7 / 3 -> 2/3); process reads 1 - s, so the lowest s wins:
    # 4 at 0.1 / 7 at 0.1 / 2 at 0.1, all wrong -> 0
    assert table["logprob"][3] == pytest.approx(2 / 3) and table["process"][3] == 0.0
    assert table["vote"][3] == pytest.approx(1 / 3) and table["pass@N"][3] == 1.0
    for c, q in zip(cands, SAMPLES):
        c["scores"]["verifier"] = [s for *_, s in q]
    table = inference.curve(cands, [3], 1)
    assert table["verifier"][3] == pytest.approx(2 / 3) and table["weighted"][3] == pytest.approx(2 / 3)


def test_choose_names_the_answer_and_the_samples_that_won_it():
    cand = {"answers": [5, 4, 5, None], "scores": {"verifier": [0.2, 0.9, 0.3, 0.1], "logprob": [-1, -2, -3, -0.5]}}
    assert inference.choose(cand, "vote") == (5, [0, 2])  # the majority, and every sample that gave it
    assert inference.choose(cand, "verifier") == (4, [1])  # best of n: the top-scoring sample alone
    assert inference.choose(cand, "weighted") == (4, [1])  # 0.9 against 0.2 + 0.3
    assert inference.choose(cand, "logprob") == (None, [3])  # the most likely sample gave no answer
    with pytest.raises(ValueError, match="pass@N sees the gold answer"):
        inference.choose(cand, "pass@N")


# ---- sampling candidates and thinking budgets, with a scripted policy whose completions are known ---------------
# (tok: the a+b tokenizer of tests/conftest.py)
def test_sample_candidates_scores_each_known_sample(tok):
    import math
    import torch
    import tasks
    from model import Critic
    from scripted import scripted_policy
    p = tasks.Problem("What is 3+4?", "3+4 = <<3+4=7>>7", "7")
    right = " <think> 3+4 = <<3+4=7>>7 </think> <answer> 7 </answer>"
    slip = " <think> 3+4 = <<3+4=8>>8 </think> <answer> 8 </answer>"
    empty = " <think> </think> <answer> </answer>"
    policy = scripted_policy(tok, {p.question: [right, slip, empty]})
    [c] = inference.sample_candidates(policy, tok, [p], 3, "compact", 30, 1.0, 1.0, torch.Generator().manual_seed(0))
    assert c["texts"] == [right, slip, empty]
    assert c["answers"][:2] == [7, 8] and c["answers"][2] is None and c["correct"] == [True, False, False]
    assert c["scores"]["process"] == [1.0, 0.0, 0.0] and "verifier" not in c["scores"]
    assert all(abs(x) < 1e-6 for x in c["scores"]["logprob"])  # the scripted tokens have log pi of about 0
    n_prompt = len(tasks.encode(tok, tasks.format_prompt(p.question)))
    assert c["lengths"][0] == len(tasks.encode(tok, right)) + 1  # + EOS
    assert c["flops"][0] == inference.sequence_flops(policy.num_params(), 1, 8, n_prompt + c["lengths"][0])
    assert c["prompt_length"] == n_prompt
    assert inference.sample_candidates(policy, tok, [tasks.Problem(p.question, "", "")], 3, "compact", 30, 1.0, 1.0,
                                       torch.Generator().manual_seed(0))[0]["correct"] == [None] * 3  # no gold

    # a margin of 2: every scripted token has log pi = 2 - log(e^2 + V - 1), so each sample's MEAN is that, whatever
    # its length (greedy: row o still follows completion o); a verifier whose logit is log 3 everywhere: P = 3/4
    policy = scripted_policy(tok, {p.question: [right, empty]}, margin=2.0)
    scorer = Critic(policy.cfg)
    torch.nn.init.constant_(scorer.value_head.bias, math.log(3))
    [c] = inference.sample_candidates(policy, tok, [p], 2, "compact", 30, 0.0, 1.0, None, scorer)
    per_token = 2 - math.log(math.exp(2) + tok.get_vocab_size() - 1)
    assert c["texts"] == [right, empty] and c["lengths"][0] != c["lengths"][1]
    assert c["scores"]["logprob"] == pytest.approx([per_token] * 2, abs=1e-5)
    assert c["scores"]["verifier"] == pytest.approx([0.75, 0.75], abs=1e-6)


def test_a_thinking_budget_cuts_a_long_think_closes_it_and_lets_the_model_answer(tok):
    import tasks
    from scripted import ScriptedPolicy
    q = "What is 3+4?"
    prompt = tasks.encode(tok, tasks.format_prompt(q))
    # the thought starts with " <" and "<" as two tokens, which re-encoding would merge into " <<": the cut must
    # continue from the token ids the model wrote, not from their text encoded again
    odd = tasks.encode(tok, " <think>") + tasks.encode(tok, " <") + tasks.encode(tok, "<")
    assert tasks.encode(tok, tasks.decode(tok, odd)) != odd
    long_think = odd + tasks.encode(tok, "3+4=7>>7 3+4 = <<3+4=7>>7 </think> <answer> 7 </answer>")
    short = tasks.encode(tok, " <think> </think> <answer> 7 </answer>")
    answer = tasks.encode(tok, " <answer> 6 </answer>")
    budget = 4
    forced_prompt = tuple(prompt + long_think[:budget] + tasks.encode(tok, inference.CLOSE))
    policy = ScriptedPolicy(tok.get_vocab_size(), {tuple(prompt): [long_think + [tasks.EOS_ID]],
                                                   forced_prompt: [answer + [tasks.EOS_ID]]})
    texts, cut = inference.complete_with_budget(policy, tok, [q], "compact", budget, 16)
    assert cut == [True]
    assert texts == [tasks.decode(tok, long_think[:budget]) + inference.CLOSE + " <answer> 6 </answer>"]
    assert inference.think_tokens(tok, texts[0]) == len(tasks.encode(tok, tasks.decode(tok, long_think[:budget]) + " "))
    # a budget the thinking fits in: the completion as the model writes it, not cut
    texts, cut = inference.complete_with_budget(policy, tok, [q], "compact", len(long_think) + 1, 8)
    assert cut == [False] and texts == [tasks.decode(tok, long_think)]
    # a completion that closed its think within the budget but runs on is continued, with nothing added
    closed_at = len(short) - 3  # " <think> </think>" and part of the answer
    policy = ScriptedPolicy(tok.get_vocab_size(), {tuple(prompt): [short + [tasks.EOS_ID]],
                                                   tuple(prompt + short[:closed_at]): [short[closed_at:] + [tasks.EOS_ID]]})
    texts, cut = inference.complete_with_budget(policy, tok, [q], "compact", closed_at, 8)
    assert cut == [False] and texts == [tasks.decode(tok, short)]
    with pytest.raises(ValueError, match="need .* positions; the checkpoint has 256"):
        inference.complete_with_budget(policy, tok, [q], "compact", 250, 16)


def test_from_a_checkpoint_the_verifier_the_curve_the_budget_and_best_of_n_commands_run(tmp_path, capsys):
    import json
    import os
    import sample
    import train
    import verifier
    train.main(["--preset", "smoke", "--n_train", "300", "--sft_steps", "4", "--eval_every", "4", "--eval_n", "2",
                "--threads", "1", "--out_dir", str(tmp_path / "run"), "--rl", "none"])
    sft, ver = str(tmp_path / "run" / "sft"), str(tmp_path / "ver")
    stats = verifier.main([sft, "--out_dir", ver, "--questions", "6", "--samples", "2", "--test_questions", "2",
                           "--steps", "2", "--batch_size", "4", "--threads", "1"])
    assert set(stats) >= {"loss", "accuracy", "share_right", "ranking"} and stats["questions"] == 6
    assert os.path.isfile(os.path.join(ver, "model.safetensors"))
    with pytest.raises(SystemExit):  # every question held out
        verifier.main([sft, "--out_dir", str(tmp_path / "v2"), "--questions", "6", "--test_questions", "6"])

    out = str(tmp_path / "curve.json")
    results = inference.main(["curve", sft, str(tmp_path / "run"), "--verifier", ver, ver, "--n", "4",
                              "--questions", "3", "--resamples", "2", "--out", out])
    assert json.load(open(out)) == json.loads(json.dumps(results))  # the file holds what was printed
    [(_, r)] = results.items()  # the run directory is its sft/ checkpoint: one entry
    assert r["questions"] == 3 and r["n"] == 4 and r["flops_per_sample"] > 0
    # the verifier reads the same prompt + completion with a value head in place of the tied LM head: a little more
    assert r["flops_per_sample"] < r["verifier_flops_per_sample"] < 1.01 * r["flops_per_sample"]
    assert set(r["curve"]) == set(inference.PICKS) and all(set(c) == {"1", "2", "4"} for c in r["curve"].values())
    with pytest.raises(SystemExit):
        inference.main(["curve", sft, "--verifier", ver, ver])  # one verifier per checkpoint
    with pytest.raises(SystemExit):
        inference.main(["curve", sft, "--temperature", "0"])

    results = inference.main(["budget", sft, "--budgets", "2,8", "--questions", "3", "--answer_tokens", "4"])
    rows = results[sft]["budgets"]
    assert [b["budget"] for b in rows] == ["2", "8", "natural"] and rows[0]["think_tokens"] <= rows[1]["think_tokens"]
    for bad in ("0,8", "8,sixteen"):
        with pytest.raises(SystemExit):
            inference.main(["budget", sft, "--budgets", bad])
    assert "--budgets: whole numbers of tokens separated by commas" in capsys.readouterr().err

    capsys.readouterr()
    answer, winners = sample.main([sft, "--question", "What is 2+3?", "--temperature", "1.0", "--best_of", "3",
                                   "--select", "verifier", "--verifier", ver])
    printed = capsys.readouterr().out
    assert len(winners) == 1 and printed.count(" sample ") == 3 and "chosen by verifier" in printed
    for bad in (["--best_of", "3"], ["--best_of", "3", "--temperature", "1", "--select", "weighted"]):
        with pytest.raises(SystemExit):
            sample.main([sft, "--question", "What is 2+3?"] + bad)  # greedy N times; a verifier pick, no verifier
