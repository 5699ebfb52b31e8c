"""The rollout half of the loop (generate -> decode -> rewards -> evaluation), checked against HAND-WRITTEN values.

The policy here is tests/scripted.py's ScriptedPolicy: its completions are written by the test, so the expected
ids, masks, texts, rewards and metrics below are written down by hand (with their arithmetic in comments), never
recomputed from what the loop returned. A loop that decoded the wrong row, kept the EOS, scored a completion
against another question's answer or grouped samples wrongly fails here.

The tokenizer is byte-level BPE trained with vocab_size=262 = 6 special tokens + 256 bytes, so it has NO merges:
every byte of text is one token and each tag (<think>, </think>, <answer>, </answer>) is one token. Token counts
(completion lengths, hence the overlong penalty and truncation points) can therefore be counted by hand.
"""

import dataclasses
import inspect
import types
import json

import pytest
import torch

import rollouts
import checkpoint
import config
import grpo
import sample
import tasks
import train
from model import Completions, generate, left_pad
from scripted import NoEOS, ScriptedPolicy, scripted_policy

EOS, PAD = tasks.EOS_ID, tasks.PAD_ID  # 1, 0

Q0, Q1, Q2 = "What is 2+3?", "What is 4*6?", "What is 9-2?"
P0, P1, P2 = tasks.Problem(Q0, "2+3 = <<2+3=5>>5", "5"), tasks.Problem(Q1, "4*6 = <<4*6=24>>24", "24"), \
    tasks.Problem(Q2, "9-2 = <<9-2=7>>7", "7")

# The completions, and their length in tokens with the EOS (bytes outside tags + tags + 1):
RIGHT0 = " <think> 2+3 = <<2+3=5>>5 </think> <answer> 5 </answer>"
# " " 1, <think> 1, " 2+3 = <<2+3=5>>5 " 18, </think> 1, " " 1, <answer> 1, " 5 " 3, </answer> 1 = 27; + EOS = 28
WRONG0 = " <think> 2+3 = <<2+3=6>>6 </think> <answer> 6 </answer>"  # same shape as RIGHT0: 27 + EOS = 28
UNFORMATTED0 = " 2+3 = 5 #### 5"  # 15 bytes + EOS = 16; right answer (GSM8K marker), no tags
RIGHT1 = " <think> </think> <answer> 24 </answer>"
# " " <think> " " </think> " " <answer> = 6, " 24 " 4, </answer> 1 = 11; + EOS = 12
WRONG1 = " 4*6 = 25 #### 25"  # 17 bytes + EOS = 18; wrong answer, no tags
LONG1 = NoEOS(" <think> 4*6 = <<4*6=24>>24 4*6 = <<4*6=24>>24 </think>")  # 2 + 19 + 19 + 2 = 42 tokens, no EOS
# cut at 32 tokens: " " <think> (2) + " 4*6 = <<4*6=24>>24" (19) + 11 bytes " 4*6 = <<4*"
LONG1_AT_32 = " <think> 4*6 = <<4*6=24>>24 4*6 = <<4*"
# cut at 20 tokens: 2 + 18 bytes " 4*6 = <<4*6=24>>2"
LONG1_AT_20 = " <think> 4*6 = <<4*6=24>>2"


@pytest.fixture(scope="module")
def tok():
    t = tasks.train_tokenizer([tasks.format_prompt(Q0) + RIGHT0] * 4, vocab_size=262)
    assert len(json.loads(t.to_str())["model"]["merges"]) == 0  # the premise of every hand count below
    return t


def test_the_hand_counted_token_lengths_hold_for_the_byte_level_tokenizer(tok):
    """The premise of the hand-written lengths (not a claim about the loop)."""
    n = lambda text: len(tasks.encode(tok, text))
    assert [n(RIGHT0), n(WRONG0), n(UNFORMATTED0), n(RIGHT1), n(WRONG1), n(LONG1)] == [27, 27, 15, 11, 17, 42]
    assert tasks.decode(tok, tasks.encode(tok, LONG1)[:32]) == LONG1_AT_32
    assert tasks.decode(tok, tasks.encode(tok, LONG1)[:20]) == LONG1_AT_20


