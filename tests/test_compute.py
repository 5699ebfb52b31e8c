"""compute.py: the FLOPs rule against hand-computed numbers, the equal-compute step count, and a run's FLOPs read
back from its folder against the tokens its loops really ran (SFT batches, GRPO rollouts), a run started from
another run counting that run as its start, the SFT steps of a command line that equal a budget, and settings the
counter cannot see refused by name."""

import itertools

import pytest

import checkpoint
import compute
import rollouts
import sft
import tasks
import train
from config import TrainConfig


# ---------------------------------------------------------------------------------------------
# The rule
# ---------------------------------------------------------------------------------------------
def test_flops_are_6n_per_training_token_and_2n_per_forward_only_token():
    assert compute.flops(10, 3, 7) == 6 * 10 * 3 + 2 * 10 * 7 == 320
    assert compute.flops(125_376, 1000, 0) == 752_256_000
    assert compute.flops(125_376, 0, 1000) == 250_752_000


@pytest.mark.parametrize("flags, expected", [
    (dict(kl_coef=0.04), (800, 1600)),  # update 1 x 800; sampling and pi_ref 2 x 800
    (dict(kl_coef=0.0), (800, 800)),  # no KL: no pi_ref pass
    (dict(kl_coef=0.04, mu=2), (1600, 2400)),  # 2 epochs; pi_old recomputed
    (dict(kl_coef=0.04, minibatches=4), (800, 2400)),  # 4 minibatch steps of one epoch: pi_old recomputed
])
def test_a_grpo_step_counts_sampling_pi_ref_pi_old_and_mu_training_passes(flags, expected):
    assert compute.grpo_step_tokens(300, 500, TrainConfig(**flags)) == expected


def examples_of_lengths(lengths):
    """(prompt ids, completion ids) whose lengths add up to each of `lengths`; no token is the pad."""
    return [([5] * 2, [7] * (n - 2)) for n in lengths]


def test_an_sft_step_counts_the_real_input_tokens_of_the_batch_run_sft_draws():
    lengths = [3, 5, 8, 4]
    whole = TrainConfig(batch_size=4, seed=0)  # every example: (3-1) + (5-1) + (8-1) + (4-1)
    assert [compute.sft_step_tokens(lengths, whole, "distill", s) for s in range(3)] == [16, 16, 16]
    examples, cfg = examples_of_lengths([3, 9, 4, 30, 12, 6, 2, 17]), TrainConfig(batch_size=3, seed=1)
    lengths = [len(p) + len(c) for p, c in examples]
    for step in range(6):  # the non-pad inputs of the batch sft.run_sft builds at that step
        x, _, _ = sft.sft_batch(examples, sft.sft_batch_indices(lengths, 3, step, 1, 1, "distill"), "cpu")
        assert compute.sft_step_tokens(lengths, cfg, "distill", step) == int((x != tasks.PAD_ID).sum())


def test_equal_compute_takes_the_step_count_closest_to_the_budget():
    steps = [10, 10, 10, 10]
    assert compute.equal_compute_steps(steps, 26) == (3, 30)
    assert compute.equal_compute_steps(steps, 25) == (2, 20)  # a tie: fewer steps
    assert compute.equal_compute_steps(steps, 24) == (2, 20)
    assert compute.equal_compute_steps(steps, 40) == (4, 40)
    assert compute.equal_compute_steps(steps, 3) == (1, 10)  # at least one step
    assert compute.equal_compute_steps(itertools.repeat(7), 100) == (14, 98)  # endless steps; |98-100| < |105-100|
    with pytest.raises(ValueError, match="short of the budget"):
        compute.equal_compute_steps(steps, 41)


@pytest.mark.parametrize("flags, named", [(dict(rl="ppo"), "--rl ppo"), (dict(dynamic_sampling=True), "--dynamic_sampling"),
                                          (dict(prompt_once=True), "--prompt_once"), (dict(pipeline="r1"), "--pipeline r1"),
                                          (dict(reward_rm=0.5), "--reward_rm"), (dict(rl_mix="arithmetic:1"), "--rl_mix")])
