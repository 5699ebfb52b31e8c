"""The outcome verifier (verifier.py, grpo.verifier_loss): its loss on numbers worked out by hand, the labels of
a scripted policy's known samples, where the score is read, the within-question ranking, training on hand-made
solutions it can tell apart, and a verifier that cannot score the policy. (The command, from a checkpoint to a saved
verifier that inference.py and sample.py use: tests/test_inference.py.)"""

import math

import pytest
import torch

import grpo
import tasks
import verifier
from model import Critic, ModelConfig, Transformer, left_pad, save_checkpoint
from scripted import NoEOS, scripted_policy


def test_the_verifier_loss_on_numbers_computed_by_hand():
    # solution 0 is right (y = 1): tokens v = 0 -> log 2, v = 2 -> log(1 + e^-2); solution 1 is wrong (y = 0):
    # v = 2 -> log(1 + e^2); its second token is a pad (mask False), left out of the mean
    values = torch.tensor([[0.0, 2.0], [2.0, 99.0]])
    mask = torch.tensor([[True, True], [True, False]])
    loss = grpo.verifier_loss(values, torch.tensor([True, False]), mask)
    expected = (math.log(2) + math.log1p(math.exp(-2)) + math.log1p(math.exp(2))) / 3  # 0.9823
    assert loss.item() == pytest.approx(expected, abs=1e-6) and expected == pytest.approx(0.9823, abs=1e-4)
    # the label broadcasts over the tokens: the wrong row's labels flipped changes only that row's term
    flipped = grpo.verifier_loss(values, torch.tensor([True, True]), mask)
    assert flipped.item() == pytest.approx((math.log(2) + 2 * math.log1p(math.exp(-2))) / 3, abs=1e-6)


def test_the_verifier_loss_gradient_is_sigmoid_minus_the_label():
    v = torch.tensor([[0.5, -1.0]], requires_grad=True)
    grpo.verifier_loss(v, torch.tensor([True]), torch.tensor([[True, True]])).backward()
    assert torch.allclose(v.grad, (torch.sigmoid(v.detach()) - 1.0) / 2)  # d/dv BCE = sigmoid(v) - y, mean of 2


def test_ranking_counts_right_above_wrong_within_a_question_ties_half():
    S = verifier.Solution
    sols = [S("q", "a", True), S("q", "b", False), S("q", "c", True), S("r", "d", False), S("r", "e", True)]
    # q: pairs (0.9 > 0.1), (0.5 > 0.1) -> 2 wins; r: (0.3 vs 0.3) a tie -> 1/2; 2.5 of 3 pairs
    assert verifier.ranking([0.9, 0.1, 0.5, 0.3, 0.3], sols) == pytest.approx(2.5 / 3)
    # a score that would rank across questions does not count: r's wrong 0.95 is never set against q's right 0.9
    assert verifier.ranking([0.9, 0.1, 0.5, 0.95, 0.99], sols) == 1.0
    assert verifier.ranking([0.2, 0.7], sols[:2]) == 0.0
    assert verifier.ranking([0.5, 0.5], [S("q", "a", True), S("q", "b", True)]) is None  # no wrong one: no pair


# tok: the a+b tokenizer of tests/conftest.py
def test_own_samples_are_labelled_by_the_rule_checker_k_rows_per_question(tok):
    qs = [tasks.Problem("What is 3+4?", "3+4 = <<3+4=7>>7", "7"), tasks.Problem("What is 1+2?", "1+2 = <<1+2=3>>3", "3")]
    right = [tasks.format_completion(p) for p in qs]
    wrong = right[0].replace("7 </answer>", "8 </answer>")
    policy = scripted_policy(tok, {qs[0].question: [right[0], wrong], qs[1].question: [NoEOS(" 3" * 30),
                                                                                        right[1]]})
    sols = verifier.own_samples(policy, tok, qs, 2, "compact", 30, 1.0, 1.0, torch.Generator().manual_seed(0))
    assert [s.question for s in sols] == [qs[0].question] * 2 + [qs[1].question] * 2
    assert [s.correct for s in sols] == [True, False, False, True]  # a run-on with no answer is wrong
    assert sols[0].text == right[0] and sols[1].text == wrong


