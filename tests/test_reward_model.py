"""The learned reward (reward_model.py, grpo.completion_scores, grpo.preference_loss): hand-computed losses, the
score read at the EOS, the preference pairs, and a reward model that learns to rank them."""

import math
import os
import random

import pytest
import torch

import checkpoint
import config
import grpo
import rewards
import reward_model
import tasks
import train
from model import Critic, ModelConfig, Transformer, left_pad, save_checkpoint

P = tasks.Problem("What is 2+3*4?", "3*4 = <<3*4=12>>12\n2+12 = <<2+12=14>>14", "14")


def test_the_preference_loss_on_numbers_computed_by_hand():
    loss = grpo.preference_loss(torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0]))
    assert loss.item() == pytest.approx((math.log(2) + math.log(1 + math.exp(-2))) / 2)  # (0.6931 + 0.1269) / 2
    shifted = grpo.preference_loss(torch.tensor([5.0, 7.0]), torch.tensor([5.0, 5.0]))  # only differences count
    assert shifted.item() == pytest.approx(loss.item())
    assert math.isfinite(grpo.preference_loss(torch.tensor([-1000.0]), torch.tensor([1000.0])).item())  # 2000


def test_the_preference_loss_gradient_is_minus_sigmoid_of_minus_the_difference():
    c, r = torch.tensor([1.0, -1.0], requires_grad=True), torch.tensor([0.0, 0.0], requires_grad=True)
    grpo.preference_loss(c, r).backward()
    # dL/dc_i = -(1/n) sigmoid(-(c_i - r_i)) = -(1/2) / (1 + e^{c_i - r_i}); dL/dr_i = the opposite
    expected = [-0.5 / (1 + math.e), -0.5 / (1 + math.exp(-1))]
    assert c.grad.tolist() == pytest.approx(expected) and r.grad.tolist() == pytest.approx([-g for g in expected])


def test_pair_accuracy_counts_ties_as_wrong():
    assert grpo.pair_accuracy(torch.tensor([1.0, 2.0, 3.0, 0.0]), torch.tensor([0.0, 2.0, 1.0, 1.0])) == 0.5


class LastTokenEcho(torch.nn.Module):
    """A 'scalar-head model' whose output at each position is the token id there: the score shows which
    position completion_scores read."""

    def forward(self, idx, valid=None):
        return idx.double()


def test_completion_scores_read_the_last_real_token_of_each_completion():
    prompt_ids, prompt_valid = left_pad([[5, 6, 7], [8]], 0, "cpu")
    completion = torch.tensor([[11, 12, 1, 0], [21, 1, 0, 0]])  # EOS (1) at positions 2 and 1, then pads
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    assert grpo.completion_scores(LastTokenEcho(), prompt_ids, prompt_valid, completion, mask).tolist() == [1.0, 1.0]
    no_eos = torch.tensor([[11, 12, 13, 14], [21, 22, 0, 0]])
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    assert grpo.completion_scores(LastTokenEcho(), prompt_ids, prompt_valid, no_eos, mask).tolist() == [14.0, 22.0]
    empty = torch.zeros(2, 4, dtype=torch.bool)
    assert grpo.completion_scores(LastTokenEcho(), prompt_ids, prompt_valid, no_eos, empty).tolist() == [7.0, 8.0]


def test_a_rejected_response_keeps_the_right_answer_and_breaks_only_its_own_rule():
    rng = random.Random(0)
    rambling = reward_model.rejected_response(P, "rambling", rng)
    assert rewards.format_reward(rambling) == 1.0 and rewards.accuracy_reward(rambling, "14") == 1.0
    assert rambling.count("<<3*4=12>>") == 2 and rambling.count("<<2+12=14>>") == 1 and reward_model.FILLER in rambling
    language = reward_model.rejected_response(P, "language", rng)
    assert rewards.format_reward(language) == 1.0 and rewards.accuracy_reward(language, "14") == 1.0
    assert rewards.language_consistency_reward(language) == 0.0  # every word of its reasoning is foreign
    formats = {reward_model.rejected_response(P, "format", random.Random(s)) for s in range(20)}
    assert len(formats) == 3 and all(rewards.format_reward(f) == 0.0 and "14" in f for f in formats)
    with pytest.raises(ValueError, match="allowed values are rambling, format, language"):
        reward_model.rejected_response(P, "short", rng)


def test_preference_pairs_take_the_kinds_in_turn_with_the_worked_solution_chosen():
    problems = [tasks.Problem(f"What is {a}+1?", f"{a}+1 = <<{a}+1={a + 1}>>{a + 1}", str(a + 1)) for a in range(6)]
    pairs = reward_model.preference_pairs(problems, seed=0)
    assert [k for *_, k in pairs] == ["rambling", "format", "language"] * 2
    assert all(c == tasks.format_completion(p) and q == p.question for (q, c, _, _), p in zip(pairs, problems))
    assert pairs == reward_model.preference_pairs(problems, seed=0)


