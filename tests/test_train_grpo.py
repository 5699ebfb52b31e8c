"""The GRPO stage of train.py (DeepSeekMath Algorithm 1): group rollouts, their scores and advantages,
dynamic sampling, the reference resets, and policy updates that move log-probs the way the advantages say."""

import json
import os
import random

import pytest
import torch

import grpo
import rewards
import tasks
import train
from model import ModelConfig, Transformer, left_pad
import rollouts
import optim
import config

RIGHT = " <think> 2+3 = <<2+3=5>>5\n5*4 = <<5*4=20>>20 </think> <answer> 20 </answer>"
WRONG = " <think> 2+3 = <<2+3=5>>5\n5*4 = <<5*4=21>>21 </think> <answer> 21 </answer>"


@pytest.fixture(scope="module")
def tok():
    problems, _ = tasks.make_splits("arithmetic", 300, 10, 0)
    return tasks.train_tokenizer(tasks.corpus_texts(problems, "compact"), 200)


def tiny_model(vocab: int, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(ModelConfig(vocab_size=vocab, n_layer=1, n_head=2, n_embd=16, max_seq_len=128))


def rollouts_of(tok, texts: list[str], gold: str, G: int) -> rollouts.Rollouts:
    """A hand-made Rollouts of B = len(texts) / G groups, every question '2+3*4' with answer `gold`."""
    ids = [tasks.encode(tok, t) + [tasks.EOS_ID] for t in texts]
    T = max(map(len, ids))
    B = len(texts) // G
    r = [rewards.total_reward(t, gold) for t in texts]
    c = [rewards.accuracy_reward(t, gold) for t in texts]
    return rollouts.Rollouts(
        problems=[tasks.Problem("2+3*4", "", gold)] * B,
        prompts=[tasks.encode(tok, tasks.format_prompt("2+3*4", "compact"))] * len(texts),
        ids=torch.tensor([row + [tasks.PAD_ID] * (T - len(row)) for row in ids]),
        mask=torch.tensor([[True] * len(row) + [False] * (T - len(row)) for row in ids]),
        truncated=torch.zeros(len(texts), dtype=torch.bool), texts=texts,
        rewards=torch.tensor(r).view(B, G), correct=torch.tensor(c).view(B, G))


def test_sample_groups_gives_each_question_g_consecutive_rows_with_its_prompt(tok):
    problems, _ = tasks.make_splits("arithmetic", 50, 5, 1)
    cfg = config.TrainConfig(group_size=3, max_new_tokens=12, overlong_cache=4)
    roll = rollouts.sample_groups(tiny_model(tok.get_vocab_size()), tok, problems[:4], cfg, torch.Generator().manual_seed(0))
    assert roll.ids.shape[0] == 12 and roll.rewards.shape == (4, 3) and roll.correct.shape == (4, 3)
    for b, p in enumerate(problems[:4]):
        prompt = tasks.encode(tok, tasks.format_prompt(p.question, "compact"))
        assert roll.prompts[3 * b:3 * b + 3] == [prompt] * 3
    # (the rewards of known completions are checked against hand-written numbers in test_rollouts.py, with a
    # scripted policy: recomputing them here from roll.texts would compare the code with itself)
    assert (roll.truncated == (roll.mask.sum(-1) == 12) & (roll.ids[:, -1] != tasks.EOS_ID)).all()


def test_outcome_advantages_are_the_group_normalised_rewards_on_every_token(tok):
    roll = rollouts_of(tok, [RIGHT, WRONG, WRONG, WRONG], "20", G=4)  # rewards [2, 1, 1, 1]
    adv = rollouts.advantages(roll, tok, config.TrainConfig())
    # population std of [2, 1, 1, 1] is sqrt(3)/4, so A = [sqrt(3), -1/sqrt(3) x 3]
    expected = torch.tensor([3 ** 0.5, -(3 ** -0.5), -(3 ** -0.5), -(3 ** -0.5)])
    for i in range(4):
        assert torch.allclose(adv[i][roll.mask[i]], expected[i].expand(int(roll.mask[i].sum())), atol=1e-5)
        assert (adv[i][~roll.mask[i]] == 0).all()
    none = rollouts.advantages(roll, tok, config.TrainConfig(adv_scale="none"))  # Dr. GRPO: centred only
    assert torch.allclose(none[:, 0], torch.tensor([0.75, -0.25, -0.25, -0.25]))
    sample = rollouts.advantages(roll, tok, config.TrainConfig(std_ddof=1))  # sample std sqrt(0.75 / 3) = 0.5
    assert torch.allclose(sample[:, 0], torch.tensor([1.5, -0.5, -0.5, -0.5]), atol=1e-5)


def step_closing_tokens(tok, ids: list[int]) -> list[int]:
    """An oracle for index(j), independent of tasks.token_spans: the first k whose prefix ids[:k+1] decodes to
    text holding j+1 complete '>>' (prefix decoding; a cut multi-byte character at its end cannot hold '>')."""
    ends = []
    for k in range(len(ids)):
        if tasks.decode(tok, ids[:k + 1]).count(">>") > len(ends):
            ends.append(k)
    return ends


def expected_process_row(n_tokens: int, ends: list[int], z: list[float]) -> list[float]:
    """A_t = sum of z_j over the steps j whose end index(j) >= t (DeepSeekMath §4.1.3), written as a loop."""
    return [sum(zj for e, zj in zip(ends, z) if e >= t) for t in range(n_tokens)]


@pytest.mark.parametrize("prefix", ["", "é ✓ "])  # multi-byte characters before the steps shift naive offsets
def test_process_advantages_follow_deepseekmath_4_1_3_from_the_step_rewards_alone(tok, prefix):
    right = RIGHT.replace("<think> ", "<think> " + prefix)
    wrong = WRONG.replace("<think> ", "<think> " + prefix)
    roll = rollouts_of(tok, [right, wrong], "20", G=2)
    adv = rollouts.advantages(roll, tok, config.TrainConfig(supervision="process"))
    # step rewards: right [1, 1], wrong [1, 0]; R = [1, 1, 1, 0]: mean 0.75, population std sqrt(0.1875) = 0.4330127
    # z = (R - 0.75) / 0.4330127 = [0.5773503, 0.5773503 | 0.5773503, -1.7320508]; the outcome is not a step
    z = [[0.5773503, 0.5773503], [0.5773503, -1.7320508]]
    for i in range(2):
        n = int(roll.mask[i].sum())
        ids = roll.ids[i, :n].tolist()
        ends = step_closing_tokens(tok, ids[:-1])  # the EOS closes no step
        assert len(ends) == 2 and all(tasks.decode(tok, [ids[e]]).endswith(">") for e in ends)
        assert adv[i, :n].tolist() == pytest.approx(expected_process_row(n, ends, z[i]), abs=1e-5)
        assert (adv[i, n:] == 0).all()
    # right: 1.1547 on every token up to the first '>>', 0.5774 up to the second, 0 on the answer tokens after it
    assert adv[0, 0].item() == pytest.approx(1.1547005, abs=1e-5) and adv[0, n - 1].item() == 0.0


def test_process_advantages_with_the_outcome_as_a_last_step_normalise_it_with_the_step_rewards(tok):
    roll = rollouts_of(tok, [RIGHT, WRONG], "20", G=2)
    roll.rewards = roll.correct  # outcome = accuracy only (--reward_format 0), so that no z below is 0
    adv = rollouts.advantages(roll, tok, config.TrainConfig(supervision="process", process_outcome="last_step"))
    # steps: right [1, 1] + outcome 1; wrong [1, 0] + outcome 0: R = [1, 1, 1, 1, 0, 0], mean 2/3,
    # population std sqrt(2/9) = 0.4714045: z = [0.7071068 x 4, -1.4142136 x 2]
    z = [[0.7071068, 0.7071068, 0.7071068], [0.7071068, -1.4142136, -1.4142136]]
    for i in range(2):
        n = int(roll.mask[i].sum())
        ends = step_closing_tokens(tok, roll.ids[i, :n - 1].tolist()) + [n - 1]  # the outcome ends on the EOS
        assert adv[i, :n].tolist() == pytest.approx(expected_process_row(n, ends, z[i]), abs=1e-5)


def test_process_supervision_refuses_flags_it_would_ignore(capsys):
    with pytest.raises(SystemExit):
        config.parse_config(["--supervision", "process", "--adv_scale", "none"])
    assert "--adv_scale 'none' has no effect here" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        config.parse_config(["--process_outcome", "last_step"])  # outcome supervision
    assert "acts only with --supervision process" in capsys.readouterr().err
    assert config.parse_config(["--supervision", "process", "--process_outcome", "last_step"]).process_outcome == "last_step"


def test_dynamic_sampling_keeps_only_groups_whose_rewards_differ(tok):
    mixed = rollouts_of(tok, [RIGHT, WRONG, RIGHT, RIGHT], "20", G=2)  # group 0 mixed, group 1 all right
    wrong = rollouts_of(tok, [WRONG, WRONG, WRONG, RIGHT], "20", G=2)  # group 0 all wrong, group 1 mixed
    keep = [grpo.dynamic_sampling_filter(mixed.rewards), grpo.dynamic_sampling_filter(wrong.rewards)]
    assert [k.tolist() for k in keep] == [[True, False], [False, True]]
    both = rollouts.select_groups([mixed, wrong], keep, n_groups=8, G=2)
    assert both.texts == [RIGHT, WRONG, WRONG, RIGHT] and both.rewards.tolist() == [[2.0, 1.0], [1.0, 2.0]]
    assert both.ids.shape[0] == 4 and (both.ids[1] == mixed.ids[1]).all() and (both.ids[2] == wrong.ids[2]).all()
    one = rollouts.select_groups([mixed, wrong], keep, n_groups=1, G=2)
    assert one.texts == [RIGHT, WRONG]
    nothing = rollouts.select_groups([mixed], [torch.tensor([False, False])], n_groups=8, G=2)
    assert nothing.rewards.shape == (0, 2) and nothing.texts == []


def test_dynamic_sampling_refills_the_batch_from_fresh_rollouts(tok, monkeypatch):
    queue = [rollouts_of(tok, [RIGHT, RIGHT, RIGHT, WRONG], "20", G=2),  # groups: all right, mixed
             rollouts_of(tok, [WRONG, WRONG, WRONG, WRONG], "20", G=2),  # nothing to learn from
             rollouts_of(tok, [WRONG, RIGHT, RIGHT, WRONG], "20", G=2)]  # two mixed groups
    calls = []
    monkeypatch.setattr(rollouts, "sample_groups", lambda *a, **k: calls.append(1) or queue[len(calls) - 1])
    cfg = config.TrainConfig(prompts_per_step=2, group_size=2, dynamic_sampling=True)
    problems = [tasks.Problem("q", "", "20")] * 4
    roll, first = rollouts.collect_rollouts(None, tok, problems, cfg, random.Random(0), None)
    assert len(calls) == 3 and first is queue[0]  # logged as sampled; refilled until 2 mixed groups
    assert roll.texts == [RIGHT, WRONG, WRONG, RIGHT] and roll.rewards.shape == (2, 2)
    calls.clear()
    cfg.dynamic_sampling = False
    roll, first = rollouts.collect_rollouts(None, tok, problems, cfg, random.Random(0), None)
    assert len(calls) == 1 and roll is first  # off: one rollout, all groups kept


def test_the_reference_resets_once_per_outer_iteration_and_every_n_steps():
    due = lambda **kw: [s for s in range(12) if train.reset_reference(s, config.TrainConfig(rl_steps=12, **kw))]
    assert due() == []  # one iteration: the reference stays the SFT model
    assert due(iterations=3) == [4, 8]  # Algorithm 1 with I = 3
    assert due(ref_reset_every=5) == [5, 10]  # R1: every N steps
    assert due(iterations=2, ref_reset_every=4) == [4, 6, 8]


def update_once(tok, **cfg_kw):
    roll = rollouts_of(tok, [RIGHT, WRONG], "20", G=2)
    cfg = config.TrainConfig(**cfg_kw)
    policy = tiny_model(tok.get_vocab_size())
    ref = tiny_model(tok.get_vocab_size())
    ref.load_state_dict(policy.state_dict())
    prompt_ids, prompt_valid = left_pad(roll.prompts, tasks.PAD_ID, "cpu")
    logp = lambda: grpo.masked_sum(grpo.completion_logprobs(policy, prompt_ids, prompt_valid, roll.ids, roll.mask),
                                   roll.mask, dim=-1)
    before = logp().detach()
    optimizer = optim.make_optimizer(policy, cfg.rl_lr, cfg.weight_decay)
    adv = rollouts.advantages(roll, tok, cfg)
    stats = train.grpo_update(train.RLModels(policy, ref, optimizer), roll, adv, cfg, "cpu",
                              torch.Generator().manual_seed(0))
    return before, logp().detach(), stats


def test_a_single_update_has_ratio_one_and_moves_log_probs_the_way_the_advantages_say(tok):
    before, after, stats = update_once(tok, rl_lr=1e-2, kl_coef=0.04)
    assert stats["ratio_mean"] == 1.0 and stats["clip_frac"] == 0.0 and stats["kl"] == 0.0  # pi = pi_old = pi_ref
    assert after[0] > before[0]  # the right answer (A > 0) became more likely
    # ... and more likely relative to the wrong one (A < 0), which shares most of its tokens
    assert after[0] - after[1] > before[0] - before[1] + 0.5
    assert stats["grad_norm"] > 0 and stats["entropy"] > 0


def test_several_updates_per_rollout_move_the_ratio_and_the_clip_acts(tok):
    _, _, stats = update_once(tok, rl_lr=3e-2, mu=4, minibatches=2, clip_eps_low=0.05)
    assert stats["ratio_max"] > 1.05 or stats["ratio_min"] < 0.95
    assert stats["clip_frac"] > 0
    assert stats["kl"] > 0  # the policy has left the reference


def test_overlong_filtering_removes_truncated_rows_from_the_loss(tok):
    roll = rollouts_of(tok, [RIGHT, WRONG], "20", G=2)
    roll.truncated[1] = True
    mask = grpo.completion_mask(roll.mask, roll.truncated, overlong_filter=True)
    assert mask[0].equal(roll.mask[0]) and not mask[1].any()


@pytest.mark.parametrize("flag, value, words", [("--rl", "ppo2", "allowed values are grpo, ppo, none"),
                                               ("--adv_scale", "global", "allowed values are group"),
                                               ("--agg", "sum", "allowed values are seq_mean"),
                                               ("--std_ddof", "2", "allowed values are 0, 1"),
                                               ("--dynamic_sampling", "maybe", "not a boolean"),
                                               ("--group_size", "0", "must be >= 1"),
                                               ("--group_size", "1", "so G >= 2"),
                                               ("--temperature", "0", "must be > 0"),
                                               ("--top_p", "1.5", "must be <= 1"),
                                               ("--reward_wrong", "1", "must be below 1"),
                                               ("--minibatches", "1000", "more than the 128 completions"),
                                               ("--micro_batch", "-1", "must be >= 0"),
                                               ("--forward_chunk", "-2", "must be >= 0"),
                                               ("--overlong_cache", "200", "must be <= --max_new_tokens"),
                                               ("--init_from", "/nowhere", "no such checkpoint directory")])
def test_bad_grpo_flags_are_errors_that_name_the_flag(flag, value, words, capsys):
    with pytest.raises(SystemExit):
        config.parse_config([flag, value, "--max_new_tokens", "96"])  # a budget set by hand, checked at parse time
    err = capsys.readouterr().err
    assert flag in err and words in err


def test_boolean_flags_take_true_and_false():
    assert config.parse_config(["--dynamic_sampling", "true", "--overlong_filter", "0"]).dynamic_sampling is True
    assert config.parse_config(["--dynamic_sampling", "False"]).dynamic_sampling is False


def test_smoke_pipeline_runs_sft_then_grpo_logs_every_step_and_prints_the_table(tmp_path, capsys):
    out = str(tmp_path / "run")
    result = train.main(["--preset", "smoke", "--out_dir", out, "--dynamic_sampling", "true",
                         "--overlong_filter", "true", "--mu", "2", "--minibatches", "2"])
    for stage in ("sft", "grpo"):
        assert set(os.listdir(os.path.join(out, stage))) >= {"model.safetensors", "tokenizer.json"}
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    steps = [r for r in records if r["stage"] == "grpo" and "reward" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for key in ("reward", "accuracy", "reward_std", "zero_std_frac", "length", "truncated_frac", "step_s",
                "rollout_s", "rollout_tok_s"):
        assert all(key in r for r in steps), key
    for r in steps:  # the mean length of right and of wrong completions; null when there are none
        assert (r["length_right"] is None) == (r["accuracy"] == 0) and (r["length_wrong"] is None) == (r["accuracy"] == 1)
        assert all(v is None or 1 <= v <= 48 for v in (r["length_right"], r["length_wrong"]))  # smoke: 48 new tokens
    evals = [r for r in records if r["stage"] == "grpo" and "eval_pass_at_1" in r]
    assert all(0 <= r["eval_shows_work"] <= 1 for r in evals)
    assert [r["step"] for r in evals] == [0, 2, 4] and all("eval_pass_at_2" in r for r in evals)
    assert all(0 <= r["eval_cons_at_2"] <= r["eval_pass_at_2"] for r in evals)  # a majority answer is a sampled one
    printed = capsys.readouterr().out
    assert "| pass_at_1 " in printed and "| pass_at_2 " in printed and "grpo    4 |" in printed
    assert records[-1]["stage"] == "final" and set(result) >= {"sft", "grpo", "minutes"}


def test_init_from_refuses_a_checkpoint_trained_on_another_split(tmp_path):
    out = str(tmp_path / "run")
    train.main(["--preset", "smoke", "--out_dir", out, "--rl", "none"])
    with pytest.raises(SystemExit, match="trained with --seed 0"):
        train.main(["--preset", "smoke", "--out_dir", str(tmp_path / "b"), "--init_from", os.path.join(out, "sft"),
                    "--seed", "1"])
    # the same split is fine, and skips SFT
    result = train.main(["--preset", "smoke", "--out_dir", str(tmp_path / "c"), "--init_from", os.path.join(out, "sft"),
                         "--rl_steps", "1"])
    assert "grpo" in result