def test_settings_whose_compute_is_not_counted_are_refused_by_name(flags, named):
    compute.check_countable(TrainConfig())
    with pytest.raises(ValueError, match=named):
        compute.check_countable(TrainConfig(**flags))


# ---------------------------------------------------------------------------------------------
# A run's FLOPs, read back from its folder
# ---------------------------------------------------------------------------------------------
RL = ["--preset", "smoke", "--n_train", "300", "--threads", "1", "--rl_steps", "2", "--rl_eval_every", "2",
      "--rl_eval_n", "2", "--pass_k", "1"]
SMOKE = [*RL, "--sft_problems", "120", "--sft_steps", "6", "--eval_every", "3", "--eval_n", "2"]  # worked: 120 of 300


class Killed(Exception):
    """Stands for SIGKILL: raised right after a chosen record is written."""


def counted_run(argv, kill_after=None) -> dict:
    """train.main(argv) with the tokens its loops really ran counted: 'sft' (non-pad inputs of each SFT batch),
    'rollouts' (real prompt + completion tokens of each GRPO rollout), and the policy's parameter count.
    kill_after=(stage, step): Killed right after that evaluation's record (its checkpoint written)."""
    seen = dict(sft=[], rollouts=[])
    sample_groups, sft_batch, log = rollouts.sample_groups, sft.sft_batch, checkpoint.Metrics.log

    def killing_log(self, **record):
        log(self, **record)
        if kill_after and (record.get("stage"), record.get("step")) == kill_after and "eval_pass_at_1" in record:
            raise Killed

    def counted_groups(*a, **k):
        roll = sample_groups(*a, **k)
        seen["rollouts"].append(sum(map(len, roll.prompts)) + int(roll.mask.sum()))
        seen["params"] = a[0].num_params()
        return roll

    def counted_batch(examples, idx, device):
        x, y, mask = sft_batch(examples, idx, device)
        seen["sft"].append(int((x != tasks.PAD_ID).sum()))
        return x, y, mask

    with pytest.MonkeyPatch.context() as m:
        m.setattr(rollouts, "sample_groups", counted_groups)
        m.setattr(sft, "sft_batch", counted_batch)
        m.setattr(checkpoint.Metrics, "log", killing_log)
        try:
            train.main(argv)
        except Killed:
            pass
    return seen


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A smoke run (6 SFT steps, 2 GRPO steps) and a run of 2 GRPO steps --init_from its SFT checkpoint."""
    root = tmp_path_factory.mktemp("compute")
    first, second = str(root / "first"), str(root / "second")
    seen = counted_run([*SMOKE, "--out_dir", first])
    seen_from = counted_run([*RL, "--out_dir", second, "--init_from", f"{first}/sft", "--rl_lr", "1e-4"])
    return first, second, seen, seen_from


def test_a_runs_flops_are_the_tokens_its_loops_really_ran(two_runs):
    first, _, seen, _ = two_runs
    r = compute.run_flops(first)
    n = seen["params"]
    assert r["params"] == n and list(r["stages"]) == ["sft", "grpo"]
    assert r["stages"]["sft"] == dict(steps=6, train_tokens=sum(seen["sft"]), forward_tokens=0,
                                      flops=6 * n * sum(seen["sft"]))
    grpo_tokens = sum(seen["rollouts"])  # smoke: kl_coef 0.04, mu 1, one minibatch: a training pass, 2 forward
    assert len(seen["rollouts"]) == 2 and r["stages"]["grpo"]["steps"] == 2
    assert r["stages"]["grpo"]["flops"] == 6 * n * grpo_tokens + 2 * n * 2 * grpo_tokens
    assert r["start"] is None and r["total"] == 6 * n * (sum(seen["sft"]) + grpo_tokens) + 4 * n * grpo_tokens
    # each held-out evaluation with the FLOPs spent when it was made: SFT's after 3 and 6 steps, GRPO's before
    # its first step (where SFT ended) and after its last (the whole run)
    at = {(e["stage"], e["step"]): e["flops"] for e in r["evaluations"]}
    assert at == {("sft", 3): 6 * n * sum(seen["sft"][:3]), ("sft", 6): r["stages"]["sft"]["flops"],
                  ("grpo", 0): r["stages"]["sft"]["flops"], ("grpo", 2): r["total"]}


def test_a_run_stopped_in_sft_counts_the_steps_up_to_its_resume_point(tmp_path):
    out = str(tmp_path / "stopped")
    seen = counted_run([*SMOKE, "--out_dir", out], kill_after=("sft", 3))
    r = compute.run_flops(out)
    assert len(seen["sft"]) == 3 and "grpo" not in seen
    assert list(r["stages"]) == ["sft", "grpo"] and r["stages"]["grpo"]["steps"] == 0
    assert r["stages"]["sft"]["steps"] == 3 and r["stages"]["sft"]["train_tokens"] == sum(seen["sft"])


def test_a_run_started_from_another_runs_stage_counts_that_run_to_the_stages_end(two_runs):
    first, second, seen, seen_from = two_runs
    r = compute.run_flops(second)
    n = seen["params"]
    assert list(r["stages"]) == ["grpo"] and seen_from["sft"] == []  # no SFT of its own
    # it started from first/sft: the first run's 6 SFT steps, not the 2 GRPO steps that run took after them
    sft_flops = 6 * n * sum(seen["sft"])
    assert r["start"] == dict(run=first, stage="sft", flops=sft_flops)
    assert r["stages"]["grpo"]["flops"] == 10 * n * sum(seen_from["rollouts"])
    assert r["total"] == sft_flops + 10 * n * sum(seen_from["rollouts"])
    at = {(e["stage"], e["step"]): e["flops"] for e in r["evaluations"]}  # counted from the start's FLOPs
    assert at == {("grpo", 0): sft_flops, ("grpo", 2): r["total"]}


def test_a_start_that_is_no_stage_of_its_run_is_refused_by_name(two_runs, monkeypatch):
    first, second, _, _ = two_runs
    load = checkpoint.load

    def started_elsewhere(out_dir):  # the second run, as if started --init_from FIRST/elsewhere
        point = load(out_dir)
        if out_dir == second:
            point.train_config = {**point.train_config, "init_from": f"{first}/elsewhere"}
        return point
    monkeypatch.setattr(checkpoint, "load", started_elsewhere)
    with pytest.raises(ValueError, match="elsewhere is not a stage of .*its stages: sft, grpo"):
        compute.run_flops(second)


def test_the_sft_steps_for_a_budget_are_counted_from_the_command_line_alone(two_runs):
    first, _, seen, _ = two_runs
    n, sft_flops = seen["params"], 6 * seen["params"] * sum(seen["sft"])
    # the same flags, the budget their own 6 SFT steps spent: 6 steps, exactly those FLOPs
    steps, spent, cfg = compute.sft_steps_for(sft_flops, [*SMOKE, "--rl", "none"])
    assert (steps, spent) == (6, sft_flops) and cfg.max_seq_len > 0
    # the whole run's budget buys more SFT steps, within half a step of it
    total = compute.run_flops(first)["total"]
    steps, spent, _ = compute.sft_steps_for(total, [*SMOKE, "--rl", "none"])
    assert steps > 6 and abs(spent - total) <= 6 * n * max(seen["sft"]) / 2


def test_the_command_prints_each_run_against_the_first_and_the_equal_sft_steps(two_runs, capsys):
    first, second, _, _ = two_runs
    results = compute.main([first, second, "--evaluations", "--sft_steps_for", " ".join([*SMOKE, "--rl", "none"])])
    out = capsys.readouterr().out
    assert f"| {first} |" in out and f"| {second} |" in out
    assert f"start {results[0]['stages']['sft']['flops']:.4g} ({first} to the end of sft)" in out
    ratio = results[1]["total"] / results[0]["total"]
    assert f"| {ratio:.3f} |" in out and "stage-1 steps of `python train.py --preset smoke" in out
    last = results[1]["evaluations"][-1]
    assert f"| {second} | grpo | 2 | {last['eval_pass_at_1']:.3f} | 2 | {last['flops']:.4g} | {ratio:.3f} |" in out
    with pytest.raises(SystemExit, match="no resume.safetensors"):
        compute.main([str(first) + "_missing"])
