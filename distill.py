"""Distillation in miniature: a smaller student learns from the R1 pipeline's final model, at the compute RL takes.

    python distill.py runs/r1 --out_dir runs/distill --seed 0     # runs/r1: a finished `python train.py --preset r1`
    python distill.py --help                                      # every flag, with its help line

DeepSeek-R1 (arXiv 2501.12948, §2.4): the ~800k samples curated with DeepSeek-R1 fine-tune smaller dense models
(Qwen, Llama) by SFT alone, with no RL stage. §4.1 (Table 6) sets this against large-scale RL on the same small
base (DeepSeek-R1-Zero-Qwen-32B, over 10K RL steps): "distilling more powerful models into smaller ones yields
excellent results, whereas smaller models relying on the large-scale RL ... require enormous computational power
and may not even achieve the performance of distillation". R1 does not match the two arms' compute; here they are
matched exactly, in FLOPs of the student, so the comparison asks which use of the same student compute is better.
R1-Zero's RL starts from a pretrained base; this student has none, so its RL arm is train.py's stages 1-2.

    load_teacher          the final model of a finished R1 run (rs_sft/, stage 3's), its tokenizer and its config;
                          the data split is rebuilt from that config (sample.rebuild_splits)
    student_config        the same architecture at half the layers and half the width, heads of even width
    verified_traces       the teacher sampled on training questions, judged by rejection.verdict (right, R1 format,
                          not truncated, readable), the kept ones deduplicated (rejection.rejection_sample: a killed
                          run resumes after the last whole batch of its candidates file)
    arm "rl"              the student's own stages 1-2: cold-start SFT on the worked solutions (sft.sft_examples,
                          sft.run_sft, as train.py's stage 1), then GRPO (train.run_rl)
    arm "distill"         the same initial student weights, SFT on the teacher's verified traces (sft.run_sft)
    flops                 student FLOPs (compute.py): 6 N per token of a training pass, 2 N per forward-only token
    equal_compute_steps   the rl arm's FLOPs are the budget; the distill arm runs the number of SFT steps whose
                          FLOPs come closest to it, counted exactly from its batch draws before it starts
    evaluate_arm, report  both students on the same held-out problems with the same draws (sample.evaluate, as
                          train.evaluate_rl: greedy pass@1, pass@k, cons@k, shows-work) with their FLOPs, steps and
                          minutes: a table and the final record

The student inherits every flag of the teacher's stages 1-2 (its data, prompts, lengths, SFT and GRPO settings)
except its size, its steps and its seed; a few are put back to their defaults because they would add compute that
is not the student's or that the counter cannot see (`RESET`). The run is one out_dir like train.py's: checkpoints
sft/ and grpo/ (the rl arm), distill/ (the distill arm), traces/candidates.jsonl, metrics.jsonl and one resume
point, so running the same command again continues a killed run and skips what is done.
The data split is the teacher's while --seed is the student's: `sample.py` rebuilds a checkpoint's split from its
stored seed, so it scores a student checkpoint on the right held-out problems only when --seed is the teacher's.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, fields

import torch
from tokenizers import Tokenizer

import checkpoint
import config
import rejection
import sample
import sft
import tasks
from checkpoint import Run, step_generator, step_rng
from compute import equal_compute_steps, flops, grpo_rollout_tokens, grpo_step_tokens, sft_step_tokens
from config import TrainConfig, opt
from model import TOKENIZER_FILE, WEIGHTS_FILE, ModelConfig, Transformer, load_checkpoint
from train import run_rl

FINAL_STAGES = ("rl_all", "rs_sft")  # a finished R1 run's final model: stage 4's, or stage 3's (--stage4_steps 0)
DISTILL_STAGE = "distill"  # the distill arm's stage: its checkpoint folder, resume point and batch draws
TRACES_DIR = "traces"  # out_dir/traces/candidates.jsonl: every teacher sample and its verdict


@dataclass
class DistillConfig(TrainConfig):
    """A student's run: the teacher's flags of stages 1-2 with the student's size, steps and seed (a
    config.TrainConfig, so sft.run_sft and train.run_rl read it as theirs), plus the distillation's own flags;
    a resume is checked against all of them."""
    teacher: str = opt("", "the teacher: a finished `python train.py --preset r1` run folder")
    teacher_stage: str = opt("", "the teacher's checkpoint in that folder ('': its final model)")
    traces_questions: int = opt(4000, "training questions the teacher answers")
    traces_samples: int = opt(4, "teacher completions sampled per question")
    traces_batch: int = opt(64, "questions per teacher sampling call (a killed run resumes after the last whole one)")


# Flags of the teacher's run that the student does not inherit (their defaults instead): the student runs stages 1-2
# (the later stages are the teacher's), its steps counted, not timed; a learned reward model is not student compute;
# dynamic sampling's refills are rollouts the FLOPs counter does not see (it reads one rollout a step), and a task
# mixture draws the questions otherwise than it does (grpo_rollout_tokens: all training questions alike, as the
# teacher's traces are drawn). Then every flag that would change nothing in the student's run is put back too
# (config.ONLY_WITH: the PPO flags, the later stages' flags).
RESET = ("pipeline", "rl", "init_from", "reward_rm", "reward_model", "dynamic_sampling", "rl_mix", "sft_minutes",
         "rl_minutes")


# ---------------------------------------------------------------------------------------------
# 1. Teacher, student, verified traces
# ---------------------------------------------------------------------------------------------
def load_teacher(folder: str, device: str, stage: str = "") -> tuple[Transformer, Tokenizer, dict]:
    """(model, tokenizer, training config) of a finished R1 run's checkpoint folder/<stage>/, by default ('') its
    final model: stage 4's (rl_all/) if the run has one, else stage 3's (rs_sft/). SystemExit, in one line, for a
    folder that is missing, holds no such checkpoint, or has not finished."""
    what = "give the --out_dir of a finished `python train.py --preset r1` run"
    if not os.path.isdir(folder):
        raise SystemExit(f"error: TEACHER_RUN {folder}: no such folder; {what}")
    stage = stage or next((s for s in FINAL_STAGES if os.path.isfile(os.path.join(folder, s, WEIGHTS_FILE))),
                          FINAL_STAGES[-1])
    path = os.path.join(folder, stage)
    if not os.path.isfile(os.path.join(path, WEIGHTS_FILE)):
        raise SystemExit(f"error: TEACHER_RUN {folder}: no {stage}/ checkpoint (--teacher_stage), the R1 pipeline's "
                         f"final model; {what}")
    metrics = os.path.join(folder, "metrics.jsonl")
    try:
        records = checkpoint.read_jsonl(metrics) if os.path.isfile(metrics) else []
        model, meta = load_checkpoint(path, device)
        tok = Tokenizer.from_file(os.path.join(path, TOKENIZER_FILE))
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: TEACHER_RUN {folder}: {e}") from None
    except Exception as e:  # tokenizers raises its own exception type for a missing or corrupt tokenizer.json
        raise SystemExit(f"error: TEACHER_RUN {path}/{TOKENIZER_FILE}: not a readable tokenizer ({e})") from None
    if not any(r.get("stage") == "final" for r in records):
        raise SystemExit(f"error: TEACHER_RUN {folder} has not finished (no final record in its metrics.jsonl): "
                         "finish it first by running its train.py command again")
    if not (meta or {}).get("train_config"):
        raise SystemExit(f"error: TEACHER_RUN {path}: no train_config in the checkpoint, so its data are unknown")
    return model, tok, meta["train_config"]


def student_config(teacher: ModelConfig, n_layer: int = 0, n_embd: int = 0, n_head: int = 0) -> ModelConfig:
    """The student's architecture: the teacher's (vocabulary, positions, RoPE, norms) with n_layer blocks of width
    n_embd, by default half the teacher's (rounded down), and n_head heads, by default the largest count up to the
    teacher's that splits n_embd into heads of even width (RoPE turns pairs of dimensions). ValueError naming the
    flag when there is no such student.

    >>> c = student_config(ModelConfig(n_layer=4, n_head=4, n_embd=128))
    >>> c.n_layer, c.n_embd, c.n_head, c.n_embd // c.n_head
    (2, 64, 4, 16)
    """
    layers, width = n_layer or teacher.n_layer // 2, n_embd or teacher.n_embd // 2
    if layers < 1:
        raise ValueError(f"--student_layers: half of the teacher's {teacher.n_layer} block is none; give "
                         "--student_layers N (N >= 1)")
    half = "" if n_embd else f" (half the teacher's {teacher.n_embd})"
    if n_head:
        if width % n_head or (width // n_head) % 2:
            raise ValueError(f"--student_embd {width}{half} must split into --student_heads {n_head} heads of even "
                             "width")
        heads = n_head
    else:
        heads = next((h for h in range(teacher.n_head, 0, -1) if width % h == 0 and (width // h) % 2 == 0), 0)
        if not heads:
            raise ValueError(f"--student_embd {width}{half} splits into no heads of even width; give an even "
                             "--student_embd")
    return dataclasses.replace(teacher, n_layer=layers, n_embd=width, n_head=heads)


def run_config(teacher_config: dict, args: argparse.Namespace, student: ModelConfig) -> DistillConfig:
    """The student's DistillConfig: the teacher's flags (those this code knows) but RESET ones and those that would
    change nothing in a GRPO run of stages 1-2 (config.ONLY_WITH), the student's size, the command line's run flags
    and steps (0: the teacher's), and its distillation flags."""
    known, defaults = {f.name for f in fields(TrainConfig)}, asdict(TrainConfig())
    inherited = {k: v for k, v in teacher_config.items() if k in known and k not in RESET}
    changed = [k for k in RESET if k not in ("pipeline", "rl") and teacher_config.get(k, defaults.get(k))
               != defaults.get(k)]  # (a flag this code does not know is left out either way)
    if changed:
        print(f"the student does not inherit the teacher's {', '.join(f'--{k}' for k in changed)} (defaults instead)")
    cfg = DistillConfig(**{**inherited, "rl": "grpo", "n_layer": student.n_layer, "n_embd": student.n_embd,
                            "n_head": student.n_head, "max_seq_len": student.max_seq_len,
                            "out_dir": args.out_dir, "seed": args.seed, "resume": args.resume, "device": args.device,
                            "threads": args.threads, "sft_steps": args.sft_steps or teacher_config["sft_steps"],
                            "rl_steps": args.rl_steps or teacher_config["rl_steps"],
                            "rl_eval_n": args.eval_n or teacher_config["rl_eval_n"], "teacher": args.teacher,
                            "traces_questions": args.traces_questions, "traces_samples": args.traces_samples,
                            "traces_batch": args.traces_batch, "teacher_stage": args.teacher_stage})
    for name, (acts, _) in config.ONLY_WITH.items():
        if not acts(cfg):
            setattr(cfg, name, defaults[name])
    return cfg


def initial_student(student: ModelConfig, seed: int, device: str) -> Transformer:
    """The student's seeded initial weights, the same for both arms (as train.stage3_start rebuilds stage 1's)."""
    torch.manual_seed(seed)
    return Transformer(student).to(device)


def verified_traces(teacher, tok, train: list[tasks.Problem], cfg: DistillConfig, path: str,
                    device: str = "cpu") -> tuple[list[tuple[tasks.Problem, str]], dict]:
    """(kept (problem, completion) pairs, counts): traces_samples teacher completions of each of traces_questions
    training questions (drawn with the seed), at the teacher's rollout temperature, judged by rejection.verdict;
    the accepted ones, deduplicated (rejection.rejection_sample, which writes and resumes the candidates file)."""
    questions = random.Random(f"{cfg.seed}-distill").sample(train, min(cfg.traces_questions, len(train)))
    sampling = dataclasses.replace(cfg, rs_samples=cfg.traces_samples, rs_batch=cfg.traces_batch)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return rejection.rejection_sample(teacher, tok, questions, sampling, rejection.alphabet(train[:20_000]), path,
                                      device)


def sampled_tokens(tok, records: list[dict], template: str) -> int:
    """The tokens the teacher ran forward to sample these candidates (records of the candidates file): each prompt
    (its prefill) and each completion token, the EOS included unless truncated. Counted on the text re-tokenized,
    whose encoding may differ from the sampled tokens by a token here and there: a report, not a budget."""
    prompts = tok.encode_batch([tasks.format_prompt(r["question"], template) for r in records])
    completions = tok.encode_batch([r["completion"] for r in records])
    return sum(len(p.ids) + len(c.ids) + (not r["truncated"]) for p, c, r in zip(prompts, completions, records))


# ---------------------------------------------------------------------------------------------
# 2. Student compute: compute.py's count (flops, sft_step_tokens, grpo_step_tokens, grpo_rollout_tokens,
#    equal_compute_steps), the student's parameters as N
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# 3. The two arms and the table
# ---------------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    """Run the comparison; returns the final metrics record. Errors a user can fix end in one line (SystemExit)."""
    args = parse_args(argv)
    command = "python distill.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    teacher, tok, teacher_config = load_teacher(args.teacher, device, args.teacher_stage)
    try:
        student = student_config(teacher.cfg, args.student_layers, args.student_embd, args.student_heads)
        cfg = run_config(teacher_config, args, student)
        config.check_config(cfg)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    os.makedirs(cfg.out_dir, exist_ok=True)
    return checkpoint.run_to_the_end(lambda: pipeline(cfg, teacher, tok, teacher_config, student, device),
                                     cfg.out_dir, command)


def pipeline(cfg: DistillConfig, teacher, tok, teacher_config: dict, student: ModelConfig, device: str) -> dict:
    """Splits -> verified traces -> the rl arm (cold-start SFT, GRPO) -> its FLOPs, the budget -> the distill arm
    (SFT on the traces, as many steps as the budget buys) -> both evaluated -> the table and the final record."""
    t_start = time.perf_counter()
    try:
        train, test = sample.rebuild_splits(teacher_config, teacher_config["n_train"])  # the teacher's split
        point = checkpoint.resume_point(cfg.out_dir, cfg.resume)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    traces_path = os.path.join(cfg.out_dir, TRACES_DIR, rejection.CANDIDATES_FILE)
    if not cfg.resume and os.path.exists(traces_path):  # start over: the samples too
        os.remove(traces_path)
    if point is not None and checkpoint.check_resume(point, asdict(cfg), asdict(DistillConfig())):
        return [r for r in checkpoint.read_jsonl(os.path.join(cfg.out_dir, "metrics.jsonl"))
                if r.get("stage") == "final"][-1]
    run = Run(cfg, tok, checkpoint.Metrics(os.path.join(cfg.out_dir, "metrics.jsonl"),
                                           point.metrics_bytes if point else 0), device)
    n_params = Transformer(student).num_params()
    print(f"{len(train)} training problems, {len(test)} held-out ({cfg.task}), the teacher's split | teacher "
          f"{teacher.num_params():,} parameters, {teacher.cfg.n_layer} layers x {teacher.cfg.n_embd} | student "
          f"{n_params:,} parameters, {student.n_layer} layers x {student.n_embd}, {student.n_head} heads")

    # 1. verified traces from the teacher: not student compute (as in R1), reported on their own
    t = time.perf_counter()
    kept, stats = verified_traces(teacher, tok, train, cfg, traces_path, device)
    if not kept:
        raise SystemExit(f"error: the teacher's samples kept none of {stats['samples']} ({stats}): nothing to "
                         "distil; raise --traces_samples or --traces_questions")
    examples = rejection.stage_examples(kept, [], tok, cfg.template, cfg.max_seq_len)
    if len(examples) < cfg.batch_size:
        raise SystemExit(f"error: {len(examples)} verified traces, fewer than one SFT batch ({cfg.batch_size}): "
                         "raise --traces_questions")
    if point is None:
        records = [r for batch in rejection.read_candidates(traces_path) for r in batch]
        tokens = sampled_tokens(tok, records, cfg.template)
        run.metrics.log(stage="traces", **stats, examples=len(examples), teacher_params=teacher.num_params(),
                        teacher_tokens=tokens, teacher_flops=flops(teacher.num_params(), 0, tokens),
                        minutes=round((time.perf_counter() - t) / 60, 2))
    print(f"verified traces: {stats['kept_unique']} unique kept of {stats['samples']} teacher samples (acceptance "
          f"{stats['acceptance_rate']:.3f}; {', '.join(f'{v} {stats[v]}' for v in rejection.VERDICTS)}), "
          f"{stats['questions_with_kept']:.3f} of {stats['questions']} questions")

    # 2. arm "rl": the student's own cold-start SFT, then GRPO
    stage = point.stage if point is not None else None
    if stage in (None, "sft", cfg.rl):
        t = time.perf_counter()
        model = initial_student(student, cfg.seed, device)
        if point is not None:
            checkpoint.restore_model(point, "policy", model)
        prompts, worked = tasks.tokenize_problems(tok, train, cfg.template)
        cold = sft.cold_start_examples(train, prompts, worked, tok, cfg)
        if stage in (None, "sft"):
            sft.run_sft(model, cold, test, run, point if stage == "sft" else None)
        run_rl(model, train, test, run, point if stage == cfg.rl else None)
        lengths = [len(p) + len(c) for p, c in cold]
        sft_tokens = sum(sft_step_tokens(lengths, cfg, "sft", s) for s in range(cfg.sft_steps))
        rollouts = grpo_rollout_tokens(run.metrics.records(), train, tok, cfg)
        grpo_train, grpo_forward = (sum(x) for x in zip(*(grpo_step_tokens(p, c, cfg) for p, c in rollouts)))
        run.metrics.log(stage="arm_end", of="rl", steps={"sft": cfg.sft_steps, cfg.rl: len(rollouts)},
                        sft_tokens=sft_tokens, grpo_train_tokens=grpo_train, grpo_forward_tokens=grpo_forward,
                        cold_start_flops=flops(n_params, sft_tokens, 0),
                        student_flops=flops(n_params, sft_tokens + grpo_train, grpo_forward),
                        minutes=round((time.perf_counter() - t) / 60, 2))

    # 3. arm "distill": the same initial weights, SFT on the verified traces for the rl arm's FLOPs
    t = time.perf_counter()
    budget = next(r for r in run.metrics.records() if r.get("stage") == "arm_end" and r["of"] == "rl")["student_flops"]
    lengths = [len(p) + len(c) for p, c in examples]
    steps, spent = equal_compute_steps((flops(n_params, sft_step_tokens(lengths, cfg, DISTILL_STAGE, s), 0)
                                        for s in itertools.count()), budget)
    print(f"equal student compute: the rl arm spent {budget:.4g} FLOPs; the distill arm buys {steps} SFT steps of "
          f"{cfg.batch_size} traces ({spent:.4g} FLOPs, {len(examples)} traces)")
    model = initial_student(student, cfg.seed, device)
    if stage == DISTILL_STAGE:
        checkpoint.restore_model(point, "policy", model)
    sft.run_sft(model, examples, test, run, point if stage == DISTILL_STAGE else None, stage=DISTILL_STAGE,
                steps=steps)
    evaluate_arm(model, test[:cfg.rl_eval_n], run, steps)
    run.metrics.log(stage="arm_end", of=DISTILL_STAGE, steps={"sft": steps}, student_flops=spent,
                    sft_tokens=spent // (6 * n_params), minutes=round((time.perf_counter() - t) / 60, 2))
    return report(run, n_params, min(cfg.rl_eval_n, len(test)), t_start)


def evaluate_arm(model, held_out, run: Run, step: int) -> None:
    """The distill arm's model scored exactly as the rl arm's last evaluation (train.evaluate_rl at step rl_steps):
    the same held-out problems, the same sampling draws; logged as the distill arm's step `step`."""
    cfg, t = run.cfg, time.perf_counter()
    result = sample.evaluate(model, run.tok, held_out, cfg.template, cfg.max_new_tokens, cfg.pass_k,
                             cfg.eval_temperature, cfg.eval_top_p,
                             step_generator(cfg.seed, "eval", cfg.rl_steps, run.device), cfg.forward_chunk or 256)
    print(f"{DISTILL_STAGE} step {step}: held-out " + " | ".join(f"{k} {v:.3f}" for k, v in result.items())
          + f" on {len(held_out)} ({time.perf_counter() - t:.0f}s)")
    run.metrics.log(stage=DISTILL_STAGE, step=step, eval_n=len(held_out), **{f"eval_{k}": v for k, v in result.items()})


def report(run: Run, n_params: int, n: int, t_start: float) -> dict:
    """The table (rl arm after its cold start, the rl arm, the distill arm: held-out scores, student FLOPs, steps,
    minutes), the teacher's sampling beside it, and the final record (returned; the run marked finished)."""
    cfg, records = run.cfg, run.metrics.records()
    ends = {r["of"]: r for r in records if r.get("stage") == "arm_end"}
    rl_evals = checkpoint.stage_evaluations(records, cfg.rl)
    traces = next(r for r in records if r.get("stage") == "traces")
    arm = lambda scores, end, flops_key="student_flops": {**scores, "student_flops": end[flops_key],
                                                          "steps": end["steps"], "minutes": end["minutes"]}
    rows = {"rl_cold_start": {**arm(rl_evals[0], ends["rl"], "cold_start_flops"), "steps": {"sft": cfg.sft_steps},
                              "minutes": None},
            "rl": arm(rl_evals[-1], ends["rl"]),
            DISTILL_STAGE: arm(checkpoint.stage_evaluations(records, DISTILL_STAGE)[-1], ends[DISTILL_STAGE])}
    teacher = {k: traces[k] for k in ("teacher_params", "teacher_tokens", "teacher_flops", "minutes", "samples",
                                      "kept_unique", "acceptance_rate")}
    ratio = rows[DISTILL_STAGE]["student_flops"] / rows["rl"]["student_flops"]
    minutes = round((time.perf_counter() - t_start) / 60, 2)
    run.metrics.log(stage="final", teacher=cfg.teacher, eval_n=n, student_params=n_params, arms=rows,
                    budget_flops=rows["rl"]["student_flops"], flops_ratio=ratio, teacher_sampling=teacher,
                    minutes=minutes)
    checkpoint.mark_finished(cfg.out_dir, run.metrics.size())
    first = ("pass_at_1", f"pass_at_{cfg.pass_k}", f"cons_at_{cfg.pass_k}", "shows_work")
    keys = [k for k in first if k in rows["rl"]] + [k for k in rl_evals[-1] if k not in first]
    names = {"rl_cold_start": "rl: cold-start SFT only", "rl": f"rl: cold-start SFT + {cfg.rl.upper()}",
             DISTILL_STAGE: "distill: SFT on the teacher's traces"}
    print(f"\nthe student ({n_params:,} parameters) on {n} held-out problems, seed {cfg.seed}; FLOPs of the student "
          "only (6N a training token, 2N a forward-only one)")
    print("| arm | " + " | ".join(keys) + " | student FLOPs | steps | minutes |")
    print("|---|" + "---|" * (len(keys) + 3))
    for name, row in rows.items():
        steps = " + ".join(f"{v} {k.upper()}" for k, v in row["steps"].items())
        print(f"| {names[name]} | " + " | ".join(f"{row[k]:.3f}" for k in keys)
              + f" | {row['student_flops']:.4g} | {steps} | {'' if row['minutes'] is None else row['minutes']} |")
    print(f"equal compute: distill / rl = {ratio:.4f} | the teacher's sampling (not student compute): "
          f"{teacher['teacher_flops']:.4g} FLOPs, {teacher['samples']} samples, {teacher['minutes']} min | total "
          f"{minutes:.1f} min | checkpoints: {os.path.join(cfg.out_dir, cfg.rl)} (rl), "
          f"{os.path.join(cfg.out_dir, DISTILL_STAGE)} (distill)")
    return run.metrics.records()[-1]


def parse_args(argv=None) -> argparse.Namespace:
    """The command line: the teacher, the run, the student's size, the traces, the rl arm's steps."""
    p = argparse.ArgumentParser(description="Distil an R1 run's final model into a half-size student, against the "
                                            "student's own cold start + GRPO at equal student FLOPs.")
    p.add_argument("teacher", metavar="TEACHER_RUN", help="a finished `python train.py --preset r1` run folder: its "
                                                          "final model (--teacher_stage) is the teacher")
    p.add_argument("--teacher_stage", default="",
                   help="the teacher's checkpoint folder in TEACHER_RUN (default: its final model, stage 4's rl_all/ "
                        "or, in a run of stages 1-3, stage 3's rs_sft/)")
    p.add_argument("--out_dir", default="runs/distill", help="where the checkpoints, metrics.jsonl, the traces and "
                                                             "the resume point go (default: runs/distill)")
    p.add_argument("--seed", type=int, default=0, help="seed of the student's initial weights, the teacher's questions "
                                                       "and samples, every step's draws (the split is the teacher's)")
    p.add_argument("--resume", type=config.parse_bool, default=True, metavar="BOOL",
                   help="continue the run in out_dir from its resume point, if any (false: start over)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="auto: cuda if present, else cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--student_layers", type=int, default=0, help="the student's Transformer blocks (0: half the "
                                                                 "teacher's)")
    p.add_argument("--student_embd", type=int, default=0, help="the student's width (0: half the teacher's)")
    p.add_argument("--student_heads", type=int, default=0, help="the student's heads (0: the most, up to the "
                                                                "teacher's count, that have even width)")
    for f in fields(DistillConfig):
        if f.name.startswith("traces_"):
            p.add_argument(f"--{f.name}", type=int, default=f.default,
                           help=f"{f.metadata['help']} (default: {f.default})")
    p.add_argument("--sft_steps", type=int, default=0, help="the rl arm's cold-start SFT steps (0: the teacher's)")
    p.add_argument("--rl_steps", type=int, default=0, help="the rl arm's GRPO steps (0: the teacher's)")
    p.add_argument("--eval_n", type=int, default=0, help="held-out problems of the table and of every GRPO "
                                                         "evaluation (0: the teacher's rl_eval_n)")
    args = p.parse_args(argv)
    for name in ("traces_questions", "traces_samples", "traces_batch"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("threads", "student_layers", "student_embd", "student_heads", "sft_steps", "rl_steps", "eval_n"):
        if getattr(args, name) < 0:
            p.error(f"--{name} must be >= 0 (0: the default), got {getattr(args, name)}")
    return args


if __name__ == "__main__":
    main()
