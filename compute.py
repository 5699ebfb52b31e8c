"""What a run cost in FLOPs, stage by stage, and how many SFT steps spend the same compute another way.

    python compute.py runs/default                        # the FLOPs of each stage of a run (finished or stopped)
    python compute.py runs/a runs/b                       # side by side, each against the first
    python compute.py runs/a runs/b --evaluations         # and each held-out evaluation with the FLOPs spent by then
    python compute.py runs/default --sft_steps_for "--preset sft"   # the SFT steps of that run that cost the same

"Equal compute" is how this project compares two ways of training: RL against more SFT, fewer worked solutions
against more (docs/results.md, What RL buys), a student distilled against one trained by RL (distill.py). The
count is the usual rule (Kaplan et al., "Scaling Laws for Neural Language Models", arXiv 2001.08361):

    flops                 6 N per token of a training pass, 2 N per token of a forward-only pass, N the parameters
    sft_step_tokens       the real tokens of one SFT (or pretraining) step, from the batch the step draws
    grpo_step_tokens      the training and forward-only tokens of one GRPO step: sampling, log pi_ref, log pi_old,
                          mu training passes
    grpo_rollout_tokens   each logged GRPO step's prompt and completion tokens, its questions drawn again
    equal_compute_steps   the step count whose FLOPs come closest to a budget
    run_flops             a run's FLOPs by stage, from its resume point (config, tokenizer) and metrics.jsonl; a run
                          started --init_from a stage of another run counts that run's FLOPs to the stage's end
                          as its start
    sft_steps_for         the SFT steps of a command line whose FLOPs come closest to a budget

What the rule leaves out: attention's scores and mixing (2 n_layer T D per token at context T), norms, softmax and
the optimizer; rows that have ended but are still computed in a batch; pads. It is a count of useful work, the same
for every arm, not a prediction of seconds. What it cannot count yet is refused, naming the flag (`UNCOUNTED`).
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import sys
from dataclasses import fields

from tokenizers import Tokenizer

import checkpoint
import config
import pretrain
import sample
import sft
import tasks
import train as train_py
from checkpoint import step_rng
from config import TrainConfig
from model import ModelConfig, Transformer

# Settings whose compute the counter does not see; run_flops refuses them, naming the flag: PPO's critic, dynamic
# sampling's refills (one rollout a step is read), a task mixture (drawn otherwise than grpo_rollout_tokens draws),
# a group's prompt run once (counted G times), the R1 pipeline's later stages, a learned reward model's passes.
UNCOUNTED = {"rl": ("ppo",), "pipeline": ("r1",), "dynamic_sampling": (True,), "prompt_once": (True,),
             "reward_rm": "non-zero", "rl_mix": "non-empty"}


def flops(n_params: int, train_tokens: int, forward_tokens: int) -> int:
    """FLOPs, C = 6 N D_train + 2 N D_forward (Kaplan et al. 2020, arXiv 2001.08361):

        a training pass (forward and backward) costs 6 N per token: 2 N forward, 4 N backward;
        a forward-only pass costs 2 N per token: sampling (the prompt's prefill and each generated token through
        the KV cache) and the log-probs of pi_ref and pi_old, which are copies of the same size.

    N is the TOTAL parameter count (Transformer.num_params): with the tied embedding, each weight is multiplied
    once per token, the embedding matrix as the LM head (its lookup is free). Left out, as in the rule: attention's
    scores and mixing (2 n_layer T D per token at context T), norms, softmax, the optimizer. D counts real tokens
    only, never pads.

    >>> flops(1000, 10, 5)   # 6*1000*10 + 2*1000*5
    70000
    """
    return 6 * n_params * train_tokens + 2 * n_params * forward_tokens


def sft_step_tokens(lengths: list[int], cfg: TrainConfig, stage: str, step: int) -> int:
    """Real input tokens of SFT step `step` of `stage`, from the batch that sft.run_sft draws (sft_batch_indices is a
    function of (seed, stage, step) alone): each example's len(prompt) + len(completion) - 1 (the input is the
    sequence without its last token), right pads not counted. lengths: len(prompt) + len(completion) per example."""
    idx = sft.sft_batch_indices(lengths, cfg.batch_size, step, cfg.seed, cfg.length_grouping, stage)
    return sum(lengths[i] - 1 for i in idx)


def grpo_step_tokens(prompt_tokens: int, completion_tokens: int, cfg: TrainConfig) -> tuple[int, int]:
    """(training-pass tokens, forward-only tokens) of one GRPO step whose B x G rows hold these real prompt and
    completion tokens (EOS included), D = prompt + completion:

        sampling                      D forward (prefill, then each generated token; a row's last token is never
                                      fed back, counted anyway; rows that have ended are computed, not counted)
        log pi_ref                    D forward, if kl_coef > 0
        log pi_old                    D forward, if mu > 1 or minibatches > 1 (else the policy's own log-probs,
                                      detached, are pi_old's: train.grpo_update)
        mu epochs of minibatch steps  mu x D training (every row once an epoch; the prompt's positions too, whose
                                      keys and values the completion attends to)
    """
    tokens = prompt_tokens + completion_tokens
    passes = 1 + (cfg.kl_coef > 0) + (cfg.mu > 1 or cfg.minibatches > 1)
    return cfg.mu * tokens, passes * tokens


def grpo_rollout_tokens(records: list[dict], train: list[tasks.Problem], tok,
                        cfg: TrainConfig) -> list[tuple[int, int]]:
    """(prompt tokens, completion tokens) of every GRPO step in the metrics records: the step's questions drawn
    again as train.rl_step draws them (the first prompts_per_step draw of step_rng(seed, 'rl', step)), each prompt
    G times; its completion tokens (EOS included) the step's logged mean length times its B x G rows."""
    out, rows = [], cfg.prompts_per_step * cfg.group_size
    for r in records:
        if r.get("stage") == cfg.rl and "reward" in r and "length" in r:
            questions = step_rng(cfg.seed, "rl", r["step"] - 1).sample(train, cfg.prompts_per_step)
            prompts = tok.encode_batch([tasks.format_prompt(p.question, cfg.template) for p in questions])
            out.append((cfg.group_size * sum(len(p.ids) for p in prompts), round(r["length"] * rows)))
    return out


def equal_compute_steps(step_flops, budget: int) -> tuple[int, int]:
    """(S, FLOPs of the first S steps): the number of steps, at least 1, whose cumulative FLOPs come closest to
    `budget` (a tie takes fewer), so the arms differ by at most half of one step's FLOPs. step_flops: each step's
    FLOPs in order (an iterable, it may be endless); ValueError if it ends short of the budget.

    >>> equal_compute_steps([10, 10, 10, 10], 26), equal_compute_steps([10, 10, 10, 10], 25)
    ((3, 30), (2, 20))
    """
    total = 0
    for s, f in enumerate(step_flops, 1):
        if total + f >= budget:
            return (s, total + f) if s == 1 or total + f - budget < budget - total else (s - 1, total)
        total += f
    raise ValueError(f"the steps end at {total} FLOPs, short of the budget of {budget}")


def check_countable(cfg: TrainConfig) -> None:
    """ValueError naming the first flag whose compute this counter does not see (UNCOUNTED)."""
    for name, refused in UNCOUNTED.items():
        value = getattr(cfg, name)
        if (refused == "non-zero" and value) or (refused == "non-empty" and value) or \
                (isinstance(refused, tuple) and value in refused):
            raise ValueError(f"--{name} {value}: compute.py does not count this setting's compute yet")


def stage1_lengths(cfg: TrainConfig, tok, train: list[tasks.Problem]) -> tuple[str, list[int]]:
    """(stage name, len(prompt) + len(completion) of each example) of stage 1 as train.py builds it: R1-Zero's
    pretraining documents, or the cold start's examples (the first --sft_problems, --sft_direct_frac of them
    answer-only). cfg.max_seq_len must be the run's (train.plan_run fills it in)."""
    if cfg.pipeline == "r1_zero":
        docs = pretrain.pretrain_documents(train, cfg.seed, cfg.pretrain_format_frac)
        return "pretrain", [len(p) + len(c) for p, c in pretrain.pretrain_examples(docs, tok, cfg.max_seq_len)]
    prompts, worked = tasks.tokenize_problems(tok, train, cfg.template)
    return "sft", [len(p) + len(c) for p, c in sft.cold_start_examples(train, prompts, worked, tok, cfg)]


def train_config(saved: dict) -> TrainConfig:
    """A TrainConfig from a resume point's stored train_config; flags added since the run began take their
    defaults."""
    names = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in saved.items() if k in names})