# ---------------------------------------------------------------------------------------------------------------
# The tool itself
# ---------------------------------------------------------------------------------------------------------------
def test_scripted_policy_full_forward_scores_its_script_near_zero_and_a_departure_near_minus_margin():
    m = ScriptedPolicy(12, {(5, 6, 7): [[2, 3, 4, EOS], [4, EOS]]})
    ids, valid = left_pad([[5, 6, 7], [5, 6, 7], [5, 6, 7]], PAD, "cpu")
    completions = torch.tensor([[2, 3, 4, EOS], [4, EOS, PAD, PAD], [2, 9, 4, EOS]])  # row 2 departs at token 1
    mask = completions != PAD
    logp = grpo.completion_logprobs(m, ids, valid, completions, mask)
    # the scripted token has logit 40, the other 11 have 0: log p = -log(1 + 11 e^-40) = 0 in fp32;
    # a departing token: log p = -40 - log(1 + 11 e^-40) = -40
    expected = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, -40.0, 0.0, 0.0]])
    assert torch.allclose(logp, expected, atol=1e-4)


def test_scripted_policy_has_real_parameters_that_take_gradients_and_an_optimizer_step():
    m = ScriptedPolicy(12, {(5, 6, 7): [[2, EOS]]})
    ids, valid = left_pad([[5, 6, 7]], PAD, "cpu")
    logp = grpo.completion_logprobs(m, ids, valid, torch.tensor([[2, EOS]]), torch.tensor([[True, True]]))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    (-logp.sum()).backward()
    opt.step()
    assert all(p.grad is not None for p in m.parameters())
    assert m.num_params() > 0


def test_scripted_policy_refuses_to_run_past_a_script_without_eos():
    m = ScriptedPolicy(12, {(5,): [[2, 3]]})  # 2 tokens, no EOS
    assert generate(m, [[5]], 2, EOS, PAD, temperature=0).truncated.tolist() == [True]
    with pytest.raises(ValueError, match="no EOS"):
        generate(m, [[5]], 3, EOS, PAD, temperature=0)
    with pytest.raises(KeyError, match="no script"):
        generate(m, [[6]], 2, EOS, PAD, temperature=0)


# ---------------------------------------------------------------------------------------------------------------
# model.generate
# ---------------------------------------------------------------------------------------------------------------
SCRIPTS = {(5, 6, 7): [[2, 3, EOS], [4, EOS]], (8,): [[9, 9, 9, 9, 9, 9]]}  # (8,) never ends: no EOS


@pytest.mark.parametrize("temperature,top_p", [(0.0, None), (1.0, None), (1.0, 0.95)])
def test_generate_stops_each_row_at_its_first_eos_keeps_it_and_pads_after_it(temperature, top_p):
    m = ScriptedPolicy(12, SCRIPTS)
    roll = generate(m, [[5, 6, 7], [8], [5, 6, 7]], 5, EOS, PAD, temperature=temperature, top_p=top_p,
                    generator=torch.Generator().manual_seed(0))
    # row 0: first (5,6,7) -> script 0; row 1: (8,) runs to max_new_tokens 5; row 2: second (5,6,7) -> script 1
    assert roll.ids.tolist() == [[2, 3, EOS, PAD, PAD],
                                 [9, 9, 9, 9, 9],
                                 [4, EOS, PAD, PAD, PAD]]
    assert roll.mask.tolist() == [[True, True, True, False, False],
                                  [True, True, True, True, True],
                                  [True, True, False, False, False]]
    assert roll.truncated.tolist() == [False, True, False]
    assert torch.allclose(roll.logprobs, torch.zeros(3, 5), atol=1e-4)  # log p(scripted) = 0; pads exactly 0
    assert (roll.logprobs[~roll.mask] == 0).all()


def test_generate_returns_only_as_many_columns_as_the_longest_row_when_all_rows_end_early():
    m = ScriptedPolicy(12, SCRIPTS)
    roll = generate(m, [[5, 6, 7], [5, 6, 7]], 8, EOS, PAD, temperature=0)
    assert roll.ids.tolist() == [[2, 3, EOS], [4, EOS, PAD]]  # 3 columns, not 8
    assert roll.mask.tolist() == [[True, True, True], [True, True, False]]
    assert roll.truncated.tolist() == [False, False]


