"""The benchmark scripts run end to end on tiny sizes (their numbers are for the README, not for tests)."""

import pytest

import bench
import rollouts
import config


def test_sampling_benchmark_reports_equal_tokens_and_a_speed_up(capsys):
    bench.main(["sampling", "--batch", "4", "--new_tokens", "6", "--prompt_len", "6", "--n_layer", "1",
                "--n_head", "2", "--n_embd", "16", "--vocab", "64", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "same greedy tokens: True" in out and "speed-up" in out


def test_grpo_benchmark_splits_the_step_and_fits_the_decode_overhead(capsys):
    bench.main(["grpo", "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--prompts", "2", "--group", "2",
                "--max_new_tokens", "8", "--steps", "1", "--batches", "2", "4"])
    out = capsys.readouterr().out
    for words in ("GRPO step", "rollout", "reward", "logprobs", "update", "completion tokens/s", "bare passes",
                  "fixed overhead"):
        assert words in out, words


def test_step_benchmark_alternates_the_naive_and_the_prompt_once_step_and_prints_their_ratios(capsys, monkeypatch):
    """Steppers with known seconds (naive 2.0 s, --prompt_once 1.0 s a step): the table's ratios follow from them."""
    flags = []

    def fake_stepper(algo, args, problems, tok):
        flags.append(args.prompt_once)
        seconds = 1.0 if args.prompt_once else 2.0
        phases = {k: 0.0 for k in bench.PHASES}
        return None, lambda: dict(step=seconds, tokens=1, **phases)
    monkeypatch.setattr(bench, "rl_stepper", fake_stepper)
    bench.main(["step", "--steps", "2", "--rounds", "2", "--trl", "4"])
    out = capsys.readouterr().out
    assert flags == [False, True, False, True]  # alternated, naive first in each round
    assert out.count("| 1 | 2.000 | 1.000 | 0.50 | 0.50 | 0.25 |") == 1
    assert out.count("| 2 | 2.000 | 1.000 | 0.50 | 0.50 | 0.25 |") == 1
    bench.main(["step", "--steps", "1", "--rounds", "1"])  # without --trl: no TRL columns
    assert "| 1 | 2.000 | 1.000 | 0.50 |\n" in capsys.readouterr().out


def test_ppo_benchmark_times_both_algorithms_by_phase_and_lists_their_models(capsys):
    bench.main(["ppo", "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--prompts", "2", "--group", "2",
                "--max_new_tokens", "8", "--steps", "1"])
    out = capsys.readouterr().out
    for words in ("GRPO", "PPO", "rollout", "reward", "advantages", "log-probs", "critic (values at rollout",
                  "update", "PPO / GRPO seconds per step", "models held in memory for PPO", "| critic    |",
                  "| reward    | rule-based"):
        assert words in out, words
    assert "| critic    |" not in out.split("models held in memory for PPO")[0]  # GRPO holds no critic


def test_summarise_run_reads_the_curve_the_seconds_the_phases_and_the_length_trend():
    recs = [{"stage": "grpo", "models": [], "rss_before_mib": 1.0},
            {"stage": "grpo", "step": 0, "eval_pass_at_1": 0.3, "eval_shows_work": 0.5}]
    for step, (s, length, wrong) in enumerate([(1.0, 40, 30), (2.0, 50, 60), (1.5, 45, None), (0.5, 55, 70),
                                               (1.0, 60, 80)], start=1):
        recs.append({"stage": "grpo", "step": step, "reward": 1.0, "step_s": s, "rollout_s": s / 2, "update_s": s / 4,
                     "length": length, "length_wrong": wrong, "zero_std_frac": 0.2 * step})
    recs += [{"stage": "grpo", "step": 5, "eval_pass_at_1": 0.6, "eval_shows_work": 1.0},
             {"stage": "final", "models": [{"model": "policy", "params": 10}], "memory": {"rss_increase_mib": 5}}]
    r = bench.summarise_run(recs)
    assert r["curve"] == {0: 0.3, 5: 0.6} and r["shows_work"] == {0: 0.5, 5: 1.0}
    assert r["seconds"] == {0: 0.0, 5: 6.0}  # the steps' own seconds, summed
    assert r["phases"]["step"] == 6.0 / 5 and r["phases"]["rollout"] == 3.0 / 5
    assert r["phases"]["critic"] != r["phases"]["critic"]  # GRPO has no critic: NaN, printed as "-"
    assert r["length"] == (40, 60) and r["length_wrong"] == (30, 80)  # first and last fifth (one step each)
    assert abs(r["zero_std"] - 0.6) < 1e-12 and r["steps"] == 5


def test_compare_runs_sft_once_then_grpo_and_ppo_from_it_and_resumes(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    args = ["compare", "--seeds", "0", "--rl_steps", "2", "--out", out, "--no_plot", "--",
            "--preset", "smoke", "--threads", "1"]
    bench.main(args)
    text = capsys.readouterr().out
    assert text.count("$ ") == 3  # SFT, GRPO, PPO
    for words in ("held-out greedy pass@1 by RL step", "| grpo |", "| ppo |", "seconds per RL step by phase",
                  "RSS increase MiB", "wrong answers", "GRPO / PPO: RSS increase"):
        assert words in text, words
    grpo_models = next(line for line in text.splitlines() if line.startswith("| grpo | policy ("))
    ppo_models = next(line for line in text.splitlines() if line.startswith("| ppo | policy ("))
    assert "critic (" not in grpo_models and "critic (" in ppo_models  # 3 models against 4 (the reward: rules)
    assert (tmp_path / "cmp" / "summary.json").exists()
    bench.main(args)  # everything finished: nothing runs again, the tables are printed from the files
    assert "$ " not in capsys.readouterr().out
    # (--sft_from, which reuses given SFT checkpoints, runs as a README command in test_readme.py)


def test_sft_from_names_a_bad_pattern_or_a_missing_checkpoint(tmp_path):
    import pytest
    with pytest.raises(SystemExit, match="only placeholder allowed is {seed}"):
        bench.sft_checkpoint(str(tmp_path / "s{sed}"), 0)
    with pytest.raises(SystemExit, match="no checkpoint directory .*s3 for seed 3"):
        bench.sft_checkpoint(str(tmp_path / "s{seed}"), 3)
    (tmp_path / "s3").mkdir()
    assert bench.sft_checkpoint(str(tmp_path / "s{seed}"), 3) == str(tmp_path / "s3")


def test_memory_benchmark_runs_grpo_and_ppo_in_their_own_processes_from_one_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "mem")
    args = ["memory", "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--prompts", "2", "--group", "2",
            "--max_new_tokens", "8", "--steps", "1", "--micro_batch", "1", "--forward_chunk", "2", "--out", out,
            "--", "--threads", "1", "--vocab_size", "300"]
    bench.main(args)
    text = capsys.readouterr().out
    assert text.count("$ ") == 3 and "--rl none" in text  # the checkpoint, then GRPO and PPO from it
    assert "--micro_batch 1 --forward_chunk 2" in text
    grpo_row = next(line for line in text.splitlines() if line.startswith("| grpo | policy ("))
    ppo_row = next(line for line in text.splitlines() if line.startswith("| ppo | policy ("))
    assert "critic (" not in grpo_row and "critic (" in ppo_row
    for words in ("peak memory of an RL step", "increase with the policy", "GRPO / PPO: peak RSS"):
        assert words in text, words
    import json
    import os
    (settings,) = os.listdir(tmp_path / "mem")  # one folder per setting: L1_H2_D16_B2_G2_T8_mb1_fc2_steps1_seed0
    assert settings.startswith("L1_H2_D16_B2_G2_T8_mb1_fc2")
    summary = json.load(open(tmp_path / "mem" / settings / "summary.json"))
    for algo in ("grpo", "ppo"):
        memory = summary[algo]["memory"]
        assert memory["peak_rss_mib"] >= memory["rss_before_mib"] > 0 and memory["rss_before_policy_mib"] > 0
        assert memory["rss_increase_with_policy_mib"] == round(memory["peak_rss_mib"] - memory["rss_before_policy_mib"],
                                                               1)
    bench.main(args)  # finished runs are not run again
    assert "$ " not in capsys.readouterr().out


def test_each_named_variant_is_what_its_paper_writes():
    """bench.VARIANTS' flags, parsed as train.py parses them: DAPO's reward is its +1/-1 accuracy alone (Eq. 7) plus
    the soft overlong penalty (Eq. 13), with clip-higher, token-mean loss, dynamic sampling and no KL; Dr. GRPO has
    no std and a constant normaliser; process supervision is DeepSeekMath 4.1.3's step rewards alone."""
    import rewards
    import train
    cfg = {name: config.parse_config(flags) for name, flags in bench.VARIANTS.items()}
    dapo = cfg["dapo"]
    assert (dapo.clip_eps_low, dapo.clip_eps_high, dapo.agg, dapo.kl_coef) == (0.2, 0.28, "token_mean", 0.0)
    assert dapo.dynamic_sampling and dapo.overlong_filter
    weights = rollouts.reward_weights(dapo)
    right = " <think> 2+3 = <<2+3=5>>5 </think> <answer> 5 </answer>"
    total = lambda text, length: rewards.total_reward(text, "5", weights, length, 96, dapo.overlong_cache)
    # +1 right, -1 wrong, whatever the format; -1 more for a completion at the generation budget (L_max = 96)
    wrong, unformatted = right.replace("5 </answer>", "6 </answer>"), "2+3 = 5\n#### 5"
    assert (total(right, 20), total(wrong, 20), total(unformatted, 20)) == (1.0, -1.0, 1.0)
    assert total(right, 96) == 0.0 and total("", 96) == -2.0
    dr = cfg["dr_grpo"]
    assert (dr.adv_scale, dr.agg, dr.kl_coef) == ("none", "constant", 0.0)
    process = cfg["process"]
    assert (process.supervision, process.process_outcome) == ("process", "none")
    assert cfg["grpo"] == config.parse_config([])  # DeepSeekMath's GRPO is the default