def run_flops(run_dir: str) -> dict:
    """The FLOPs a run spent, from its resume point (the config, the tokenizer, the model's size, the stage and
    step it reached) and its metrics.jsonl: {"params", "stages": {name: {"steps", "train_tokens",
    "forward_tokens", "flops"}}, "init_from", "start", "total", "evaluations", "ends"}; each evaluation of
    metrics.jsonl (stage, step: None for the final one, eval_pass_at_1, eval_n) with the FLOPs spent when it was
    made, so runs can be compared at equal compute along their curves; "ends", the FLOPs spent by the end of each
    stage. Stage 1 (SFT or pretraining) counts the steps done; GRPO counts every logged step. A run started
    --init_from a stage's checkpoint of another run of this project (RUN/sft, RUN/pretrain, RUN/grpo) counts what
    that run had spent by the end of that stage as "start" ({"run", "stage", "flops"}), not the stages it ran after
    it; a Hugging Face folder's pretraining is unknown: start None, and the total leaves it out.
    ValueError naming the folder or the flag when it cannot be counted."""
    point = checkpoint.load(run_dir)
    if point is None:
        raise ValueError(f"{run_dir}: no resume.safetensors, so not a run of train.py (or not yet started)")
    cfg = train_config(point.train_config)
    check_countable(cfg)
    n_params = Transformer(ModelConfig.from_dict(point.model_config)).num_params()
    tok = Tokenizer.from_str(point.tokenizer_json)  # the run's own tokenizer, as it was saved
    train, _ = sample.rebuild_splits(point.train_config, cfg.n_train)
    records = checkpoint.read_jsonl(os.path.join(run_dir, "metrics.jsonl"))
    start = None  # {"run", "stage", "flops"}: the run and stage --init_from names, and the FLOPs to that stage's end
    if cfg.init_from:
        parent, stage = os.path.split(os.path.normpath(cfg.init_from))
        if os.path.isfile(os.path.join(parent, checkpoint.RESUME_FILE)):
            ends = run_flops(parent)["ends"]
            if stage not in ends:
                raise ValueError(f"{run_dir}: --init_from {cfg.init_from} is not a stage of {parent} (its stages: "
                                 f"{', '.join(ends)}), so its FLOPs cannot be counted")
            start = dict(run=parent, stage=stage, flops=ends[stage])
    stages, spent = {}, {}  # spent[stage]: the run's FLOPs where the stage began, then after each of its steps
    before = start["flops"] if start else 0
    if not cfg.init_from:
        name, lengths = stage1_lengths(cfg, tok, train)
        done = point.step if point.stage == name else cfg.sft_steps
        tokens = [sft_step_tokens(lengths, cfg, name, s) for s in range(done)]
        stages[name] = dict(steps=done, train_tokens=sum(tokens), forward_tokens=0, flops=flops(n_params, sum(tokens), 0))
        spent[name] = [before] + [before + flops(n_params, t, 0) for t in itertools.accumulate(tokens)]
        before += stages[name]["flops"]
    if cfg.rl == "grpo":
        per_step = [grpo_step_tokens(p, c, cfg) for p, c in grpo_rollout_tokens(records, train, tok, cfg)]
        train_tokens, forward_tokens = (sum(x) for x in zip(*per_step)) if per_step else (0, 0)
        stages["grpo"] = dict(steps=len(per_step), train_tokens=train_tokens, forward_tokens=forward_tokens,
                              flops=flops(n_params, train_tokens, forward_tokens))
        spent["grpo"] = [before] + [before + f for f in itertools.accumulate(flops(n_params, *t) for t in per_step)]
    total = sum(s["flops"] for s in stages.values()) + (start["flops"] if start else 0)
    evaluations = [dict(stage=r["stage"], step=r.get("step"), eval_pass_at_1=r["eval_pass_at_1"], eval_n=r["eval_n"],
                        flops=spent[r["stage"]][r["step"]] if r["stage"] != "final" else total)
                   for r in records if "eval_pass_at_1" in r and (r.get("stage") in spent or r.get("stage") == "final")]
    return dict(run=run_dir, params=n_params, stages=stages, init_from=cfg.init_from, start=start, total=total,
                evaluations=evaluations, ends={name: points[-1] for name, points in spent.items()})


