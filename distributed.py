"""Several processes, one run: data parallelism with torchrun (several GPUs, or several CPU processes with gloo).

    torchrun --standalone --nproc_per_node 2 train.py --out_dir runs/ddp     # 2 processes (GPUs, or CPU with gloo)

Every process ("rank") holds the whole model and builds the same data; each step's global batch is cut into one
shard per rank, and the ranks meet only where the numbers must agree:

    setup / teardown        the process group from torchrun's environment (gloo on CPU, NCCL on CUDA), or none
    rank, world, is_main    who this process is; only rank 0 prints, writes metrics and writes checkpoints
    shard                   a rank's part of a list: every world-th item (a step's groups: rollouts.py's shards)
    gather                  the shards back, on every rank, in the order of the whole list
    all_reduce_grads        the gradient of the global batch: the sum of every rank's gradient
    sum_all, any_rank       a number summed over the ranks; True if any rank says so (a Ctrl-C, a time budget)
    broadcast               rank 0's Python object on every rank (the tokenizer it trained)

What DistributedDataParallel does, written out (design: Data parallelism): each rank's loss is its shard's share
of the global batch's loss (the SFT loss divided by the global number of completion tokens, GRPO's micro-batch
weights w_k taken over the global minibatch), so the sum of the ranks' gradients, one all-reduce before each
optimizer step, is exactly the gradient one process computes on the whole batch. Every rank then takes the same
AdamW step from the same weights, so the weights stay the same everywhere without ever being sent. torch's
DistributedDataParallel wrapper does the same all-reduce in buckets overlapped with the backward pass; at this
size one flat all-reduce per step is simpler to read and gives the same numbers.

With one process (plain `python train.py`) every function here is the identity or a no-op, and nothing imports
torch.distributed's process group. Tests: python -m pytest -q tests/test_distributed.py
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist


def world() -> int:
    """The number of processes in the run (1 without torchrun)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank, 0 .. world() - 1 (0 without torchrun)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on rank 0, the one process that prints, writes metrics.jsonl and writes checkpoints."""
    return rank() == 0


def launched() -> int:
    """The world size torchrun asked for (its WORLD_SIZE variable), 1 when started by plain python."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str) -> str:
    """Join the process group torchrun set up, if any; the device this rank computes on.

    device: 'cpu' or 'cuda' as the run chose it. Under torchrun with CUDA each rank takes the GPU of its local rank
    (torch.cuda.set_device, so 'cuda' means that GPU everywhere) and NCCL; on CPU the ranks use gloo. Ranks other
    than 0 send what they print to /dev/null: one process speaks for the run (errors still reach stderr)."""
    if launched() == 1 or dist.is_initialized():
        return device
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    if not is_main():
        sys.stdout = open(os.devnull, "w")
    return device


def teardown() -> None:
    """Leave the process group (after a last barrier, so no rank exits while another still needs it)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(items: list) -> list:
    """This rank's part of `items`: items[rank::world] (SFT's examples, evaluation questions)."""
    return items[rank()::world()]


def gather(part: list) -> list:
    """The inverse of `shard`: every rank's part, interleaved back into the order of the whole list, on every rank."""
    if world() == 1:
        return list(part)
    parts = [None] * world()
    dist.all_gather_object(parts, part)
    out = [None] * sum(map(len, parts))
    for r, p in enumerate(parts):
        out[r::world()] = p
    return out


def gather_objects(obj) -> list:
    """[rank 0's obj, rank 1's obj, ...] on every rank ([obj] with one process)."""
    if world() == 1:
        return [obj]
    parts = [None] * world()
    dist.all_gather_object(parts, obj)
    return parts


def all_reduce_grads(model: torch.nn.Module) -> None:
    """Each parameter's .grad <- the sum over the ranks of their .grad: one all-reduce of all of them, flattened.
    A parameter without a gradient on a rank counts as zeros there."""
    if world() == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def sum_all(value: float) -> float:
    """value summed over the ranks (float64 on the CPU for gloo; on the GPU for NCCL)."""
    if world() == 1:
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.item()


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is True on any (so that all ranks stop after the same step)."""
    return sum_all(float(bool(flag))) > 0 if world() > 1 else bool(flag)


def broadcast(obj):
    """Rank 0's `obj` on every rank."""
    if world() == 1:
        return obj
    box = [obj if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]
