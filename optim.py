"""Optimisation, shared by SFT, GRPO and PPO: AdamW, the learning-rate schedules, the gradient clip, and the
guard that stops a run before a NaN reaches the weights.

    make_optimizer   AdamW(betas 0.9, 0.95), weight decay on matrices only      (design: Weight decay on matrices only)
    lr_at            SFT: linear warm-up, then cosine decay to min_lr_ratio * lr (design: Learning-rate schedules)
    rl_lr_scale      RL: linear warm-up, then constant (as DAPO)
    clip_and_step    clip the global gradient norm, one optimizer step; the norm before the clip
    check_finite     NonFiniteError naming the quantity (design: A NaN stops the run before the update)
    autocast         bf16 on CUDA, plain fp32 on CPU
"""

from __future__ import annotations

import math

import torch


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (p.dim() >= 2: embeddings, linear weights), none on norm gains."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # foreach: one kernel per operation over all the tensors instead of one per tensor; the same numbers as the
    # plain loop, bit for bit (tests/test_speed.py), and fewer kernel launches (design: Exact changes, always on)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), foreach=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every parameter group of the optimizer to this learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def sft_progress(step: int, elapsed_s: float, sft_steps: int, sft_minutes: float = 0.0) -> float:
    """How far SFT has got, from 0 to 1: step / sft_steps, or elapsed / sft_minutes if that is further.

    Without a time budget (sft_minutes 0, the default) the run is exactly sft_steps long; with one, on a slow
    machine the budget runs out first, and the schedule still completes its decay, in fewer steps.
    """
    progress = step / sft_steps
    if sft_minutes > 0:
        progress = max(progress, elapsed_s / (60 * sft_minutes))
    return min(1.0, progress)


def lr_at(step: int, progress: float, lr: float, warmup_steps: int, sft_steps: int, min_lr_ratio: float) -> float:
    """SFT's learning rate: linear warm-up over the first warmup_steps steps, then cosine decay from lr down to
    min_lr_ratio * lr as progress goes from warmup_steps / sft_steps to 1 (as nanoGPT)."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    start = warmup_steps / sft_steps
    x = min(1.0, max(0.0, (progress - start) / max(1e-9, 1 - start)))  # 0 -> 1 over the decay
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * x)))


def rl_lr_scale(step: int, warmup_steps: int) -> float:
    """The RL learning rate's factor at (0-based) step: linear warm-up over warmup_steps, then 1 (as DAPO)."""
    return min(1.0, (step + 1) / warmup_steps)


class NonFiniteError(ArithmeticError):
    """A loss, an advantage, a value or a gradient norm is NaN or inf: the run stops before the update."""


def check_finite(name: str, x) -> None:
    """Raise NonFiniteError naming `name` if the number or tensor x holds a NaN or an inf."""
    if isinstance(x, (int, float)):
        if not math.isfinite(x):
            raise NonFiniteError(f"the {name} is {x}")
    elif not bool(torch.isfinite(x).all()):
        raise NonFiniteError(f"the {name} holds a NaN or inf")


def clip_and_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, grad_clip: float) -> float:
    """Clip the gradients already in model (the global norm, to grad_clip; 0: no clip), one optimizer step;
    the norm before the clip. A NaN or inf norm stops the run before the step."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or float("inf")).item()
    check_finite("gradient norm", norm)
    optimizer.step()
    return norm


def autocast(device: str):
    """bf16 autocast on CUDA; plain fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
