"""The benchmark scripts run end to end on tiny sizes (their numbers are for the README, not for tests)."""

import bench


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


def test_ppo_benchmark_times_both_algorithms_by_phase_and_lists_their_models(capsys):
    bench.main(["ppo", "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--prompts", "2", "--group", "2",
                "--max_new_tokens", "8", "--steps", "1"])
    out = capsys.readouterr().out
    for words in ("GRPO", "PPO", "rollout", "reward", "advantages", "log-probs", "critic (values at rollout",
                  "update", "PPO / GRPO seconds per step", "models held in memory for PPO", "| critic    |",
                  "| reward    | rule-based"):
        assert words in out, words
    assert "| critic    |" not in out.split("models held in memory for PPO")[0]  # GRPO holds no critic
