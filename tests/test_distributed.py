"""Several processes, one run (distributed.py, torchrun): two CPU processes with gloo learn exactly what one process
learns from the same global batch, only rank 0 writes, a killed two-process run resumes to the same weights, and
what cannot be split is refused naming the flag.

The reference for two processes is one process with --rollout_shards 2: it samples each step's groups in the same
two shards, each from the same random stream as the process that samples it there, so both runs see the same
completions and any difference in the weights comes from how the gradient is put together.
"""

import os
import signal
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

import checkpoint
import distributed
from config import TrainConfig, check_processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# SFT checkpoints at steps 3 and 6, GRPO at 2 and 4; the overlong penalty gives groups unequal rewards from the
# first step (the smoke model never answers right), so GRPO's gradient is not zero.
TINY = ["--preset", "smoke", "--n_train", "500", "--sft_steps", "6", "--eval_every", "3", "--eval_n", "6",
        "--rl_steps", "4", "--rl_eval_every", "2", "--rl_eval_n", "6", "--threads", "1", "--rl_lr", "1e-3",
        "--pass_k", "2", "--reward_overlong", "1", "--overlong_cache", "40"]
TOLERANCE = 1e-5  # the largest difference allowed in any weight: the float sums run in another order
TIMING = {"time", "step_s", "rollout_s", "reward_s", "logprob_s", "update_s", "adv_s", "rollout_tok_s", "minutes",
          "memory", "models"}
RUNNER = """
import os, signal, sys
sys.path.insert(0, {root!r})
import checkpoint, distributed, train
stop_at = {stop_at!r}
log = checkpoint.Metrics.log
def stopping_log(self, **record):
    log(self, **record)
    if stop_at and (record.get("stage"), record.get("step")) == tuple(stop_at[:2]) and stop_at[2] in record:
        os.kill(os.getpid(), signal.SIGKILL)  # rank 0 dies; torchrun then stops rank 1
checkpoint.Metrics.log = stopping_log
train.main(sys.argv[1:])
"""


def torchrun(tmp_path, out_dir, *extra, stop_at=None) -> subprocess.CompletedProcess:
    """train.py TINY + extra under torchrun with 2 CPU processes (gloo); stop_at=(stage, step, key): rank 0 sends
    itself SIGKILL right after logging that record."""
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(root=ROOT, stop_at=stop_at))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           *TINY, "--out_dir", str(out_dir), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def one_process(out_dir, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "train.py", *TINY, "--out_dir", str(out_dir), *extra],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def weights(out_dir, stage) -> dict:
    return load_file(os.path.join(out_dir, stage, "model.safetensors"))


def records(out_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING and not k.endswith("_mib")}
            for r in checkpoint.read_jsonl(os.path.join(out_dir, "metrics.jsonl"))]


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(two processes, one process sampling the same two shards, one process as usual)."""
    tmp = tmp_path_factory.mktemp("ddp")
    two = torchrun(tmp, tmp / "two")
    assert two.returncode == 0, two.stderr[-3000:]
    one = one_process(tmp / "one", "--rollout_shards", "2")
    assert one.returncode == 0, one.stderr[-3000:]
    plain = one_process(tmp / "plain")
    assert plain.returncode == 0, plain.stderr[-3000:]
    return tmp / "two", tmp / "one", tmp / "plain", two


def test_two_processes_learn_what_one_process_learns_from_the_same_global_batch(runs):
    two, one, plain, _ = runs
    for stage in ("sft", "grpo"):
        assert max_difference(weights(two, stage), weights(one, stage)) < TOLERANCE, stage
    # the shards really are other draws than one stream's: the usual single-process run learnt something else
    assert max_difference(weights(two, "grpo"), weights(plain, "grpo")) > 100 * TOLERANCE
    # GRPO had something to learn (groups with unequal rewards), so equal weights are not equal zeros
    steps = [r for r in records(two) if r.get("stage") == "grpo" and "reward" in r]
    assert len(steps) == 4 and any(r["zero_std_frac"] < 1 and r["grad_norm"] > 0 for r in steps)


def test_the_log_of_two_processes_covers_the_whole_batch_as_one_process_s_does(runs):
    two, one, _, _ = runs
    a, b = records(two), records(one)
    assert [(r.get("stage"), r.get("step")) for r in a] == [(r.get("stage"), r.get("step")) for r in b]
    for ra, rb in zip(a, b):
        for key in ("reward", "accuracy", "zero_std_frac", "length", "truncated_frac", "groups_used", "tokens",
                    "eval_pass_at_1", "eval_shows_work"):
            if key in rb:
                assert ra[key] == pytest.approx(rb[key], abs=1e-6), (ra.get("stage"), ra.get("step"), key)
        for key in ("loss", "grad_norm", "entropy", "kl"):
            if key in rb:
                assert ra[key] == pytest.approx(rb[key], rel=1e-4, abs=1e-6), (ra.get("stage"), ra.get("step"), key)
    assert sum(r.get("groups_used", 0) for r in a) == 4 * 4  # all 4 groups of every step, not one process's 2


def test_only_rank_0_speaks_and_writes(runs):
    two_dir, _, _, two = runs
    assert two.stdout.count("held-out results on") == 1  # one final table, not one per process
    assert sorted(os.listdir(two_dir)) == sorted(["metrics.jsonl", checkpoint.RESUME_FILE, "sft", "grpo"])
    assert len([r for r in records(two_dir) if r.get("stage") == "final"]) == 1


def test_a_killed_two_process_run_resumes_to_the_same_weights(runs, tmp_path):
    two, _, _, _ = runs
    out = tmp_path / "killed"
    first = torchrun(tmp_path, out, stop_at=("grpo", 3, "reward"))  # killed in GRPO step 3: the checkpoint is step 2
    assert first.returncode != 0
    point = checkpoint.load(str(out))
    assert (point.stage, point.step) == ("grpo", 2)
    second = torchrun(tmp_path, out)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "from grpo step 2" in second.stdout
    for stage in ("sft", "grpo"):
        wa, wb = weights(out, stage), weights(two, stage)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), stage  # the same processes, the same sums: exactly
    assert records(out) == records(two)


def _collectives(rank: int, world: int, port: int, out) -> None:
    """Run in each of `world` spawned processes: distributed.py's collectives over gloo."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    items = list(range(7))
    mine = distributed.shard(items)
    back = distributed.gather([f"text {i}" for i in mine])  # e.g. each process's completions of its questions
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(0.0)
    model(torch.full((1, 2), float(rank + 1))).sum().backward()  # d/dw = rank + 1 on each weight
    distributed.all_reduce_grads(model)
    out[rank] = dict(mine=mine, back=back, grad=model.weight.grad.tolist(), bias=model.bias.grad.item(),
                     total=distributed.sum_all(rank + 1), any=distributed.any_rank(rank == 1),
                     none=distributed.any_rank(False), shared=distributed.broadcast(f"from {rank}"))
    torch.distributed.destroy_process_group()