def test_generate_truncates_a_row_without_eos_exactly_at_max_new_tokens():
    m = ScriptedPolicy(12, SCRIPTS)
    for n in (1, 3, 6):
        roll = generate(m, [[8]], n, EOS, PAD, temperature=1.0, generator=torch.Generator().manual_seed(0))
        assert roll.ids.tolist() == [[9] * n] and roll.mask.tolist() == [[True] * n]
        assert roll.truncated.tolist() == [True]
    # a row whose EOS is the very last allowed token ended by itself: not truncated
    roll = generate(m, [[5, 6, 7]], 3, EOS, PAD, temperature=0)
    assert roll.ids.tolist() == [[2, 3, EOS]] and roll.truncated.tolist() == [False]


# ---------------------------------------------------------------------------------------------------------------
# sample.decode_completions / sample.complete
# ---------------------------------------------------------------------------------------------------------------
def test_decode_completions_drops_the_eos_and_the_padding(tok):
    ids = [tasks.encode(tok, " <answer> 5 </answer>") + [EOS, PAD, PAD],  # 6 tokens + EOS + 2 pads
           tasks.encode(tok, " 4*6 = 25 #### 2"),  # 16 tokens, truncated: no EOS
           tasks.encode(tok, " 24") + [EOS] + [PAD] * 12]  # 3 tokens + EOS + 12 pads
    mask = [[True] * 7 + [False] * 9, [True] * 16, [True] * 4 + [False] * 12]
    ids = [row + [PAD] * (16 - len(row)) for row in ids]
    roll = Completions(torch.tensor(ids), torch.tensor(mask), torch.tensor([False, True, False]), torch.zeros(3, 16))
    assert sample.decode_completions(tok, roll) == [" <answer> 5 </answer>", " 4*6 = 25 #### 2", " 24"]


