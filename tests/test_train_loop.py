"""The wiring of train.py's two loops, checked from outside: what each SFT and RL step is given (its batch, its
questions, its learning rate), how many optimizer steps a setting makes, when the reference is reset, and which
quantity each flag reaches. Each test fails if its branch is skipped or wired to the wrong value.
"""

import math
import os

import pytest
import torch

import grpo
import rewards
import tasks
import train
from model import load_checkpoint
from scripted import scripted_policy
import sft
import rollouts
import config
import checkpoint

TINY = ["--preset", "smoke", "--n_train", "500", "--sft_steps", "12", "--eval_every", "12", "--eval_n", "2",
        "--rl_steps", "4", "--rl_eval_every", "4", "--rl_eval_n", "2", "--pass_k", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("sft"))
    train.main(TINY + ["--out_dir", out, "--rl", "none"])
    return os.path.join(out, "sft")


def test_each_sft_step_gets_its_own_batch_and_the_scheduled_learning_rate(tmp_path, monkeypatch):
    seen = []
    real = sft.sft_step

    def spy(model, optimizer, x, y, mask, grad_clip, device, n_tokens):
        seen.append((x.tolist(), [g["lr"] for g in optimizer.param_groups], grad_clip))
        assert n_tokens == int(mask.sum())  # one process: the batch's completion tokens are all here
        return real(model, optimizer, x, y, mask, grad_clip, device, n_tokens)
    monkeypatch.setattr(sft, "sft_step", spy)
    train.main(TINY + ["--out_dir", str(tmp_path), "--rl", "none", "--lr", "1e-2", "--warmup_steps", "4",
                       "--min_lr_ratio", "0.1", "--grad_clip", "0.5"])
    assert len(seen) == 12 and len({str(x) for x, _, _ in seen}) == 12  # 12 steps, 12 different batches
    # warm-up 1e-2 * (s + 1) / 4 for s < 4, then cosine from 1e-2 to 1e-3 as s goes from 4 to 12:
    # s = 8 is half-way: 1e-3 + 9e-3 * 0.5 * (1 + cos(pi / 2)) = 5.5e-3
    expected = [1e-2 * (s + 1) / 4 for s in range(4)] + [
        1e-3 + 9e-3 * 0.5 * (1 + math.cos(math.pi * (s - 4) / 8)) for s in range(4, 12)]
    assert [lrs[0] for _, lrs, _ in seen] == pytest.approx(expected)
    assert all(len(set(lrs)) == 1 for _, lrs, _ in seen)  # both parameter groups (decay, no decay)
    assert seen[8][1][0] == pytest.approx(5.5e-3) and all(clip == 0.5 for _, _, clip in seen)


def rl_spy(monkeypatch):
    """Record, for every RL step, the questions sampled, the learning rates, the rollout's rewards and the
    logged record."""
    calls = []
    real_update = train.rl_update

    def update(models, roll, tok, cfg, device, generator):
        lrs = [models.optimizer.param_groups[0]["lr"],
               models.critic_optimizer.param_groups[0]["lr"] if models.critic_optimizer else None]
        out = real_update(models, roll, tok, cfg, device, generator)
        calls.append(dict(questions=[p.question for p in roll.problems], lr=lrs[0], critic_lr=lrs[1],
                          rewards=roll.rewards.clone(), out=out))
        return out
    monkeypatch.setattr(train, "rl_update", update)
    return calls


def test_each_rl_step_draws_new_questions_from_the_seed_the_same_for_grpo_and_ppo(sft_run, tmp_path, monkeypatch):
    calls = rl_spy(monkeypatch)
    train.main(TINY + ["--out_dir", str(tmp_path / "g"), "--init_from", sft_run, "--rl_warmup_steps", "2"])
    grpo_questions = [c["questions"] for c in calls]
    assert len(grpo_questions) == 4 and all(len(q) == 4 for q in grpo_questions)  # B = prompts_per_step = 4
    assert len({tuple(q) for q in grpo_questions}) == 4  # every step its own questions
    assert [c["lr"] for c in calls] == pytest.approx([1.5e-5, 3e-5, 3e-5, 3e-5])  # warm-up over 2 steps, constant
    calls.clear()
    train.main(TINY + ["--out_dir", str(tmp_path / "p"), "--init_from", sft_run, "--rl", "ppo",
                       "--rl_warmup_steps", "2", "--critic_lr", "1e-3"])
    assert [c["questions"] for c in calls] == grpo_questions  # a fair comparison: the same questions, step by step
    assert [c["critic_lr"] for c in calls] == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3])