@pytest.fixture(scope="module")
def tok():
    problems, _ = tasks.make_splits("arithmetic", 300, 10, seed=0)
    texts = list(tasks.corpus_texts(problems)) + [r for *_, r, _ in reward_model.preference_pairs(problems, 0)]
    return tasks.train_tokenizer(texts, 320)


def test_a_reward_model_learns_to_rank_held_out_pairs_of_every_kind(tok):
    problems, _ = tasks.make_splits("arithmetic", 260, 10, seed=1)
    pairs = reward_model.preference_pairs(problems, seed=1)
    torch.manual_seed(0)
    policy = Transformer(ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=1, n_head=2, n_embd=32, max_seq_len=320))
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    untrained = Critic.from_policy(policy)
    with torch.no_grad():
        c0, r0 = reward_model.pair_scores(untrained, tok, pairs[200:], "compact", "cpu")
    assert torch.equal(c0, torch.zeros_like(c0)) and torch.equal(r0, c0)  # a zero head: every score 0, accuracy 0
    model, stats = reward_model.train_reward_model(policy, tok, pairs[:200], pairs[200:], steps=60, batch_size=16,
                                                   lr=3e-3, seed=0, log=None)
    assert stats["pair_accuracy"] >= 0.9 and all(stats[f"pair_accuracy_{k}"] >= 0.8 for k in reward_model.KINDS)
    assert all(torch.equal(v, before[k]) for k, v in policy.state_dict().items())  # a copy was trained, not the policy
    questions, responses = [pairs[200][0], pairs[201][0]], [pairs[200][1], pairs[201][2]]
    with torch.no_grad():
        scores = reward_model.sequence_scores(model, tok, questions, responses, "compact", "cpu")
        prompt_ids, prompt_valid = left_pad([tasks.encode(tok, tasks.format_prompt(q)) for q in questions], 0, "cpu")
        ids = [tasks.encode(tok, r) + [tasks.EOS_ID] for r in responses]
        T = max(map(len, ids))
        rl_layout = grpo.completion_scores(model, prompt_ids, prompt_valid,  # as the RL step scores its samples
                                           torch.tensor([r + [0] * (T - len(r)) for r in ids]),
                                           torch.tensor([[True] * len(r) + [False] * (T - len(r)) for r in ids]))
    assert torch.allclose(scores, rl_layout, atol=1e-5)


def test_the_reward_model_flags_name_each_other_and_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="--reward_rm weighs a learned reward model's score: give its folder"):
        config.check_config(config.TrainConfig(reward_rm=1.0))
    with pytest.raises(ValueError, match="--reward_model 'x' has no effect here: it acts only with --reward_rm"):
        config.check_config(config.TrainConfig(reward_model="x"))
    with pytest.raises(ValueError, match="no such folder"):
        config.check_config(config.TrainConfig(reward_rm=1.0, reward_model=str(tmp_path / "none")))


def test_a_reward_model_of_another_vocabulary_is_refused(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(str(tmp_path / "rm"), Critic(ModelConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=16,
                                                            max_seq_len=64)))
    policy = Transformer(ModelConfig(vocab_size=310, n_layer=1, n_head=2, n_embd=16, max_seq_len=64))
    with pytest.raises(ValueError, match="vocabulary 300 and 64 positions, the policy has 310 and 64"):
        reward_model.load(str(tmp_path / "rm"), policy)
    policy = Transformer(ModelConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=16, max_seq_len=64))
    loaded = reward_model.load(str(tmp_path / "rm"), policy)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())


def test_train_a_reward_model_from_a_checkpoint_then_rl_on_it(tmp_path):
    tiny = ["--preset", "smoke", "--n_train", "300", "--sft_steps", "4", "--eval_every", "4", "--eval_n", "2",
            "--threads", "1"]
    train.main(tiny + ["--out_dir", str(tmp_path / "run"), "--rl", "none"])
    sft = str(tmp_path / "run" / "sft")
    stats = reward_model.main([sft, "--out_dir", str(tmp_path / "rm"), "--pairs", "40", "--test_pairs", "10",
                               "--steps", "3", "--batch_size", "4", "--threads", "1"])
    assert set(stats) >= {"loss", "pair_accuracy"} and os.path.isfile(tmp_path / "rm" / "model.safetensors")
    final = train.main(tiny + ["--out_dir", str(tmp_path / "rl"), "--init_from", sft, "--rl_steps", "2",
                               "--rl_eval_every", "2", "--rl_eval_n", "2", "--reward_rm", "1",
                               "--reward_model", str(tmp_path / "rm"), "--reward_accuracy", "0", "--reward_format", "0"])
    steps = [r for r in checkpoint.read_jsonl(str(tmp_path / "rl" / "metrics.jsonl")) if "rm_score" in r]
    assert len(steps) == 2 and all(r["reward"] == pytest.approx(r["rm_score"]) for r in steps)  # the RM alone
    assert {m["model"]: m["role"] for m in final["models"]}["reward"] == "r_phi, frozen; + rules"