def test_generated_completions_decode_to_the_scripted_texts_without_eos(tok):
    m = scripted_policy(tok, {Q0: [RIGHT0, UNFORMATTED0], Q1: [LONG1]})
    prompts = [tasks.encode(tok, tasks.format_prompt(q)) for q in (Q0, Q1, Q0)]
    roll = generate(m, prompts, 32, EOS, PAD, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert sample.decode_completions(tok, roll) == [RIGHT0, LONG1_AT_32, UNFORMATTED0]
    assert roll.mask.sum(-1).tolist() == [28, 32, 16]  # 27 + EOS, cut at 32, 15 + EOS
    assert roll.truncated.tolist() == [False, True, False]


def test_complete_returns_each_questions_scripted_text_in_question_order(tok):
    m = scripted_policy(tok, {Q0: [RIGHT0, WRONG0], Q1: [RIGHT1]})
    assert sample.complete(m, tok, [Q1, Q0, Q0, Q1], "compact", 32) == [RIGHT1, RIGHT0, WRONG0, RIGHT1]


# ---------------------------------------------------------------------------------------------------------------
# rollouts.sample_groups
# ---------------------------------------------------------------------------------------------------------------
GROUPS = {Q0: [RIGHT0, WRONG0, UNFORMATTED0], Q1: [RIGHT1, LONG1, WRONG1]}  # B = 2 questions x G = 3


def groups(tok, **overrides):
    cfg = config.TrainConfig(group_size=3, max_new_tokens=32, temperature=1.0, **overrides)
    timer = {}
    roll = rollouts.sample_groups(scripted_policy(tok, GROUPS), tok, [P0, P1], cfg, torch.Generator().manual_seed(0),
                               timer)
    return roll, timer


def test_sample_groups_puts_question_b_sample_g_in_row_b_times_g_plus_g_with_r1_rewards(tok):
    roll, timer = groups(tok)
    # row b*G + g: question b's g-th scripted completion
    assert roll.texts == [RIGHT0, WRONG0, UNFORMATTED0, RIGHT1, LONG1_AT_32, WRONG1]
    assert roll.prompts == [tasks.encode(tok, tasks.format_prompt(Q0))] * 3 + \
        [tasks.encode(tok, tasks.format_prompt(Q1))] * 3
    assert roll.problems == [P0, P1]
    # R1 Eq. 4, accuracy 1 + format 1:
    #   RIGHT0 vs 5: 1 + 1 = 2;  WRONG0 (6) vs 5: 0 + 1 = 1;  UNFORMATTED0 (#### 5) vs 5: 1 + 0 = 1
    #   RIGHT1 vs 24: 1 + 1 = 2;  LONG1 cut (no answer, unclosed): 0 + 0 = 0;  WRONG1 (#### 25) vs 24: 0 + 0 = 0
    assert roll.rewards.tolist() == [[2.0, 1.0, 1.0], [2.0, 0.0, 0.0]]
    assert roll.correct.tolist() == [[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    assert roll.truncated.tolist() == [False, False, False, False, True, False]
    assert roll.mask.sum(-1).tolist() == [28, 28, 16, 12, 32, 18]
    assert roll.ids.shape == (6, 32)
    assert roll.ids[0, 27].item() == EOS and roll.ids[0, 28:].tolist() == [PAD] * 4  # EOS kept, pads after it
    assert timer["tokens"] == 134  # 28 + 28 + 16 + 12 + 32 + 18


class LengthScorer(torch.nn.Module):
    """A stand-in reward model: its output at a position is the number of real tokens up to it, so r_phi(q, o)
    is |prompt| + |o| (the EOS included) when read at the completion's last token."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, idx, valid=None):
        return valid.double().cumsum(-1)


def test_a_learned_reward_model_adds_its_weighted_score_to_the_rule_rewards(tok):
    cfg = config.TrainConfig(group_size=3, max_new_tokens=32, reward_rm=0.5, reward_model="unused-here")
    roll = rollouts.sample_groups(scripted_policy(tok, GROUPS), tok, [P0, P1], cfg, torch.Generator().manual_seed(0),
                                  None, LengthScorer())
    p0, p1 = (len(tasks.encode(tok, tasks.format_prompt(q))) for q in (Q0, Q1))
    # scores: prompt + completion lengths (28, 28, 16 | 12, 32, 18, as above); rules: 2, 1, 1 | 2, 0, 0
    scores = [[p0 + 28, p0 + 28, p0 + 16], [p1 + 12, p1 + 32, p1 + 18]]
    assert roll.rm_scores.tolist() == scores
    rules = [[2.0, 1.0, 1.0], [2.0, 0.0, 0.0]]
    assert roll.rewards.flatten().tolist() == pytest.approx([r + 0.5 * s for rr, ss in zip(rules, scores)
                                                             for r, s in zip(rr, ss)])
    stats = rollouts.rollout_stats(roll, roll, 0)
    assert stats["rm_score"] == pytest.approx(sum(map(sum, scores)) / 6)
    cfg.reward_rm = 0.0  # weight 0: the model is not asked, nothing is added
    roll = rollouts.sample_groups(scripted_policy(tok, GROUPS), tok, [P0, P1], cfg, torch.Generator().manual_seed(0),
                                  None, LengthScorer())
    assert roll.rm_scores is None and roll.rewards.tolist() == rules and "rm_score" not in rollouts.rollout_stats(roll, roll, 0)


def test_sample_groups_with_dapo_plus_minus_one_accuracy_and_no_format_reward(tok):
    roll, _ = groups(tok, reward_wrong=-1.0, reward_format=0.0)
    # accuracy only, a wrong (or missing) answer -1 (DAPO Eq. 7):
    #   RIGHT0 +1, WRONG0 -1, UNFORMATTED0 +1;  RIGHT1 +1, LONG1 cut -1, WRONG1 -1
    assert roll.rewards.tolist() == [[1.0, -1.0, 1.0], [1.0, -1.0, -1.0]]
    assert roll.correct.tolist() == [[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]  # 1/0 whatever a wrong answer earns
    # the logged format reward counts the formatted completions whatever its weight (here 0): RIGHT0, WRONG0, RIGHT1
    assert rollouts.rollout_stats(roll, roll, 0)["format"] == 0.5
    unscored = dataclasses.replace(roll, correct=torch.zeros_like(roll.correct), rewards=torch.zeros_like(roll.rewards))
    assert rollouts.rollout_stats(unscored, unscored, 0)["format"] == 0.5  # read from the texts alone


def test_sample_groups_adds_dapo_soft_overlong_penalty_with_l_max_the_generation_budget(tok):
    roll, _ = groups(tok, reward_overlong=1.0, overlong_cache=5)
    # L_max = max_new_tokens = 32, L_cache = 5, so the ramp starts after 32 - 5 = 27 tokens:
    #   length 28: (27 - 28) / 5 = -0.2;  16, 12, 18 <= 27: 0;  32 (truncated): (27 - 32) / 5 = -1
    #   rewards: RIGHT0 2 - 0.2 = 1.8;  WRONG0 1 - 0.2 = 0.8;  UNFORMATTED0 1 + 0 = 1
    #            RIGHT1 2 + 0 = 2;  LONG1 cut 0 - 1 = -1;  WRONG1 0 + 0 = 0
    assert roll.rewards.flatten().tolist() == pytest.approx([1.8, 0.8, 1.0, 2.0, -1.0, 0.0], abs=1e-6)


def test_sample_groups_overlong_penalty_at_l_max_20_l_cache_5_length_18_is_minus_0_6(tok):
    cfg = config.TrainConfig(group_size=3, max_new_tokens=20, overlong_cache=5, reward_overlong=1.0)
    policy = scripted_policy(tok, {Q1: [WRONG1, RIGHT1, LONG1]})
    roll = rollouts.sample_groups(policy, tok, [P1], cfg, torch.Generator().manual_seed(0))
    assert roll.texts == [WRONG1, RIGHT1, LONG1_AT_20]
    assert roll.mask.sum(-1).tolist() == [18, 12, 20]
    # ramp after 20 - 5 = 15 tokens:
    #   WRONG1, 18 tokens: 0 + 0 + (15 - 18) / 5 = -0.6
    #   RIGHT1, 12 tokens: 1 + 1 + 0 = 2
    #   LONG1 cut at 20: 0 + 0 + (15 - 20) / 5 = -1
    assert roll.rewards.flatten().tolist() == pytest.approx([-0.6, 2.0, -1.0], abs=1e-6)
    assert roll.truncated.tolist() == [False, False, True]


# ---------------------------------------------------------------------------------------------------------------
# sample.evaluate
# ---------------------------------------------------------------------------------------------------------------
GREEDY = [RIGHT0,  # P0 (5): right, shows work
          RIGHT1,  # P1 (24): right, empty <think> (no work)
          "I do not know"]  # P2 (7): no answer, no <think>
SAMPLES = [  # k = 4 per problem, problem 0 x 4, problem 1 x 4, problem 2 x 4
    WRONG0, " #### 6", " <answer> 5 </answer>", "I do not know",  # P0: 6, 6, 5, None -> 1 right; vote 6 (wrong)
    " <answer> 24 </answer>", " #### 25", " <think> 4*6 = <<4*6=25>>25 </think> <answer> 25 </answer>",
    " <think> </think> <answer> 24.0 </answer>",  # P1: 24, 25, 25, 24.0 -> 2 right; tie 2-2, first seen 24 (right)
    "no answer", " <answer> 7 or 8 </answer>", " <answer> 7 </answer> <answer> 8 </answer>",
    " <think> 9-2 = <<9-2=7>>7 </think> <answer> 7 </answer>",  # P2: None, None, None, 7 -> 1 right; vote 7
]


def evaluate(model, tok, problems, cfg, generator):
    """sample.evaluate with a config's evaluation flags (train.evaluate_rl's wiring is tested below)."""
    return sample.evaluate(model, tok, problems, cfg.template, cfg.max_new_tokens, cfg.pass_k, cfg.eval_temperature,
                           cfg.eval_top_p, generator)


def test_evaluate_metrics_from_known_greedy_and_sampled_texts(monkeypatch):
    calls = []
    signature = inspect.signature(sample.complete)

    def fake_complete(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append(dict(bound.arguments))
        return list(GREEDY) if len(calls) == 1 else list(SAMPLES)

    monkeypatch.setattr(sample, "complete", fake_complete)
    cfg = config.TrainConfig(pass_k=4, eval_temperature=0.7, eval_top_p=0.9, max_new_tokens=40, template="compact")
    model, tok, gen = object(), object(), torch.Generator()
    out = evaluate(model, tok, [P0, P1, P2], cfg, gen)
    # greedy: P0 right, P1 right, P2 wrong -> pass@1 = 2/3;  a non-empty <think>: P0 only -> shows_work = 1/3
    # samples, right per problem: P0 1, P1 2 ("24" and "24.0"), P2 1
    #   pass@4 with n = k = 4: 1 for any right sample: (1 + 1 + 1) / 3 = 1
    #   sampled pass@1 = (1 + 2 + 1) / (4 * 3) = 4/12 = 1/3
    #   cons@4: P0 votes 6 (wrong), P1 tie 24 vs 25 -> 24 first (right; "24.0" counts as 24), P2 7 (the 3 None
    #   never win; right) -> 2/3
    assert out == pytest.approx({"pass_at_1": 2 / 3, "shows_work": 1 / 3, "pass_at_4": 1.0,
                                 "sampled_pass_at_1": 1 / 3, "cons_at_4": 2 / 3})
    assert len(calls) == 2
    greedy, sampled = calls
    assert greedy["model"] is model and greedy["tok"] is tok
    assert greedy["questions"] == [Q0, Q1, Q2] and greedy["temperature"] == 0.0  # greedy first
    assert greedy["template"] == "compact" and greedy["max_new_tokens"] == 40
    assert sampled["questions"] == [Q0] * 4 + [Q1] * 4 + [Q2] * 4  # k copies of each question, in order
    assert sampled["temperature"] == 0.7 and sampled["top_p"] == 0.9 and sampled["generator"] is gen
    assert sampled["template"] == "compact" and sampled["max_new_tokens"] == 40


def test_evaluate_with_pass_k_1_reports_greedy_metrics_only(monkeypatch):
    calls = []
    monkeypatch.setattr(sample, "complete", lambda *a, **k: calls.append(a) or list(GREEDY))
    out = evaluate(object(), object(), [P0, P1, P2], config.TrainConfig(pass_k=1), torch.Generator())
    assert out == pytest.approx({"pass_at_1": 2 / 3, "shows_work": 1 / 3})  # as above
    assert len(calls) == 1


def test_evaluate_on_a_scripted_policy_scores_its_known_completions(tok):
    # greedy: each question asked once -> its completion 0; sampled: k = 3 copies -> completions 0, 1, 2
    policy = scripted_policy(tok, {Q0: [RIGHT0, WRONG0, UNFORMATTED0],
                                   Q1: [" <think> </think> <answer> 25 </answer>", RIGHT1, WRONG1]})
    cfg = config.TrainConfig(pass_k=3, max_new_tokens=32)
    out = evaluate(policy, tok, [P0, P1], cfg, torch.Generator().manual_seed(0))
    # greedy: P0 RIGHT0 (right, work), P1 "25" (wrong, empty think) -> pass@1 = 1/2, shows_work = 1/2
    # samples: P0 5, 6, 5 -> 2 right, vote 5 (right); P1 25, 24, 25 -> 1 right, vote 25 (wrong)
    #   pass@3 = (1 + 1) / 2 = 1;  sampled pass@1 = (2 + 1) / 6 = 1/2;  cons@3 = (1 + 0) / 2 = 1/2
    assert out == pytest.approx({"pass_at_1": 0.5, "shows_work": 0.5, "pass_at_3": 1.0,
                                 "sampled_pass_at_1": 0.5, "cons_at_3": 0.5})
    # with length: the mean token count of the greedy completions, RIGHT0 and the "25" answer (EOS not counted)
    out = sample.evaluate(policy, tok, [P0, P1], "compact", 32, 1, length=True)
    expected = (len(tasks.encode(tok, RIGHT0)) + len(tasks.encode(tok, " <think> </think> <answer> 25 </answer>"))) / 2
    assert out == pytest.approx({"pass_at_1": 0.5, "shows_work": 0.5, "length": expected}) and expected > 10


def test_the_rl_evaluation_passes_the_runs_flags_and_its_own_generator_and_logs_the_scores(monkeypatch):
    seen, records = [], []
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: seen.append((a, k)) or {"pass_at_1": 0.5, "shows_work": 0.25})
    cfg = config.TrainConfig(pass_k=3, eval_temperature=0.7, eval_top_p=0.9, max_new_tokens=40, template="r1",
                             forward_chunk=5, seed=3)
    run = checkpoint.Run(cfg, "TOK", types.SimpleNamespace(log=lambda **r: records.append(r)), "cpu")
    train.evaluate_rl("POLICY", [P0, P1], run, 7)
    ((args, kwargs),) = seen
    assert args[:8] + args[9:] == ("POLICY", "TOK", [P0, P1], "r1", 40, 3, 0.7, 0.9, 5) and kwargs == {"length": False}
    assert args[8].initial_seed() == checkpoint.step_generator(3, "eval", 7).initial_seed()  # not training's
    assert records == [dict(stage="grpo", step=7, eval_n=2, eval_pass_at_1=0.5, eval_shows_work=0.25)]
    cfg.pipeline = "r1"  # the R1 pipeline's table has the mean length; a stage other than RL logs its own name
    train.evaluate_rl("POLICY", [P0, P1], run, 9, "rs_sft")
    assert seen[-1][1] == {"length": True} and records[-1]["stage"] == "rs_sft" and records[-1]["step"] == 9