def test_the_collectives_shard_gather_sum_and_broadcast_across_two_processes():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_collectives, args=(2, port, out), nprocs=2, join=True)
    a, b = out[0], out[1]
    assert a["mine"] == [0, 2, 4, 6] and b["mine"] == [1, 3, 5]  # every world-th item
    assert a["back"] == b["back"] == [f"text {i}" for i in range(7)]  # back in the order of the whole list
    assert a["grad"] == b["grad"] == [[3.0, 3.0]] and a["bias"] == b["bias"] == 2.0  # (1 + 2) and (1 + 1)
    assert a["total"] == b["total"] == 3.0
    assert a["any"] is b["any"] is True and a["none"] is b["none"] is False
    assert a["shared"] == b["shared"] == "from 0"


def test_with_one_process_the_collectives_change_nothing():
    assert (distributed.world(), distributed.rank(), distributed.is_main()) == (1, 0, True)
    assert distributed.shard([3, 1, 2]) == [3, 1, 2] and distributed.gather([3, 1, 2]) == [3, 1, 2]
    assert distributed.sum_all(2.5) == 2.5 and distributed.any_rank(True) and not distributed.any_rank(False)
    assert distributed.broadcast("x") == "x"
    model = torch.nn.Linear(2, 1)
    model(torch.ones(1, 2)).sum().backward()
    grad = model.weight.grad.clone()
    distributed.all_reduce_grads(model)
    assert torch.equal(model.weight.grad, grad)


@pytest.mark.parametrize("flags, message", [
    (dict(batch_size=15), "--batch_size 15 cannot be split over 2 processes"),
    (dict(prompts_per_step=5), "--prompts_per_step 5 cannot be split into 2 shards"),
    (dict(rollout_shards=4), "--rollout_shards 4 under 2 processes: give 0 or 2"),
    (dict(rl="ppo"), "--rl ppo runs in one process only"),
    (dict(pipeline="r1"), "--pipeline r1 runs in one process only"),
    (dict(adv_scale="batch"), "--adv_scale batch runs in one process only"),
    (dict(sft_minutes=5.0), "--sft_minutes runs in one process only"),
    (dict(dynamic_sampling=True), "--dynamic_sampling refills"),
])
def test_what_two_processes_cannot_split_is_refused_naming_the_flag(flags, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        check_processes(TrainConfig(**flags), world=2)


def test_one_process_sampling_shards_needs_whole_groups_per_shard_and_no_refill():
    check_processes(TrainConfig(rollout_shards=2), world=1)  # 16 questions in 2 shards: fine
    with pytest.raises(ValueError, match="--prompts_per_step 16 cannot be split into 3 shards"):
        check_processes(TrainConfig(rollout_shards=3), world=1)
    with pytest.raises(ValueError, match="--dynamic_sampling refills"):
        check_processes(TrainConfig(rollout_shards=2, dynamic_sampling=True), world=1)


def test_the_readme_s_torchrun_commands_are_runs_their_process_count_can_split():
    import shlex
    from config import parse_config
    lines = [line.split("#")[0] for line in open(os.path.join(ROOT, "README.md"), encoding="utf-8")
             if line.startswith("torchrun ")]
    assert lines, "the README shows the torchrun command"
    for line in lines:
        words = shlex.split(line)
        nproc = int(words[words.index("--nproc_per_node") + 1])
        cfg = parse_config(words[words.index("train.py") + 1:])
        check_processes(cfg, world=nproc)