def sft_steps_for(budget: int, argv: list[str]) -> tuple[int, int, TrainConfig]:
    """(S, its FLOPs, the config): the number of stage-1 steps of `python train.py ARGV` whose FLOPs come closest to
    `budget`, counted from the batches those steps draw (equal_compute_steps). The data, tokenizer and lengths
    are built as train.py builds them."""
    cfg = config.parse_config(argv)
    config.check_config(cfg)
    train, test = train_py.load_problems(cfg)
    tok = tasks.run_tokenizer(train, cfg.template, cfg.vocab_size)
    train_py.plan_run(cfg, tok, train, test)
    n_params = Transformer(ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=cfg.n_layer, n_head=cfg.n_head,
                                       n_embd=cfg.n_embd, max_seq_len=cfg.max_seq_len)).num_params()
    name, lengths = stage1_lengths(cfg, tok, train)
    steps, spent = equal_compute_steps((flops(n_params, sft_step_tokens(lengths, cfg, name, s), 0)
                                        for s in itertools.count()), budget)
    return steps, spent, cfg


def describe(r: dict, reference: int) -> str:
    """One run as a table row: each stage's steps and FLOPs, the start, the total and its ratio to `reference`."""
    parts = [f"{name} {s['steps']:,} steps {s['flops']:.4g}" for name, s in r["stages"].items()]
    if r["start"] is not None:
        parts.insert(0, f"start {r['start']['flops']:.4g} ({r['start']['run']} to the end of {r['start']['stage']})")
    elif r["init_from"]:
        parts.insert(0, f"start unknown ({r['init_from']})")
    return f"| {r['run']} | {r['params']:,} | {'; '.join(parts)} | {r['total']:.4g} | {r['total'] / reference:.3f} |"


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description="The FLOPs a run spent, stage by stage (6N per trained token, "
                                                 "2N per forward-only token), and equal-compute step counts.")
    parser.add_argument("runs", nargs="+", help="run folders of train.py (each holds resume.safetensors)")
    parser.add_argument("--sft_steps_for", default=None, metavar="FLAGS",
                        help="train.py flags in one quoted string: print the stage-1 steps of that command whose "
                             "FLOPs come closest to the first run's total")
    parser.add_argument("--evaluations", action="store_true",
                        help="also list every held-out evaluation of each run with the FLOPs spent when it was made")
    args = parser.parse_args(argv)
    try:
        results = [run_flops(d) for d in args.runs]
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    print("| run | parameters | stages: steps, FLOPs | total FLOPs | over the first |")
    print("|---|---|---|---|---|")
    for r in results:
        print(describe(r, results[0]["total"]))
    if args.evaluations:
        print("\n| run | stage | step | held-out pass@1 | problems | FLOPs spent | over the first run's total |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            for e in r["evaluations"]:
                print(f"| {r['run']} | {e['stage']} | {e['step'] if e['stage'] != 'final' else ''} | "
                      f"{e['eval_pass_at_1']:.3f} | {e['eval_n']} | {e['flops']:.4g} | "
                      f"{e['flops'] / results[0]['total']:.3f} |")
    if args.sft_steps_for is not None:
        try:
            steps, spent, cfg = sft_steps_for(results[0]["total"], shlex.split(args.sft_steps_for))
        except ValueError as e:
            raise SystemExit(f"error: --sft_steps_for: {e}") from None
        print(f"equal compute: {steps:,} stage-1 steps of `python train.py {args.sft_steps_for}` spend "
              f"{spent:.4g} FLOPs, {spent / results[0]['total']:.4f} of {results[0]['run']}'s {results[0]['total']:.4g}"
              f" (give it --sft_steps {steps})")
    return results


if __name__ == "__main__":
    main()
