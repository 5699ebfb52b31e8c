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
