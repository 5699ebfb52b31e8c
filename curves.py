"""A run's RL curves out of its metrics.jsonl: a table every few steps, and a plot if matplotlib is present.

    python curves.py runs/r1_zero                          # every 10 steps of its RL stage
    python curves.py runs/r1_zero --every 5 --plot runs/r1_zero/curves.png

R1-Zero's paper is read by its curves: the reward, the accuracy, the share of completions in the format, and the
response length over RL steps. GRPO adds its own signal to watch, the share of groups whose rewards are all equal
(they teach nothing). Each row of the table is the mean of `--every` consecutive RL steps:

    reward, accuracy, format      the rollout's mean reward, share right, share the format reward accepts
    zero_std                      the share of groups with equal rewards
    length, truncated             mean completion tokens; the share that ran out of tokens
    recheck, acc_recheck, acc_no  the share that catch a slip ("wait, re-check:"), and the accuracy of those that
                                  do and of those that do not (blank when none did)
    pass@1                        the held-out greedy pass@1 of the last evaluation in the window, if any
    length by steps               mean completion length by the question's number of calculator steps

    rl_steps     the RL step records of one stage (grpo, ppo or stage4)
    windows      the table's rows: means over consecutive steps, a missing value left out of its mean
"""

from __future__ import annotations

import argparse
import os

from checkpoint import read_jsonl

COLUMNS = (("reward", "reward"), ("accuracy", "accuracy"), ("format", "format"), ("zero_std", "zero_std_frac"),
           ("length", "length"), ("truncated", "truncated_frac"), ("recheck", "recheck_frac"),
           ("acc_recheck", "accuracy_recheck"), ("acc_no", "accuracy_no_recheck"))
RL_STAGES = ("grpo", "ppo", "stage4")


def rl_steps(records: list[dict], stage: str | None = None) -> tuple[str, list[dict], list[dict]]:
    """(the stage, its step records, its evaluation records) of a run's metrics: the given RL stage, or the first
    one the run has. A step record has a "reward"; an evaluation record an "eval_pass_at_1"."""
    stages = [s for s in RL_STAGES if any(r.get("stage") == s for r in records)]
    if stage is None:
        if not stages:
            raise ValueError("no RL stage in these metrics (stages: "
                             f"{', '.join(sorted({str(r.get('stage')) for r in records}))})")
        stage = stages[0]
    elif stage not in stages:
        raise ValueError(f"--stage {stage}: not in these metrics; its RL stages: {', '.join(stages) or 'none'}")
    mine = [r for r in records if r.get("stage") == stage]
    return stage, [r for r in mine if "reward" in r], [r for r in mine if "eval_pass_at_1" in r]


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def windows(steps: list[dict], evals: list[dict], every: int) -> list[dict]:
    """One row per `every` consecutive step records: "steps" (first, last), the mean of each column over the steps
    that logged it (None if none did), "pass@1" of the window's last evaluation (None if none), and
    "length_by_steps" {difficulty: mean length}.

    Steps 1-4 with accuracy 0, 0.5, None, 1 and every=2 -> rows (1, 2) accuracy 0.25 and (3, 4) accuracy 1.0.
    """
    if every < 1:
        raise ValueError(f"--every {every} must be >= 1")
    rows = []
    for i in range(0, len(steps), every):
        part = steps[i:i + every]
        first, last = part[0]["step"], part[-1]["step"]
        row = {"steps": (first, last)}
        for name, key in COLUMNS:
            row[name] = _mean([r.get(key) for r in part])
        inside = [e for e in evals if first <= e["step"] <= last]
        row["pass@1"] = inside[-1]["eval_pass_at_1"] if inside else None
        kinds = sorted({k for r in part for k in (r.get("length_by_steps") or {})}, key=int)
        row["length_by_steps"] = {k: _mean([(r.get("length_by_steps") or {}).get(k) for r in part]) for k in kinds}
        rows.append(row)
    return rows


def print_table(rows: list[dict], stage: str, path: str, before: float | None = None) -> None:
    names = [n for n, _ in COLUMNS] + ["pass@1"]
    print(f"{path}: stage {stage}, {rows[-1]['steps'][1]} steps, a row per {rows[0]['steps'][1] - rows[0]['steps'][0] + 1}"
          + (f"; held-out pass@1 before the first step {before:.3f}" if before is not None else ""))
    print("| steps | " + " | ".join(names) + " | length by steps |\n|---|" + "---|" * (len(names) + 1))
    cell = lambda v: "" if v is None else f"{v:.3f}" if v < 10 else f"{v:.1f}"
    for r in rows:
        by = ", ".join(f"{k}: {v:.1f}" for k, v in r["length_by_steps"].items() if v is not None)
        print(f"| {r['steps'][0]}-{r['steps'][1]} | " + " | ".join(cell(r[n]) for n in names) + f" | {by} |")


def plot(rows: list[dict], path: str) -> None:
    """The table's curves against the RL step, four panels; needs matplotlib (optional, imported here)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot; pip install matplotlib for one)")
        return
    x = [r["steps"][1] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    panels = [("rewards", ["reward", "accuracy", "format", "pass@1"]), ("signal", ["zero_std", "truncated"]),
              ("re-checks", ["recheck", "acc_recheck", "acc_no"]), ("length", ["length"])]
    for ax, (title, names) in zip(axes.flat, panels):
        for name in names:
            pts = [(xi, r[name]) for xi, r in zip(x, rows) if r[name] is not None]
            if pts:
                ax.plot(*zip(*pts), marker=".", label=name)
        if title == "length":
            for k in sorted({k for r in rows for k in r["length_by_steps"]}, key=int):
                pts = [(xi, r["length_by_steps"].get(k)) for xi, r in zip(x, rows) if r["length_by_steps"].get(k)]
                if pts:
                    ax.plot(*zip(*pts), linestyle="--", label=f"{k} steps")
        ax.set_title(title)
        ax.set_xlabel("RL step")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="a run directory (holds metrics.jsonl), or a metrics.jsonl file")
    p.add_argument("--stage", default=None, choices=RL_STAGES, help="the RL stage (default: the first the run has)")
    p.add_argument("--every", type=int, default=10, help="RL steps per row")
    p.add_argument("--plot", default="", help="save a plot here (needs matplotlib)")
    args = p.parse_args(argv)
    path = args.run if args.run.endswith(".jsonl") else os.path.join(args.run, "metrics.jsonl")
    if not os.path.isfile(path):
        p.error(f"no metrics at {path}")
    try:
        stage, steps, evals = rl_steps(read_jsonl(path), args.stage)
        if not steps:
            p.error(f"{path}: stage {stage} has no step records yet")
        rows = windows(steps, evals, args.every)
    except ValueError as e:
        p.error(f"{path}: {e}")
    before = next((e["eval_pass_at_1"] for e in evals if e["step"] == 0), None)
    print_table(rows, stage, path, before)
    if args.plot:
        plot(rows, args.plot)
    return rows


if __name__ == "__main__":
    main()
