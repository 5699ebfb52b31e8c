"""Nothing lost and the same numbers again: a run killed (SIGKILL) or stopped (Ctrl-C) at any point continues
from its last checkpoint and ends with exactly the weights and the metrics of a run that was never stopped;
a checkpoint is never half written; the same seed gives the same run; NaNs stop the run with one clear line;
a stored run that does not match the command, or a corrupt file, is refused with one clear line.

The killed runs are real processes: `python -c` runs train.main with Metrics.log wrapped so that the process
sends itself SIGKILL (or SIGINT) right after writing a chosen record, a deterministic point in the run.
"""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import checkpoint
import optim
import rewards
import sft
import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# SFT: checkpoints at steps 4, 8, 12; GRPO: checkpoints at steps 2, 4. One thread: the same kernels every run.
TINY = ["--preset", "smoke", "--n_train", "500", "--sft_steps", "12", "--eval_every", "4", "--eval_n", "4",
        "--rl_steps", "4", "--rl_eval_every", "2", "--rl_eval_n", "4", "--threads", "1", "--rl_lr", "1e-3"]
TIMING = {"time", "step_s", "rollout_s", "reward_s", "logprob_s", "update_s", "adv_s", "critic_s", "rollout_tok_s",
          "minutes", "memory", "peak_rss_before_mib", "peak_rss_reset", "rss_before_mib"}


def run_process(out_dir, *extra, stop_at=None, sig="SIGKILL", kill_on_replace=None):
    """train.main(TINY + extra) in a new process; stop_at=(stage, step, key): the process signals itself right
    after logging the record of that stage and step that holds `key`. kill_on_replace=n: SIGKILL just before
    the n-th atomic rename of the resume point, its new contents fully written under the temporary name."""
    argv = TINY + ["--out_dir", str(out_dir), *extra]
    code = f"""
import os, signal, sys
sys.path.insert(0, {ROOT!r})
import checkpoint, train
stop_at, renames = {stop_at!r}, [0]
log = checkpoint.Metrics.log
def stopping_log(self, **record):
    log(self, **record)
    if stop_at and (record.get("stage"), record.get("step")) == stop_at[:2] and stop_at[2] in record:
        os.kill(os.getpid(), signal.{sig})
checkpoint.Metrics.log = stopping_log
replace = os.replace
def killing_replace(src, dst):
    if dst.endswith(checkpoint.RESUME_FILE):
        renames[0] += 1
        if renames[0] == {kill_on_replace!r}:
            os.kill(os.getpid(), signal.SIGKILL)
    replace(src, dst)
checkpoint.os.replace = killing_replace
train.main({argv!r})
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


def metrics(out_dir) -> list[dict]:
    """The run's records without the fields that measure time or memory (they differ from run to run)."""
    records = checkpoint.read_jsonl(os.path.join(out_dir, "metrics.jsonl"))
    return [{k: v for k, v in r.items() if k not in TIMING and not k.endswith("_mib")} for r in records]


def weights(out_dir, stage="grpo") -> dict:
    return load_file(os.path.join(out_dir, stage, "model.safetensors"))