def test_a_solution_batch_ends_each_completion_with_eos_and_cuts_a_run_on_to_fit(tok):
    prompt = tasks.encode(tok, tasks.format_prompt("What is 3+4?"))
    short, long = " <answer> 7 </answer>", " 3" * 40
    ids, valid, mask = verifier.solution_batch(tok, ["What is 3+4?"] * 2, [short, long], "compact", len(prompt) + 10,
                                               "cpu")
    n_short = len(tasks.encode(tok, short))
    assert ids.size(1) == len(prompt) + 10  # the run-on keeps 9 tokens + EOS: prompt + 10 positions
    assert ids[0, valid[0]].tolist() == prompt + tasks.encode(tok, short) + [tasks.EOS_ID]
    assert ids[0, mask[0]].tolist() == tasks.encode(tok, short) + [tasks.EOS_ID]
    assert mask.sum(-1).tolist() == [n_short + 1, 10] and (ids[:, -1] == tasks.EOS_ID).all()
    assert not (mask & ~valid).any()
    with pytest.raises(ValueError, match="leaves no room in 5 positions"):
        verifier.solution_batch(tok, ["What is 3+4?"], [short], "compact", 5, "cpu")


def test_the_score_is_the_value_after_the_eos_as_an_rl_batch_reads_it_whatever_the_padding(tok):
    torch.manual_seed(0)
    model = Critic(ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=1, n_head=2, n_embd=16, max_seq_len=64))
    torch.nn.init.normal_(model.value_head.weight)  # not the zero head: scores differ by position
    qs = ["What is 3+4?", "What is 12+3?"]
    texts = [" <answer> 7 </answer>", " <think> 12+3 = <<12+3=15>>15 </think> <answer> 15 </answer>"]
    batched = verifier.verifier_scores(model, tok, qs, texts, "compact")
    alone = verifier.verifier_scores(model, tok, qs, texts, "compact", batch_size=1)  # no padding
    assert torch.allclose(batched, alone, atol=1e-5) and batched[0] != batched[1]
    prompt_ids, prompt_valid = left_pad([tasks.encode(tok, tasks.format_prompt(q)) for q in qs], 0, "cpu")
    ids = [tasks.encode(tok, t) + [tasks.EOS_ID] for t in texts]
    T = max(map(len, ids))
    with torch.no_grad():
        rl_layout = grpo.completion_scores(model, prompt_ids, prompt_valid,
                                           torch.tensor([r + [0] * (T - len(r)) for r in ids]),
                                           torch.tensor([[True] * len(r) + [False] * (T - len(r)) for r in ids]))
    assert torch.allclose(batched, rl_layout, atol=1e-5)
    values = verifier.token_values(model, *verifier.solution_batch(tok, qs, texts, "compact", 64, "cpu"))
    assert torch.allclose(values[:, -1], batched, atol=1e-5)  # what training's last token learns is the score
    assert (values[0, :-len(ids[0])] == 0).all() and (values[0, -len(ids[0]):] != 0).all()


def test_a_verifier_learns_to_rank_solutions_it_can_tell_apart(tok):
    # right solutions show their step, wrong ones guess: a feature the verifier can learn in a few steps
    S, train_set, test_set = verifier.Solution, [], []
    for a in range(10):
        for b in range(10):
            q = f"What is {a}+{b}?"
            pair = [S(q, f" <think> {a}+{b} = <<{a}+{b}={a + b}>>{a + b} </think> <answer> {a + b} </answer>", True),
                    S(q, f" <think> </think> <answer> {a + b + 1} </answer>", False)]
            (test_set if a == 9 else train_set).extend(pair)
    torch.manual_seed(0)
    policy = Transformer(ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=1, n_head=2, n_embd=32, max_seq_len=64))
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    model, stats = verifier.train_verifier(policy, tok, train_set, test_set, steps=40, batch_size=16, lr=3e-3,
                                           seed=0, log=None)
    assert stats["ranking"] == 1.0 and stats["accuracy"] >= 0.9 and stats["share_right"] == 0.5
    assert stats["loss"] < 0.3 * math.log(2)  # from log 2 (the zero head) down
    assert all(torch.equal(v, before[k]) for k, v in policy.state_dict().items())  # a copy was trained
    assert not model.training


def test_a_verifier_of_another_vocabulary_is_refused_naming_the_flag(tmp_path):
    save_checkpoint(str(tmp_path / "v"), Critic(ModelConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=16,
                                                           max_seq_len=64)))
    policy = Transformer(ModelConfig(vocab_size=310, n_layer=1, n_head=2, n_embd=16, max_seq_len=64))
    with pytest.raises(ValueError, match="--verifier .*vocabulary 300 and 64 positions, the policy has 310 and 64"):
        verifier.load(str(tmp_path / "v"), policy)