def test_mu_and_minibatches_give_exactly_the_optimizer_steps_they_name(sft_run, tmp_path, monkeypatch):
    steps = []
    real_step = train.clip_and_step
    monkeypatch.setattr(train, "clip_and_step", lambda *a: steps.append(1) or real_step(*a))
    calls = rl_spy(monkeypatch)
    # 4 questions x G = 4: 16 rows per step, in 3 minibatches (6, 5, 5 rows), 2 epochs: 6 AdamW steps per RL step
    train.main(TINY + ["--out_dir", str(tmp_path), "--init_from", sft_run, "--mu", "2", "--minibatches", "3"])
    assert len(steps) == 4 * 6 and [c["out"]["updates"] for c in calls] == [6] * 4


@pytest.mark.parametrize("rows, k, sizes", [(120, 16, [8] * 8 + [7] * 8), (128, 100, [2] * 28 + [1] * 72),
                                            (6, 6, [1] * 6), (5, 8, [1] * 5)])
def test_minibatches_cut_the_rows_into_exactly_k_parts_each_row_once(rows, k, sizes):
    parts = rollouts.minibatches(rows, k, torch.Generator().manual_seed(0))
    assert [len(p) for p in parts] == sizes  # torch.chunk would give 15 parts for (120, 16) and 64 for (128, 100)
    assert sorted(torch.cat(parts).tolist()) == list(range(rows))


def test_the_reference_is_reset_to_the_policy_at_each_outer_iteration_of_algorithm_1(sft_run, tmp_path, monkeypatch):
    calls = rl_spy(monkeypatch)
    # rewards that differ within groups (the soft overlong penalty of the untrained model's long answers), so the
    # policy moves away from the reference; --iterations 2 over 4 steps: pi_ref <- pi_theta before step 3
    train.main(TINY + ["--out_dir", str(tmp_path), "--init_from", sft_run, "--iterations", "2", "--rl_lr", "1e-2",
                       "--reward_overlong", "1", "--overlong_cache", "32", "--rl_warmup_steps", "1"])
    kl = [c["out"]["kl"] for c in calls]  # k3 of the policy before the step's update against the reference
    assert any(c["rewards"].std() > 0 for c in calls[:2])
    assert kl[0] == 0.0 and kl[1] > 0 and kl[2] == 0.0 and kl[3] > 0


def test_dynamic_sampling_keeps_groups_whose_rewards_differ_even_when_their_correctness_does_not(monkeypatch):
    tok = tasks.train_tokenizer(["User: q?\nAssistant: <think> a </think> <answer> 5 </answer>"] * 4, 300)
    formatted, unformatted = " <think> 2 </think> <answer> 4 </answer>", "4"  # both wrong; format 1 and 0
    right = " <think> 2+3 = <<2+3=5>>5 </think> <answer> 5 </answer>"
    problems = [tasks.Problem("q0?", "", "5"), tasks.Problem("q1?", "", "5")]
    policy = scripted_policy(tok, {"q0?": [formatted, unformatted], "q1?": [right, right]})
    cfg = config.TrainConfig(prompts_per_step=2, group_size=2, dynamic_sampling=True, max_new_tokens=40)
    sampled = []
    real = rollouts.sample_groups
    monkeypatch.setattr(rollouts, "sample_groups", lambda *a, **k: sampled.append(1) or real(*a, **k))
    roll, first = rollouts.collect_rollouts(policy, tok, problems, cfg, checkpoint.step_rng(0, "rl", 0),
                                         torch.Generator().manual_seed(0), {})
    assert first.correct.tolist() == [[0.0, 0.0], [1.0, 1.0]] and first.rewards.tolist() == [[1.0, 0.0], [2.0, 2.0]]
    assert roll.texts[:2] in ([formatted, unformatted], [unformatted, formatted])  # q0's group: kept
    assert right not in roll.texts  # q1's group (all rewards 2): dropped
    # the first rollout kept q0's group and a second filled the batch (q0 again): judging groups by their
    # correctness instead would have kept nothing of the first and needed a third
    assert len(sampled) == 2 and roll.rewards.shape == (2, 2)