def assert_same_run(a, b):
    assert metrics(a) == metrics(b)
    for stage in ("sft", "grpo"):
        wa, wb = weights(a, stage), weights(b, stage)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), stage


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    done = run_process(out)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_a_run_killed_in_sft_and_again_in_grpo_resumes_to_the_same_weights_and_metrics(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    first = run_process(out, stop_at=("sft", 10, "loss"))  # SIGKILL at SFT step 10: the last checkpoint is step 8
    assert first.returncode == -signal.SIGKILL
    point = checkpoint.load(str(out))
    assert (point.stage, point.step, point.done) == ("sft", 8, False)
    second = run_process(out, stop_at=("grpo", 3, "reward"))  # resumes at SFT step 8; SIGKILL at GRPO step 3
    assert second.returncode == -signal.SIGKILL and "resuming" in second.stdout and "from sft step 8" in second.stdout
    assert (checkpoint.load(str(out)).stage, checkpoint.load(str(out)).step) == ("grpo", 2)
    third = run_process(out)  # resumes at GRPO step 2 and finishes
    assert third.returncode == 0, third.stderr[-2000:]
    assert_same_run(out, uninterrupted)
    steps = [(r["stage"], r["step"]) for r in metrics(out) if "loss" in r or "reward" in r]
    assert len(steps) == len(set(steps))  # no step logged twice ...
    assert [s for st, s in steps if st == "grpo"] == [1, 2, 3, 4]  # ... and none missing


def test_ctrl_c_saves_after_the_step_in_progress_says_how_to_resume_and_the_resumed_run_is_the_same(
        uninterrupted, tmp_path):
    out = tmp_path / "stopped"
    first = run_process(out, stop_at=("grpo", 3, "reward"), sig="SIGINT")  # Ctrl-C during GRPO step 3's log
    assert first.returncode == 130
    assert "stopped after GRPO step 3" in first.stdout and "resume it with the same command" in first.stdout
    point = checkpoint.load(str(out))
    assert (point.stage, point.step, point.evaluate) == ("grpo", 3, False)  # step 3 finished, no evaluation due
    second = run_process(out)
    assert second.returncode == 0, second.stderr[-2000:]
    assert_same_run(out, uninterrupted)


def test_a_kill_while_the_resume_point_is_being_replaced_leaves_the_previous_one_whole(uninterrupted, tmp_path):
    out = tmp_path / "mid_write"
    # renames of the resume point: SFT steps 4, 8, 12, then GRPO steps 2, 4: kill at the 4th (GRPO step 2)
    first = run_process(out, kill_on_replace=4)
    assert first.returncode == -signal.SIGKILL
    assert os.path.exists(out / (checkpoint.RESUME_FILE + ".tmp"))  # the new point was complete but not in place
    point = checkpoint.load(str(out))
    assert (point.stage, point.step) == ("sft", 12)  # the previous point, whole
    second = run_process(out)
    assert second.returncode == 0, second.stderr[-2000:]
    assert_same_run(out, uninterrupted)


def test_the_same_seed_gives_the_same_run_and_another_seed_another(tmp_path):
    a = train.main(TINY + ["--out_dir", str(tmp_path / "a")])
    b = train.main(TINY + ["--out_dir", str(tmp_path / "b")])
    c = train.main(TINY + ["--out_dir", str(tmp_path / "c"), "--seed", "1"])
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert all(torch.equal(x, y) for x, y in zip(weights(tmp_path / "a").values(), weights(tmp_path / "b").values()))
    assert metrics(tmp_path / "a") != metrics(tmp_path / "c")
    assert a["stage"] == b["stage"] == c["stage"] == "final"


def test_a_finished_run_is_not_run_again_and_resume_false_starts_it_over(tmp_path, capsys):
    out = str(tmp_path / "run")
    first = train.main(TINY + ["--out_dir", out, "--rl", "none"])
    size = os.path.getsize(os.path.join(out, "metrics.jsonl"))
    again = train.main(TINY + ["--out_dir", out, "--rl", "none"])
    assert again == first and os.path.getsize(os.path.join(out, "metrics.jsonl")) == size  # read back, not rerun
    assert "this run has finished" in capsys.readouterr().out
    records = metrics(out)
    with pytest.MonkeyPatch.context() as patch:  # --resume false, then a crash before the new first checkpoint
        patch.setattr(sft, "run_sft", lambda *a, **k: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            train.main(TINY + ["--out_dir", out, "--rl", "none", "--resume", "false"])
    assert checkpoint.load(out) is None  # the old run's point is gone: nothing to resume against the new metrics
    over = train.main(TINY + ["--out_dir", out, "--rl", "none", "--resume", "false"])
    assert over["eval_pass_at_1"] == first["eval_pass_at_1"] and over["stage"] == "final"
    assert metrics(out) == records  # the same numbers again, the metrics file written afresh, not appended to


def test_a_stored_run_with_another_config_is_refused_with_the_flags_that_differ(tmp_path):
    out = str(tmp_path / "run")
    run_process(out, stop_at=("sft", 6, "loss"))
    with pytest.raises(SystemExit, match=r"another config \(--lr 0.002 -> 0.001\).*--resume false"):
        train.main(TINY + ["--out_dir", out, "--lr", "1e-3"])
    # what only changes the speed may differ
    assert train.main(TINY + ["--out_dir", out, "--rl", "none", "--resume", "false", "--sft_steps", "2"])


def test_a_run_stored_before_a_flag_existed_resumes_as_if_it_had_the_flag_s_default(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file
    out = str(tmp_path / "run")
    run_process(out, stop_at=("sft", 6, "loss"))
    path = os.path.join(out, checkpoint.RESUME_FILE)
    with safe_open(path, framework="pt") as f:  # the stored config, as code without --recheck_frac wrote it
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    stored = json.loads(meta["train_config"])
    del stored["recheck_frac"]
    save_file(tensors, path, metadata={**meta, "train_config": json.dumps(stored)})
    with pytest.raises(SystemExit, match=r"another config \(--recheck_frac 0.0 -> 0.1; "):
        train.main(TINY + ["--out_dir", out, "--recheck_frac", "0.1"])
    assert train.main(TINY + ["--out_dir", out])["stage"] == "final"  # the same flags: it resumes and ends


def test_a_corrupt_or_truncated_resume_point_is_one_line_naming_the_file(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / checkpoint.RESUME_FILE).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(SystemExit, match=r"resume.safetensors: not a readable resume point .*--resume false"):
        train.main(TINY + ["--out_dir", str(out)])
    train.main(TINY + ["--out_dir", str(out), "--rl", "none", "--sft_steps", "2"] + ["--resume", "false"])
    data = (out / checkpoint.RESUME_FILE).read_bytes()
    (out / checkpoint.RESUME_FILE).write_bytes(data[:len(data) // 2])  # cut in half
    with pytest.raises(SystemExit, match="not a readable resume point"):
        train.main(TINY + ["--out_dir", str(out), "--rl", "none", "--sft_steps", "2"])


def test_a_nan_loss_stops_sft_naming_the_quantity_and_the_step(tmp_path):
    with pytest.raises(SystemExit, match=r"error: the SFT loss holds a NaN or inf at SFT step \d+; nothing was "
                                         r"updated with it"):
        train.main(TINY + ["--out_dir", str(tmp_path / "run"), "--lr", "1e12", "--warmup_steps", "1"])


def test_nan_rewards_stop_grpo_naming_the_advantages_and_the_step(tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    train.main(TINY + ["--out_dir", out, "--rl", "none"])
    monkeypatch.setattr(rewards, "weighted_sum", lambda parts, weights: float("nan"))
    with pytest.raises(SystemExit, match="the advantages holds a NaN or inf at GRPO step 1"):
        train.main(TINY + ["--out_dir", str(tmp_path / "rl"), "--init_from", os.path.join(out, "sft")])


def test_a_nan_gradient_norm_stops_before_the_optimizer_step():
    model = torch.nn.Linear(2, 1)
    before = model.weight.detach().clone()
    model.weight.grad = torch.tensor([[float("nan"), 1.0]])
    model.bias.grad = torch.zeros(1)
    with pytest.raises(optim.NonFiniteError, match="gradient norm is nan"):
        optim.clip_and_step(model, torch.optim.SGD(model.parameters(), lr=1.0), grad_clip=1.0)
    assert torch.equal(model.weight.detach(), before)


def test_metrics_files_keep_only_the_bytes_of_the_resume_point_and_name_a_bad_line(tmp_path):
    path = str(tmp_path / "m.jsonl")
    m = checkpoint.Metrics(path)
    m.log(stage="sft", step=0, loss=1.0)
    keep = m.size()
    m.log(stage="sft", step=10, loss=0.5)
    assert [r["step"] for r in checkpoint.Metrics(path, keep).records()] == [0]
    with open(path, "a") as f:
        f.write('{"stage": "sft", "step": 3\n')
    with pytest.raises(ValueError, match=r"m.jsonl:2: invalid JSON"):
        checkpoint.read_jsonl(path)
