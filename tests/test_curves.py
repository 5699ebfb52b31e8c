"""curves.py: a run's RL curves from its metrics.jsonl, on records written here by hand."""

import json

import pytest

import curves


def step(n, **kw):
    return {"stage": "grpo", "step": n, "reward": kw.pop("reward", 1.0), **kw}


def test_windows_average_each_column_over_the_steps_that_logged_it():
    steps = [step(1, accuracy=0.0, length_by_steps={"1": 10.0}), step(2, accuracy=0.5, length_by_steps={"1": 20.0, "2": 30.0}),
             step(3, accuracy=None, accuracy_recheck=None), step(4, accuracy=1.0, accuracy_recheck=0.5)]
    evals = [{"stage": "grpo", "step": 0, "eval_pass_at_1": 0.1}, {"stage": "grpo", "step": 2, "eval_pass_at_1": 0.3},
             {"stage": "grpo", "step": 4, "eval_pass_at_1": 0.4}]
    rows = curves.windows(steps, evals, 2)
    assert [r["steps"] for r in rows] == [(1, 2), (3, 4)]
    assert rows[0]["accuracy"] == 0.25 and rows[1]["accuracy"] == 1.0  # None left out of the mean, not a zero
    assert rows[0]["acc_recheck"] is None and rows[1]["acc_recheck"] == 0.5
    assert rows[0]["pass@1"] == 0.3 and rows[1]["pass@1"] == 0.4  # step 0's evaluation is before any window
    assert rows[0]["length_by_steps"] == {"1": 15.0, "2": 30.0} and rows[1]["length_by_steps"] == {}
    assert [r["steps"] for r in curves.windows(steps, evals, 3)] == [(1, 3), (4, 4)]  # a short last window
    with pytest.raises(ValueError, match="--every 0 must be >= 1"):
        curves.windows(steps, evals, 0)


def test_rl_steps_picks_the_stage_and_splits_steps_from_evaluations():
    records = [{"stage": "sft", "step": 10, "loss": 1.0}, step(1), {"stage": "grpo", "step": 1, "eval_pass_at_1": 0.2},
               {"stage": "stage4", "step": 1, "reward": 2.0}]
    stage, steps, evals = curves.rl_steps(records)
    assert stage == "grpo" and steps == [step(1)] and evals == [records[2]]
    assert curves.rl_steps(records, "stage4")[1] == [records[3]]
    with pytest.raises(ValueError, match="--stage ppo: not in these metrics; its RL stages: grpo, stage4"):
        curves.rl_steps(records, "ppo")
    with pytest.raises(ValueError, match="no RL stage in these metrics"):
        curves.rl_steps(records[:1])


def test_the_command_prints_a_row_per_window_and_says_where_the_metrics_are_missing(tmp_path, capsys):
    lines = [{"stage": "grpo", "step": 0, "eval_pass_at_1": 0.125}] + [step(n, accuracy=n / 10, format=1.0)
                                                                       for n in range(1, 5)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    rows = curves.main([str(tmp_path), "--every", "2", "--plot", str(tmp_path / "c.png")])
    out = capsys.readouterr().out
    assert len(rows) == 2 and "| 1-2 | 1.000 | 0.150 | 1.000 |" in out and "| 3-4 | 1.000 | 0.350 |" in out
    assert "before the first step 0.125" in out
    assert ("plot: " in out) == (tmp_path / "c.png").is_file()  # drawn, or said why not (no matplotlib)
    with pytest.raises(SystemExit):
        curves.main([str(tmp_path / "none")])