def test_the_language_reward_flag_reaches_the_rollout_rewards(monkeypatch):
    tok = tasks.train_tokenizer(["User: q?\nAssistant: <think> a </think> <answer> 5 </answer>"] * 4, 300)
    english = " <think> add two and three </think> <answer> 5 </answer>"
    mixed = " <think> add два and три </think> <answer> 5 </answer>"  # 2 of 4 words in the target language
    policy = scripted_policy(tok, {"q?": [english, mixed]})
    problems = [tasks.Problem("q?", "", "5")]
    for weight, expected in ((0.0, [[2.0, 2.0]]), (1.0, [[3.0, 2.5]])):  # accuracy 1 + format 1 + weight * share
        cfg = config.parse_config(["--group_size", "2", "--max_new_tokens", "60", "--reward_language", str(weight)])
        roll = rollouts.sample_groups(policy, tok, problems, cfg, torch.Generator().manual_seed(0))
        assert roll.rewards.tolist() == expected


def test_flags_that_would_do_nothing_are_refused_and_those_that_act_are_accepted(capsys):
    for argv, words in ((["--gamma", "0.9"], "--gamma 0.9 has no effect here: it acts only with --rl ppo"),
                        (["--task", "word", "--digits", "2"], "--digits 2 has no effect here"),
                        (["--gsm8k_dir", "data"], "acts only with --task gsm8k"),
                        (["--task", "gsm8k", "--gsm8k_dir", "d", "--n_train", "10"], "GSM8K has its own split"),
                        (["--init_from", ".", "--rl", "none"], "nothing would run"),
                        (["--vocab_size", "100"], "--vocab_size must be >= 262"),
                        (["--n_embd", "30", "--n_head", "4"], "must split into --n_head 4 heads"),
                        (["--max_seq_len", "-1"], "--max_seq_len must be >= 0"),
                        (["--reward_format", "nan"], "--reward_format must be a finite number"),
                        (["--lr", "inf"], "--lr must be a finite number")):
        with pytest.raises(SystemExit):
            config.parse_config(argv)
        assert words in capsys.readouterr().err, argv
    assert config.parse_config(["--rl", "ppo", "--gamma", "0.9"]).gamma == 0.9
    assert config.parse_config(["--preset", "word"]).task == "word"  # a preset's own values are never refused
    assert config.parse_config(["--gamma", "1.0"]).gamma == 1.0  # the default value, given explicitly, is harmless


@pytest.mark.parametrize("args, words", [
    (["--max_seq_len", "40"], "--max_seq_len 40 cannot hold the longest prompt (20 tokens) plus --max_new_tokens 96 "
                              "= 116: raise --max_seq_len to at least 116"),
    (["--overlong_cache", "200"], "--overlong_cache 200 must be <= --max_new_tokens 96")])  # 96: sized from the data
