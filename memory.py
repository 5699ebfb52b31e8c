"""Memory accounting for bench.py and the RL stage's final record: the models held, and the process's memory.

`model_table` counts what each model the RL stage holds costs by itself (weights; gradients and AdamW's two
moments when trained). `baseline` and `record` bracket the RL stage: the RSS before its models are created,
the peak after it, and on CUDA torch's allocator peak (design: Memory accounting). `python bench.py memory`
compares GRPO's two models with PPO's three at one size from these records.
"""

from __future__ import annotations

import os
import sys

import torch

try:
    import resource  # peak memory (getrusage); Unix only
except ImportError:
    resource = None


def model_table(models) -> list[dict]:
    """One row per model the RL stage holds, with its parameter count and the MiB its tensors take.

    A trained model holds its weights, their gradients and AdamW's two moments (4 tensors of its size); a frozen
    one only its weights. Activations, the sampler's KV cache and the Python + torch runtime are not counted:
    `record` measures the process.
    """
    rows = [("policy", "pi_theta, trained", models.policy, True), ("reference", "pi_ref, frozen", models.ref, False)]
    if models.critic is not None:
        rows.append(("critic", "V_psi, trained", models.critic, True))
    if models.reward_model is not None:
        rows.append(("reward", "r_phi, frozen; + rules", models.reward_model, False))
    out = []
    for name, role, model, trained in rows:
        n_bytes = sum(p.numel() * p.element_size() for p in model.parameters()) * (4 if trained else 1)
        out.append(dict(model=name, role=role, params=sum(p.numel() for p in model.parameters()),
                        mib=round(n_bytes / 2 ** 20, 2)))
    if models.reward_model is None:  # the rewards are rules: no model
        out.append(dict(model="reward", role="rule-based: rewards.py", params=0, mib=0.0))
    return out


def format_model_table(rows: list[dict]) -> str:
    """The model_table as a Markdown table with a total row."""
    lines = [f"| {'model':<9} | {'role':<22} | {'parameters':>10} | {'MiB (weights, grads, AdamW)':>27} |",
             f"|{'-' * 11}|{'-' * 24}|{'-' * 12}|{'-' * 29}|"]
    for r in rows + [dict(model="total", role="", params=sum(r["params"] for r in rows),
                          mib=sum(r["mib"] for r in rows))]:
        lines.append(f"| {r['model']:<9} | {r['role']:<22} | {r['params']:>10,} | {r['mib']:>27.2f} |")
    return "\n".join(lines)


def rss_mib() -> float:
    """This process's resident memory now, in MiB (Linux: /proc/self/statm; NaN where that is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20, 1)
    except (OSError, ValueError, AttributeError):
        return float("nan")


def peak_rss_mib() -> float:
    """The process's peak resident memory so far, in MiB: getrusage's ru_maxrss (KiB on Linux, bytes on macOS)."""
    if resource is None:  # Windows
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)


def reset_peak_rss() -> bool:
    """Lower the kernel's peak-RSS mark (VmHWM, which ru_maxrss reports) to the RSS now, so that the next
    ru_maxrss is the peak since this call: Linux >= 4.0, /proc/self/clear_refs. False where that fails."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak RSS; nothing else is cleared
        return True
    except OSError:
        return False


def baseline(device: str) -> dict:
    """Memory just before the RL stage creates its models (reference, critic, optimizers): the RSS now and the
    process's peak so far (SFT's, when it ran here); then the peak marks are reset, RSS (reset_peak_rss) and
    on CUDA torch's peak counter, so that record's peaks are the RL stage's own."""
    out = {"peak_rss_before_mib": peak_rss_mib(), "peak_rss_reset": reset_peak_rss(), "rss_before_mib": rss_mib()}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        out["cuda_allocated_before_mib"] = round(torch.cuda.memory_allocated() / 2 ** 20, 1)
    return out


def record(device: str, before: dict) -> dict:
    """Peak memory of the RL stage, and what the stage added to the process.

    The 0.84M-parameter default model is 3.2 MiB of fp32 weights, 13 MiB with gradients and AdamW's moments,
    while importing Python, torch and tokenizers alone takes ~230 MiB of RSS (torch 2.13 CPU, Linux): the
    process's peak RSS says little about the algorithm. So the RSS just before the stage's models are
    created is recorded (baseline), and rss_increase_mib = the stage's peak RSS - that RSS is the
    stage's own cost (models, optimizer states, activations, the sampler's KV cache). peak_rss_mib is
    getrusage's ru_maxrss after the stage: the stage's own peak where the mark could be reset
    (peak_rss_reset), else the whole process's, and then the increase is an upper bound. And a lower bound
    when SFT ran in the same process: memory SFT freed may still be mapped (the allocator keeps it) and RL
    reuse it; start RL with --init_from for a clean figure. On CUDA: torch.cuda.max_memory_allocated over
    the stage, and its increase over the allocation before it.
    """
    out = {**before, "peak_rss_mib": peak_rss_mib()}
    out["rss_increase_mib"] = round(out["peak_rss_mib"] - before["rss_before_mib"], 1)
    if device == "cuda":
        out["cuda_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
        out["cuda_increase_mib"] = round(out["cuda_peak_allocated_mib"] - before["cuda_allocated_before_mib"], 1)
    return out
