"""Stage 1 of the DeepSeek-R1 pipeline, cold-start SFT: supervised fine-tuning on worked solutions.

R1 fine-tunes a pretrained base model on thousands of long chains of thought in its output format,
`<think> reasoning </think> <answer> answer </answer>`. Here the model is trained from scratch on generated
problems, so this stage is also its pre-training (design: SFT from scratch).

    sft_examples       (prompt ids, completion ids) per problem: the worked solution, or with --sft_direct_frac
                       the answer alone with an empty <think> block (design: Mixed cold start)
    cold_start_examples  stage 1's examples: those of the first --sft_problems training problems
    fitting            the examples that fit in --max_seq_len (the rest dropped, and said)
    sft_batch_indices  the examples of step s, drawn from (seed, s) alone (design: Randomness per step)
    sft_batch          right-padded inputs, targets and the mask of completion tokens
    completion_loss    cross-entropy on the completion tokens only (design: Completion-only loss)
    sft_step           loss -> backward -> clip -> AdamW step
    run_sft            the loop: a warm-up and cosine schedule, a checkpoint then a held-out evaluation every
                       eval_every steps, Ctrl-C and resume (checkpoint.py)
"""

from __future__ import annotations

import random
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import checkpoint
import distributed
import tasks
from checkpoint import Interrupted, Run, StopRequest, step_rng
from optim import NonFiniteError, autocast, check_finite, clip_and_step, lr_at, make_optimizer, set_lr, sft_progress
from sample import greedy_pass_at_1


def sft_examples(problems, prompts, worked, tok, max_len: int, direct_frac: float = 0.0,
                 seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids + EOS) per problem; examples longer than max_len are dropped, and said.
    A fraction direct_frac of the targets, drawn with their own seed, give the answer alone with an empty
    <think> block (design: Mixed cold start)."""
    rng = random.Random(f"{seed}-direct")
    show = [rng.random() >= direct_frac for _ in problems]
    direct = iter(tok.encode_batch([tasks.format_completion(p, False) for p, s in zip(problems, show) if not s],
                                   add_special_tokens=False))
    eos = tasks.eos_id(tok)
    examples = [(p, w if s else next(direct).ids + [eos]) for p, w, s in zip(prompts, worked, show)]
    return fitting(examples, max_len)


def cold_start_examples(train, prompts, worked, tok, cfg) -> list[tuple[list[int], list[int]]]:
    """Stage 1's examples: sft_examples of the first --sft_problems training problems (0: all of them), with the
    run's --sft_direct_frac. RL still draws its questions, answer-only, from every training problem."""
    n = cfg.sft_problems or len(train)
    return sft_examples(train[:n], prompts[:n], worked[:n], tok, cfg.max_seq_len, cfg.sft_direct_frac, cfg.seed)


def fitting(examples, max_len: int, what: str = "example") -> list[tuple[list[int], list[int]]]:
    """The (prompt, completion) examples whose whole sequence fits in max_len positions; how many were dropped is
    said, and none fitting is a ValueError naming the flag."""
    kept = [e for e in examples if len(e[0]) + len(e[1]) <= max_len]
    if len(kept) < len(examples):
        print(f"dropped {len(examples) - len(kept)} of {len(examples)} {what}s longer than --max_seq_len {max_len}")
    if not kept:
        raise ValueError(f"every {what} is longer than --max_seq_len {max_len}; raise it, or give 0 to size it "
                         "from the data")
    return kept