def test_lengths_that_cannot_fit_the_data_are_refused_at_start_up_before_any_training(tmp_path, args, words, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--n_train", "300", "--n_test", "20", "--out_dir", str(tmp_path), *args])
    assert words in str(e.value)
    assert not os.path.exists(tmp_path / "sft") and "model:" not in capsys.readouterr().out  # no model was built


def test_plan_lengths_sizes_the_generation_budget_and_the_context_from_the_data():
    # 1.25 x 70 = 87.5 -> 96 (a multiple of 16); context 20 + 96
    assert train.plan_lengths(20, 70) == (96, 116)
    assert train.plan_lengths(20, 70, max_new_tokens=48) == (48, 90)  # every SFT example still fits: 20 + 70
    assert train.plan_lengths(575, 764) == (960, 1535)  # GSM8K's longest prompt and solution at 384 tokens
    assert train.plan_lengths(20, 70, max_seq_len=200) == (96, 200)
    with pytest.raises(ValueError, match=r"--max_seq_len 160 cannot hold the longest prompt \(349 tokens\) plus "
                                         r"--max_new_tokens 96 = 445"):
        train.plan_lengths(349, 70, 96, 160)


def test_a_run_with_the_r1_template_sizes_its_context_to_the_long_system_prompt(tmp_path):
    result = train.main(TINY + ["--out_dir", str(tmp_path), "--template", "r1", "--sft_steps", "2",
                                "--eval_every", "2", "--rl_steps", "1", "--rl_eval_every", "1"])
    cfg = train.checkpoint.load(str(tmp_path)).train_config
    # the R1 system text makes prompts of about 250 tokens (the compact template: 20)
    assert result["stage"] == "final" and cfg["max_seq_len"] > 250 and cfg["max_new_tokens"] == 48


def test_evaluation_samples_from_its_own_generator_so_it_does_not_change_the_training(sft_run, tmp_path):
    a = train.main(TINY + ["--out_dir", str(tmp_path / "a"), "--init_from", sft_run, "--pass_k", "2"])
    b = train.main(TINY + ["--out_dir", str(tmp_path / "b"), "--init_from", sft_run, "--pass_k", "4",
                           "--rl_eval_every", "1"])
    wa = load_checkpoint(str(tmp_path / "a" / "grpo"))[0].state_dict()
    wb = load_checkpoint(str(tmp_path / "b" / "grpo"))[0].state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # more and larger evaluations, the same training
    assert a["stage"] == b["stage"] == "final"


def test_each_completion_is_scored_against_its_own_questions_answer(monkeypatch):
    tok = tasks.train_tokenizer(["User: q?\nAssistant: <think> a </think> <answer> 5 </answer>"] * 4, 300)
    answers = {"q0?": "3", "q1?": "7", "q2?": "11"}
    policy = scripted_policy(tok, {q: [f" <think> </think> <answer> {a} </answer>"] * 2 for q, a in answers.items()})
    problems = [tasks.Problem(q, "", a) for q, a in answers.items()]
    cfg = config.TrainConfig(group_size=2, max_new_tokens=40)
    roll = rollouts.sample_groups(policy, tok, problems, cfg, torch.Generator().manual_seed(0))
    assert roll.rewards.tolist() == [[2.0, 2.0]] * 3  # each right for its own question (accuracy 1 + format 1)


def test_rollouts_sample_with_the_temperature_top_p_and_chunk_they_are_given(monkeypatch):
    calls = []
    real = rollouts.generate

    def spy(model, prompts, max_new_tokens, eos_id, pad_id, temperature=1.0, top_k=None, top_p=None, generator=None,
            max_batch=None, prompt_once=False):
        calls.append(dict(rows=len(prompts), max_new=max_new_tokens, temperature=temperature, top_p=top_p,
                          max_batch=max_batch, prompt_once=prompt_once))
        return real(model, prompts, max_new_tokens, eos_id, pad_id, temperature, top_k, top_p, generator, max_batch,
                    prompt_once)
    monkeypatch.setattr(rollouts, "generate", spy)
    tok = tasks.train_tokenizer(["User: q?\nAssistant: <think> a </think> <answer> 5 </answer>"] * 4, 300)
    policy = scripted_policy(tok, {"q?": [" <think> </think> <answer> 5 </answer>"]})
    cfg = config.parse_config(["--group_size", "3", "--max_new_tokens", "40", "--temperature", "0.7", "--top_p", "0.9",
                              "--forward_chunk", "2"])
    rollouts.sample_groups(policy, tok, [tasks.Problem("q?", "", "5")], cfg, torch.Generator().manual_seed(0))
    assert calls == [dict(rows=3, max_new=40, temperature=0.7, top_p=0.9, max_batch=2, prompt_once=False)]


def test_the_sft_stage_trains_on_the_mixed_cold_start_the_flag_asks_for(tmp_path, monkeypatch):
    class Seen(Exception):
        pass

    def spy(model, examples, test, run, point=None):
        texts = [tasks.decode(run.tok, c) for _, c in examples]
        raise Seen(sum(t.startswith(" <think> </think> <answer>") for t in texts) / len(texts))
    monkeypatch.setattr(sft, "run_sft", spy)
    for frac, low, high in ((0.5, 0.45, 0.55), (0.0, 0.0, 0.0), (0.2, 0.15, 0.25)):  # 500 examples each
        with pytest.raises(Seen) as share:
            train.main(TINY + ["--out_dir", str(tmp_path / str(frac)), "--sft_direct_frac", str(frac)])
        assert low <= share.value.args[0] <= high, (frac, share.value.args[0])