def sft_batch_indices(lengths: list[int], batch_size: int, step: int, seed: int, group: int = 1,
                      stage: str = "sft") -> list[int]:
    """The example indices of SFT step `step`, a function of (seed, step) alone (design: Randomness per step).

    group=1: batch_size examples at random. group > 1: draw group * batch_size examples for the `group` steps
    step // group * group, ..., sort them by length and cut them into `group` batches in random order
    (less padding, but slower learning on arithmetic: design: Plain random SFT batches).
    """
    if len(lengths) < batch_size:
        raise ValueError(f"--batch_size {batch_size} is larger than the {len(lengths)} training examples")
    rng = step_rng(seed, stage, step // group)
    idx = sorted(rng.sample(range(len(lengths)), min(len(lengths), group * batch_size)), key=lambda i: lengths[i])
    batches = [idx[k:k + batch_size] for k in range(0, len(idx) - batch_size + 1, batch_size)]
    rng.shuffle(batches)
    return batches[step % group % len(batches)]


def sft_batch(examples, idx, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded inputs (B, T), next-token targets (B, T) and the loss mask (B, T), True where the target is
    a completion token: the prompt is given, never predicted."""
    seqs = [examples[i][0] + examples[i][1] for i in idx]
    T = max(len(s) for s in seqs) - 1
    x = torch.full((len(idx), T), tasks.PAD_ID, dtype=torch.long)  # PAD_ID: a filler the mask leaves out, never
    y = torch.full((len(idx), T), tasks.PAD_ID, dtype=torch.long)  # a target (tasks.PAD_ID)
    mask = torch.zeros(len(idx), T, dtype=torch.bool)
    for row, (i, s) in enumerate(zip(idx, seqs)):
        n_prompt = len(examples[i][0])
        x[row, :len(s) - 1] = torch.tensor(s[:-1])
        y[row, :len(s) - 1] = torch.tensor(s[1:])
        mask[row, n_prompt - 1:len(s) - 1] = True  # targets s[n_prompt:], the completion and its EOS
    return x.to(device), y.to(device), mask.to(device)


def completion_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                    n_tokens: int | None = None) -> torch.Tensor:
    """Mean cross-entropy over completion tokens: -(1/N) sum_{masked t} log p(y_t | y_<t).
    N is the mask's count, or n_tokens: under torchrun the global batch's, so that the processes' losses add up
    to the mean over the whole batch (design: Data parallelism)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # the loss in >= fp32 (bf16 autocast)
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")  # (B*T,)
    return (nll * mask.flatten()).sum() / (mask.sum() if n_tokens is None else n_tokens)


def sft_step(model, optimizer, x, y, mask, grad_clip: float, device: str,
             n_tokens: int | None = None) -> tuple[float, float]:
    """One SFT update: loss on the completion tokens -> backward -> clip -> AdamW step; (loss, gradient norm).
    Under torchrun x, y, mask are this process's rows of the batch and n_tokens the batch's completion tokens:
    the gradients are summed over the processes (distributed.all_reduce_grads) before the clip and the step."""
    with autocast(device):
        loss = completion_loss(model(x), y, mask, n_tokens)
    check_finite("SFT loss", loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    distributed.all_reduce_grads(model)
    return distributed.sum_all(loss.item()), clip_and_step(model, optimizer, grad_clip)


def run_sft(model, examples, test, run: Run, point: checkpoint.ResumePoint | None = None, stage: str = "sft",
            steps: int | None = None, lr: float | None = None) -> None:
    """Supervised fine-tuning on (prompt, completion) pairs for `steps` steps (None: sft_steps) at the peak
    learning rate `lr` (None: --lr); every eval_every steps a checkpoint out_dir/<stage>/, then a held-out
    evaluation. With a resume point of this stage (its weights already loaded), it continues from there. Stage 3
    of the R1 pipeline runs it again as "rs_sft"."""
    cfg, steps, peak = run.cfg, steps or run.cfg.sft_steps, lr or run.cfg.lr
    optimizer = make_optimizer(model, peak, cfg.weight_decay)
    start = 0
    if point is not None:
        checkpoint.restore_optimizer(point, "optimizer", optimizer)
        start = point.step
        if point.evaluate:  # the kill came before this step's evaluation was logged
            evaluate_sft(model, test, run, start, stage, steps)
        if point.done:
            return
    save = lambda step, **kw: run.save(stage, step, {"policy": model}, {"optimizer": optimizer}, **kw)
    lengths = [len(p) + len(c) for p, c in examples]
    t0 = time.perf_counter()
    with StopRequest() as stop:
        for step in tqdm(range(start, steps), desc=stage, initial=start, total=steps,
                         dynamic_ncols=True, file=sys.stdout):
            if distributed.any_rank(stop.requested):  # every process stops after the same step
                save(step, evaluate=False, done=False)
                raise Interrupted(f"{stage.upper()} step {step}")
            progress = sft_progress(step, time.perf_counter() - t0, steps, cfg.sft_minutes)
            if progress >= 1.0 and step > start:  # the time budget ran out before the steps did
                tqdm.write(f"sft_minutes={cfg.sft_minutes} reached after {step} of {steps} steps")
                save(step, evaluate=True, done=True)
                return evaluate_sft(model, test, run, step, stage, steps)
            lr = lr_at(step, progress, peak, cfg.warmup_steps, steps, cfg.min_lr_ratio)
            set_lr(optimizer, lr)
            idx = sft_batch_indices(lengths, cfg.batch_size, step, cfg.seed, cfg.length_grouping, stage)
            n_tokens = sum(len(examples[i][1]) for i in idx)  # the batch's completion tokens, on every process
            x, y, mask = sft_batch(examples, distributed.shard(idx), run.device)  # this process's rows
            try:
                loss, grad_norm = sft_step(model, optimizer, x, y, mask, cfg.grad_clip, run.device, n_tokens)
            except NonFiniteError as e:
                raise NonFiniteError(f"{e} at {stage.upper()} step {step + 1}") from None
            if step % 10 == 0 or step == steps - 1:
                run.metrics.log(stage=stage, step=step, loss=loss, lr=lr, grad_norm=grad_norm,
                                time=round(time.perf_counter() - t0, 2))
            if (step + 1) % cfg.eval_every == 0 or step + 1 == steps:
                save(step + 1, evaluate=True, done=step + 1 == steps)  # save, then evaluate
                evaluate_sft(model, test, run, step + 1, stage, steps)


def evaluate_sft(model, test, run: Run, step: int, stage: str = "sft", steps: int | None = None) -> None:
    """Held-out greedy pass@1 on the first eval_n test problems: a log line and a metrics record."""
    cfg, t = run.cfg, time.perf_counter()
    n = min(cfg.eval_n, len(test))
    acc = greedy_pass_at_1(model, run.tok, test[:n], cfg.template, cfg.max_new_tokens)
    model.train()
    tqdm.write(f"{stage} step {step}/{steps or cfg.sft_steps} | held-out pass@1 {acc:.3f} on {n} | "
               f"{time.perf_counter() - t:.0f}s")
    run.metrics.log(stage=stage, step=step, eval_pass_at_1=acc, eval_n=n)
