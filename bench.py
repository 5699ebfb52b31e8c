"""Benchmarks: speed claims live here, not in timed tests.

    python bench.py sampling      # KV-cached batched sampling vs recomputing the whole prefix each step
    python bench.py grpo          # seconds per GRPO step, where they go, and rollout tokens/s by batch size
    python bench.py step          # the step with --prompt_once against without, alternated (tools/time_trl.py: TRL's)
    python bench.py ppo           # seconds per step of GRPO and of PPO side by side, and the models each holds
    python bench.py compare       # GRPO against PPO: whole RL runs from one SFT model, per seed (--seeds 0 1 2)
    python bench.py variants      # DeepSeekMath GRPO, Dr. GRPO, DAPO-style, process supervision, the same way
    python bench.py memory        # peak memory of GRPO and of PPO steps at one model size, each in its process

The speed benchmarks run the compared variants side by side in one process, on the same inputs, and
report medians over repeats, so a noisy machine shifts both numbers alike. `compare` and `variants` run
real `train.py` processes one after another (one process per run, so that each run's peak memory is its
own): per seed, the default cold-start SFT once (`--rl none`), then every RL run from that checkpoint
with the same seed, questions, B x G completions and step budget (`--rl_minutes 0`). A finished run is
not run again, so an interrupted sweep resumes where it stopped. Flags after `--` go to every train.py run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

import torch

import grpo
import tasks
import train
from model import ModelConfig, Transformer, generate, left_pad
import rollouts
import memory
import config


@torch.no_grad()
def generate_uncached(model: Transformer, prompts: list[list[int]], max_new_tokens: int, pad_id: int) -> torch.Tensor:
    """Greedy decoding the slow way: a full forward pass over prompt + everything so far, every step."""
    ids, valid = left_pad(prompts, pad_id, model.tok_emb.weight.device)
    for _ in range(max_new_tokens):
        tok = model(ids, valid=valid)[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, tok], dim=1)
        valid = torch.cat([valid, torch.ones_like(tok, dtype=torch.bool)], dim=1)
    return ids[:, -max_new_tokens:]


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_sampling(args):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=args.vocab, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                      max_seq_len=args.prompt_len + args.new_tokens)
    model = Transformer(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(args.prompt_len // 2, args.prompt_len + 1, (args.batch,), generator=gen).tolist()
    prompts = [torch.randint(2, args.vocab, (n,), generator=gen).tolist() for n in lengths]
    no_eos = args.vocab  # an id the model can never emit, so every row decodes all new_tokens
    cached = generate(model, prompts, args.new_tokens, eos_id=no_eos, pad_id=0, temperature=0)
    uncached = generate_uncached(model, prompts, args.new_tokens, pad_id=0)
    same = torch.equal(cached.ids, uncached)
    t_cached = timed(lambda: generate(model, prompts, args.new_tokens, no_eos, 0, temperature=0), args.repeats)
    t_uncached = timed(lambda: generate_uncached(model, prompts, args.new_tokens, 0), args.repeats)
    n_tok = args.batch * args.new_tokens
    print(f"model {model.num_params():,} params (L{args.n_layer} H{args.n_head} D{args.n_embd}), "
          f"{args.batch} prompts of {min(lengths)}-{max(lengths)} tokens, {args.new_tokens} new tokens each, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"same greedy tokens: {same}")
    print(f"KV cache : {t_cached:7.3f} s  {n_tok / t_cached:9.0f} tokens/s")
    print(f"no cache : {t_uncached:7.3f} s  {n_tok / t_uncached:9.0f} tokens/s")
    print(f"speed-up : {t_uncached / t_cached:.1f}x")



def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """The machine's fp32 matmul rate, the ceiling for everything else here."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n ** 3 / timed(lambda: a @ b, repeats) / 1e9


def rl_stepper(algo: str, args, problems, tok):
    """(RLModels, step): a freshly initialised model of args' size (the same weights for every algo) and a
    function that runs one real RL step of `algo` as train.py does (rollouts.collect_rollouts, then
    train.rl_update) and returns where its seconds went."""
    cfg = config.TrainConfig(rl=algo, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                            prompts_per_step=args.prompts, group_size=args.group, max_new_tokens=args.max_new_tokens,
                            kl_coef=args.kl_coef, overlong_cache=min(16, args.max_new_tokens),
                            prompt_once=getattr(args, "prompt_once", False))
    mcfg = ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                       max_seq_len=64 + cfg.max_new_tokens)
    torch.manual_seed(0)
    models = train.make_rl_models(Transformer(mcfg), cfg)
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)

    def step() -> dict:
        timer, t = {}, time.perf_counter()
        roll, _ = rollouts.collect_rollouts(models.policy, tok, problems, cfg, rng, gen, timer)
        stats = train.rl_update(models, roll, tok, cfg, "cpu", gen)
        return dict(step=time.perf_counter() - t, rollout=timer["rollout"], reward=timer["reward"],
                    advantages=stats["adv_s"], logprobs=stats["logprob_s"], critic=stats.get("critic_s", 0.0),
                    update=stats["update_s"], tokens=timer["tokens"], roll=roll)
    return models, step


def bench_problems():
    problems, _ = tasks.make_splits("arithmetic", 2000, 10, 0)
    return problems, tasks.train_tokenizer(tasks.corpus_texts(problems, "compact"), 384)


PHASES = ("rollout", "reward", "advantages", "logprobs", "critic", "update")


def medians(rows: list[dict]) -> dict:
    """Median of each timing over the steps after the first (a warm-up)."""
    return {k: statistics.median(r[k] for r in rows[1:]) for k in ("step", "tokens") + PHASES}


def bench_grpo(args):
    """Real GRPO steps (rollouts.collect_rollouts, rollouts.advantages, train.grpo_update) on a freshly initialised model.

    The untrained model never writes a correct answer, so every advantage is 0, but each step still does all
    its work: it samples prompts x G completions (rarely stopping before max_new_tokens), scores them,
    takes the reference's log-probs and a full forward and backward pass of the policy. Timings are medians
    over the steps after a warm-up step.
    """
    problems, tok = bench_problems()
    models, step = rl_stepper("grpo", args, problems, tok)
    policy, ref = models.policy, models.ref
    rows = [step() for _ in range(args.steps + 1)]  # the first step warms up and is not counted
    med = medians(rows)
    # the bare passes a step cannot avoid, on the last step's batch: a forward without grad (the reference),
    # and a forward + backward (the policy); an SGD-free loss so that nothing else is timed
    last = rows[-1]["roll"]
    prompt_ids, prompt_valid = left_pad(last.prompts, tasks.PAD_ID, "cpu")

    def forward():
        with torch.no_grad():
            grpo.completion_logprobs(ref, prompt_ids, prompt_valid, last.ids, last.mask)

    def forward_backward():
        policy.zero_grad(set_to_none=True)
        grpo.completion_logprobs(policy, prompt_ids, prompt_valid, last.ids, last.mask).sum().backward()

    t_fwd, t_fb = timed(forward, 3), timed(forward_backward, 3)
    n = args.prompts * args.group
    print(f"model {policy.num_params():,} params (L{args.n_layer} H{args.n_head} D{args.n_embd}), {args.prompts} "
          f"prompts x G={args.group} = {n} completions of up to {args.max_new_tokens} tokens, beta={args.kl_coef}, "
          f"{torch.get_num_threads()} threads; median of {args.steps} steps; completion batch {tuple(last.ids.shape)}")
    print(f"GRPO step     : {med['step']:6.3f} s")
    for k in ("rollout", "reward", "advantages", "logprobs", "update"):
        print(f"  {k:<11} : {med[k]:6.3f} s  {100 * med[k] / med['step']:5.1f}%")
    print(f"rollout       : {med['tokens'] / med['rollout']:8.0f} completion tokens/s")
    print(f"bare passes   : forward {t_fwd:.3f} s (the reference's log-probs: {med['logprobs']:.3f} s), "
          f"forward + backward {t_fb:.3f} s (the update, with AdamW and the loss: {med['update']:.3f} s)")
    print(f"the update and log-probs cost {(med['update'] + med['logprobs']) / (t_fb + (t_fwd if args.kl_coef else 0)):.2f}x "
          "the bare passes they must do")
    rollout_throughput(policy, tok, problems, args)


def bench_step(args):
    """Seconds per GRPO step of the project's step (--prompt_once) against its naive version (every row runs its
    prompt), in alternated rounds on the same work: each round builds both steppers afresh (the same initial
    weights and draws) and times --steps steps of each after a warm-up step. With --trl SECONDS (a time measured by
    tools/time_trl.py on the same work), each one's ratio to it."""
    problems, tok = bench_problems()
    times = {False: [], True: []}
    for _ in range(args.rounds):
        for flag in (False, True):
            args.prompt_once = flag
            _, step = rl_stepper("grpo", args, problems, tok)
            times[flag].append(medians([step() for _ in range(args.steps + 1)])["step"])
    print(f"GRPO step, {args.prompts} x G={args.group}, {args.max_new_tokens} new tokens, beta={args.kl_coef}, "
          f"{torch.get_num_threads()} threads; median of {args.steps} steps in each of {args.rounds} alternated rounds")
    print("| round | naive (s) | --prompt_once (s) | ratio |" + (" naive / TRL | --prompt_once / TRL |" if args.trl else ""))
    print("|---|---|---|---|" + ("---|---|" if args.trl else ""))
    for r, (a, b) in enumerate(zip(times[False], times[True]), 1):
        print(f"| {r} | {a:.3f} | {b:.3f} | {b / a:.2f} |" + (f" {a / args.trl:.2f} | {b / args.trl:.2f} |" if args.trl else ""))


def rollout_throughput(policy, tok, problems, args) -> None:
    """Tokens/s of the rollout alone by batch size (overhead-bound when small, arithmetic-bound when large), and
    a decode step's cost split into a fixed overhead and the part that grows with the batch."""
    # tokens/s of the rollout alone by batch size: overhead-bound when small, arithmetic-bound when large
    peak = matmul_gflops()
    print(f"\nrollout tokens/s by batch ({args.max_new_tokens} new tokens each, no EOS); matmul peak here "
          f"{peak:.0f} GFLOP/s")
    print(f"{'batch':>6} {'seconds':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'of peak':>8}")
    prompt = tasks.encode(tok, tasks.format_prompt(problems[0].question, "compact"))
    flops_per_token = 2 * policy.num_params()  # a forward pass: 2 FLOPs per weight per token (+ attention)
    per_step = {}
    for batch in args.batches:
        secs = timed(lambda: generate(policy, [prompt] * batch, args.max_new_tokens, eos_id=10 ** 9, pad_id=0,
                                      temperature=1.0, generator=torch.Generator().manual_seed(0)), 3)
        tps = batch * args.max_new_tokens / secs
        per_step[batch] = secs / args.max_new_tokens
        print(f"{batch:6d} {secs:8.3f} {tps:9.0f} {tps * flops_per_token / 1e9:8.1f} "
              f"{100 * tps * flops_per_token / 1e9 / peak:7.1f}%")
    # a decode step costs a + b * batch: a is the fixed overhead (Python, kernel launches), b * batch the work
    lo, hi = min(per_step), max(per_step)
    b = (per_step[hi] - per_step[lo]) / (hi - lo)
    a = per_step[lo] - b * lo
    for batch in (args.prompts * args.group, hi):
        print(f"decode step at batch {batch}: {1e3 * (a + b * batch):.2f} ms = {1e3 * a:.2f} ms fixed overhead + "
              f"{1e3 * b * batch:.2f} ms that grows with the batch ({100 * b * batch / (a + b * batch):.0f}%)")


def bench_ppo(args):
    """Real steps of GRPO and of PPO side by side (rollouts.collect_rollouts, then train.rl_update, as train.py runs
    them): the same model size and initial weights, the same questions and the same number of completions per
    step. The steps alternate, GRPO then PPO, so that a drift in the machine's speed hits both alike; medians
    over the steps after a warm-up step. Then the models each algorithm holds, with their parameters.
    As in bench_grpo the untrained model rarely stops or scores, so GRPO's advantages are 0 and PPO's come
    from its KL rewards alone, but both do all their work: the phases cost what they cost in training."""
    problems, tok = bench_problems()
    algos = ("grpo", "ppo")
    steppers = {algo: rl_stepper(algo, args, problems, tok) for algo in algos}
    rows = {algo: [] for algo in algos}
    for _ in range(args.steps + 1):  # the first step of each warms up and is not counted
        for algo in algos:
            rows[algo].append(steppers[algo][1]())
    med = {algo: medians(rows[algo]) for algo in algos}
    policy, defaults = steppers["grpo"][0].policy, config.TrainConfig()
    print(f"model {policy.num_params():,} params (L{args.n_layer} H{args.n_head} D{args.n_embd}), {args.prompts} "
          f"prompts x G={args.group} = {args.prompts * args.group} completions of up to {args.max_new_tokens} tokens, "
          f"beta={args.kl_coef}, mu={defaults.mu} x {defaults.minibatches} minibatch(es) per rollout, "
          f"{torch.get_num_threads()} threads; median of {args.steps} steps each, alternating")
    labels = {"rollout": "rollout (sampling)", "reward": "reward (decode, score)",
              "advantages": "advantages (GRPO: group; PPO: rewards, GAE)",
              "logprobs": "log-probs (pi_ref; PPO also pi_old)",
              "critic": "critic (values at rollout; fwd + bwd + AdamW)", "update": "update (policy fwd + bwd + AdamW)"}
    print(f"| {'seconds per step':<47} | {'GRPO':>15} | {'PPO':>15} |")
    print(f"|{'-' * 49}|{'-' * 17}|{'-' * 17}|")
    for k in PHASES:
        cells = [f"{med[a][k]:6.3f} ({100 * med[a][k] / med[a]['step']:4.1f}%)" for a in algos]
        print(f"| {labels[k]:<47} | {cells[0]:>15} | {cells[1]:>15} |")
    print(f"| {'step':<47} | {med['grpo']['step']:15.3f} | {med['ppo']['step']:15.3f} |")
    print(f"| {'completion tokens per step':<47} | {med['grpo']['tokens']:15.0f} | {med['ppo']['tokens']:15.0f} |")
    print(f"PPO / GRPO seconds per step: {med['ppo']['step'] / med['grpo']['step']:.2f}x")
    for algo in algos:
        print(f"\nmodels held in memory for {algo.upper()}:")
        print(memory.format_model_table(memory.model_table(steppers[algo][0])))


# ---------------------------------------------------------------------------------------------
# Whole RL runs side by side: GRPO against PPO, and GRPO's variants
# ---------------------------------------------------------------------------------------------
COMPARE = {"grpo": ["--rl", "grpo"], "ppo": ["--rl", "ppo"]}
VARIANTS = {  # each as its paper writes it; the rest of the config is the default
    "grpo": ["--rl", "grpo"],  # DeepSeekMath: group mean/std, per-sequence mean, beta 0.04 k3
    "dr_grpo": ["--rl", "grpo", "--adv_scale", "none", "--agg", "constant", "--kl_coef", "0"],
    "dapo": ["--rl", "grpo", "--clip_eps_high", "0.28", "--agg", "token_mean", "--dynamic_sampling", "true",
             "--overlong_filter", "true", "--kl_coef", "0", "--reward_wrong", "-1", "--reward_format", "0",
             "--reward_overlong", "1"],  # DAPO: +1/-1 accuracy only (Eq. 7), plus the soft overlong penalty (Eq. 13)
    "process": ["--rl", "grpo", "--supervision", "process"],  # DeepSeekMath 4.1.3, rule-checked steps alone
}


def read_metrics(path: str) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def finished(run_dir: str) -> bool:
    """A run is finished when its metrics.jsonl ends with the final record."""
    path = os.path.join(run_dir, "metrics.jsonl")
    return os.path.exists(path) and any(r.get("stage") == "final" for r in read_metrics(path))


def train_run(args: list[str], log_path: str) -> None:
    """One `python train.py ARGS` process, its output to log_path; a failure names the log."""
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "train.py"), *args]
    print("$ " + " ".join(cmd[1:]), flush=True)
    with open(log_path, "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if code:
        raise SystemExit(f"error: train.py exited with {code}; see {log_path}")


def sft_checkpoint(pattern: str, seed: int) -> str:
    """--sft_from with {seed} filled in; an error naming the flag if the pattern or the directory is wrong."""
    try:
        path = pattern.format(seed=seed)
    except (KeyError, IndexError, ValueError) as e:
        raise SystemExit(f"error: --sft_from {pattern!r}: the only placeholder allowed is {{seed}} ({e!r})") from None
    if not os.path.isdir(path):
        raise SystemExit(f"error: --sft_from {pattern!r}: no checkpoint directory {path} for seed {seed}")
    return path


def run_sweep(runs: dict[str, list[str]], seeds: list[int], out: str, rl_steps: int, extra: list[str],
              sft_from: str = "") -> dict:
    """Per seed: the SFT start once (or sft_from, with {seed} in it), then each named RL run from it.
    Returns {name: {seed: metrics records}}."""
    records = {name: {} for name in runs}
    for seed in seeds:
        base = os.path.join(out, f"seed{seed}")
        os.makedirs(base, exist_ok=True)
        common = ["--seed", str(seed), *extra]
        start = sft_checkpoint(sft_from, seed) if sft_from else os.path.join(base, "sft")
        if not sft_from and not finished(base):
            train_run(["--rl", "none", "--out_dir", base, *common], os.path.join(base, "train.log"))
        for name, flags in runs.items():
            run_dir = os.path.join(base, name)
            if not finished(run_dir):
                os.makedirs(run_dir, exist_ok=True)
                train_run(["--init_from", start, "--out_dir", run_dir, "--rl_steps", str(rl_steps),
                           "--rl_minutes", "0", *common, *flags], os.path.join(run_dir, "train.log"))
            records[name][seed] = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    return records


def summarise_run(recs: list[dict]) -> dict:
    """What one RL run's metrics.jsonl says: the eval curve (by step and by RL seconds), mean seconds per
    step by phase, the trend of completion lengths, zero-std groups, the models held and the peak memory."""
    stage = next(r["stage"] for r in recs if r.get("stage") in ("grpo", "ppo"))
    steps = [r for r in recs if r.get("stage") == stage and "reward" in r]
    evals = {r["step"]: r for r in recs if r.get("stage") == stage and "eval_pass_at_1" in r}
    seconds, clock = {0: 0.0}, 0.0
    for r in steps:
        clock += r["step_s"]
        seconds[r["step"]] = clock
    def mean(key, rows):
        values = [r[key] for r in rows if r.get(key) is not None]
        return statistics.fmean(values) if values else float("nan")
    tail = max(1, len(steps) // 5)  # the first and last fifth of the run
    final = next(r for r in recs if r.get("stage") == "final")
    return {
        "curve": {s: evals[s]["eval_pass_at_1"] for s in sorted(evals)},
        "shows_work": {s: evals[s].get("eval_shows_work") for s in sorted(evals)},
        "seconds": {s: seconds.get(s, float("nan")) for s in sorted(evals)},
        "phases": {k: mean(f"{k}_s", steps) for k in ("rollout", "reward", "logprob", "adv", "critic", "update", "step")},
        "length": (mean("length", steps[:tail]), mean("length", steps[-tail:])),
        "length_wrong": (mean("length_wrong", steps[:tail]), mean("length_wrong", steps[-tail:])),
        "zero_std": mean("zero_std_frac", steps),
        "models": final["models"], "memory": final["memory"], "steps": len(steps),
    }


def spread(values: list[float], fmt: str = ".3f") -> str:
    """'mean (min-max)' over seeds, or the single value."""
    if len(values) == 1:
        return f"{values[0]:{fmt}}"
    return f"{statistics.fmean(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def print_comparison(summary: dict[str, dict[int, dict]], seeds: list[int]) -> None:
    """The tables of the README, from the runs' own metrics: curves, seconds, memory, models, lengths."""
    names = list(summary)
    first = summary[names[0]][seeds[0]]
    print(f"\n## held-out greedy pass@1 by RL step ({len(seeds)} seed(s): {seeds}; mean (min-max) over seeds)")
    steps = sorted(first["curve"])
    print("| run | " + " | ".join(f"step {s}" for s in steps) + " | gain | gain per RL minute |")
    print("|---|" + "---|" * (len(steps) + 2))
    for name in names:
        runs = [summary[name][s] for s in seeds]
        cells = [spread([r["curve"].get(step, float("nan")) for r in runs]) for step in steps]
        gains = [r["curve"][max(r["curve"])] - r["curve"][0] for r in runs]
        per_min = [g / (r["seconds"][max(r["curve"])] / 60) for g, r in zip(gains, runs)]
        print(f"| {name} | " + " | ".join(cells) + f" | {spread(gains)} | {spread(per_min)} |")
    print("\n## seconds per RL step by phase (mean over steps, then over seeds)")
    phases = ("rollout", "reward", "logprob", "adv", "critic", "update", "step")
    print("| run | " + " | ".join(phases) + " |")
    print("|---|" + "---|" * len(phases))
    for name in names:
        cells = [statistics.fmean(summary[name][s]["phases"][k] for s in seeds) for k in phases]
        print(f"| {name} | " + " | ".join("-" if c != c else f"{c:.3f}" for c in cells) + " |")
    print("\n## models held and peak memory of the RL stage (process RSS; CUDA: peak allocated)")
    print("| run | models (parameters) | total parameters | RSS increase MiB | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for name in names:
        r = summary[name][seeds[0]]
        models = ", ".join(f"{m['model']} ({m['params']:,})" if m.get("params") else m["model"] for m in r["models"])
        total = sum(m.get("params") or 0 for m in r["models"])
        inc = [summary[name][s]["memory"]["rss_increase_mib"] for s in seeds]
        peak = [summary[name][s]["memory"]["peak_rss_mib"] for s in seeds]
        print(f"| {name} | {models} | {total:,} | {spread(inc, '.0f')} | {spread(peak, '.0f')} |")
    if {"grpo", "ppo"} <= set(names):  # GRPO's cost as a fraction of PPO's
        mean = lambda name, get: statistics.fmean(get(summary[name][s]) for s in seeds)
        ratios = {"RSS increase": lambda r: r["memory"]["rss_increase_mib"], "seconds per step": lambda r: r["phases"]["step"],
                  "parameters held": lambda r: sum(m.get("params") or 0 for m in r["models"])}
        print("GRPO / PPO: " + ", ".join(f"{k} {mean('grpo', f) / mean('ppo', f):.2f}x" for k, f in ratios.items()))
    print("\n## completions: mean length (tokens), first -> last fifth of the run; zero-std groups")
    print("| run | all completions | wrong answers | zero-std group fraction | shows work at the end |")
    print("|---|---|---|---|---|")
    for name in names:
        runs = [summary[name][s] for s in seeds]
        length = " / ".join(f"{r['length'][0]:.1f} -> {r['length'][1]:.1f}" for r in runs)
        wrong = " / ".join(f"{r['length_wrong'][0]:.1f} -> {r['length_wrong'][1]:.1f}" for r in runs)
        shows = [r["shows_work"][max(r["shows_work"])] for r in runs]
        shows = spread(shows) if None not in shows else "-"
        print(f"| {name} | {length} | {wrong} | {spread([r['zero_std'] for r in runs])} | {shows} |")


def plot_comparison(summary: dict[str, dict[int, dict]], seeds: list[int], path: str) -> None:
    """pass@1 by step and by RL minute, one line per run and seed; needs matplotlib (optional, imported here)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot; pip install matplotlib for one)")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for i, name in enumerate(summary):
        for j, seed in enumerate(seeds):
            r = summary[name][seed]
            steps = sorted(r["curve"])
            kw = dict(color=f"C{i}", alpha=0.8, label=name if j == 0 else None, marker="o", markersize=3)
            axes[0].plot(steps, [r["curve"][s] for s in steps], **kw)
            axes[1].plot([r["seconds"][s] / 60 for s in steps], [r["curve"][s] for s in steps], **kw)
    axes[0].set_xlabel("RL step")
    axes[1].set_xlabel("RL minutes (steps only, evaluations excluded)")
    axes[0].set_ylabel("held-out greedy pass@1")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def bench_sweep(args, runs: dict[str, list[str]]):
    summary = {name: {s: summarise_run(recs) for s, recs in by_seed.items()}
               for name, by_seed in run_sweep(runs, args.seeds, args.out, args.rl_steps, args.train_args,
                                             args.sft_from).items()}
    print_comparison(summary, args.seeds)
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if not args.no_plot:
        plot_comparison(summary, args.seeds, os.path.join(args.out, f"{args.bench}.png"))


# ---------------------------------------------------------------------------------------------
# Peak memory of an RL step: GRPO against PPO at one model size
# ---------------------------------------------------------------------------------------------
def bench_memory(args):
    """The peak memory of GRPO's and PPO's steps at equal model size, each algorithm in its own train.py process.

    First a checkpoint of the chosen size (`--rl none`, one SFT step: the weights' values do not matter
    for memory), then `--steps` steps of each algorithm from it with the same questions, B x G
    completions and generation budget, gradient accumulation over --micro_batch completions and sampling in
    chunks of --forward_chunk, so that activations and the KV cache stay small and the models' weights,
    gradients and AdamW moments dominate, as they do at LLM scale. The evaluations are one problem each.
    Reports the process's peak RSS over the RL stage (CUDA: peak allocated), its increase over the RSS just
    before the stage (the policy already loaded) and over the RSS before any model existed, and the ratios.
    The runs go to OUT/<the settings>/ (init/, grpo/, ppo/): finished runs with the same settings are reused.
    """
    size = ["--n_layer", str(args.n_layer), "--n_head", str(args.n_head), "--n_embd", str(args.n_embd)]
    small = ["--n_train", "2000", "--n_test", "8", "--seed", str(args.seed)]  # a small split: memory, not accuracy
    out = os.path.join(args.out, f"L{args.n_layer}_H{args.n_head}_D{args.n_embd}_B{args.prompts}_G{args.group}_"
                                 f"T{args.max_new_tokens}_mb{args.micro_batch}_fc{args.forward_chunk}_"
                                 f"steps{args.steps}_seed{args.seed}")
    init = os.path.join(out, "init")
    os.makedirs(init, exist_ok=True)
    if not finished(init):
        train_run(["--rl", "none", "--sft_steps", "1", "--sft_minutes", "0", "--batch_size", "2", "--warmup_steps", "1",
                   "--eval_every", "1000", "--eval_n", "1", "--out_dir", init, *size, *small, *args.train_args],
                  os.path.join(init, "train.log"))
    rl = ["--init_from", os.path.join(init, "sft"), "--rl_steps", str(args.steps), "--rl_minutes", "0",
          "--prompts_per_step", str(args.prompts), "--group_size", str(args.group),
          "--max_new_tokens", str(args.max_new_tokens), "--overlong_cache", str(min(16, args.max_new_tokens)),
          "--micro_batch", str(args.micro_batch), "--forward_chunk", str(args.forward_chunk),
          "--rl_eval_n", "1", "--rl_eval_every", str(args.steps + 1), "--pass_k", "1", *small, *args.train_args]
    final = {}
    for algo in ("grpo", "ppo"):
        run_dir = os.path.join(out, algo)
        if not finished(run_dir):
            os.makedirs(run_dir, exist_ok=True)
            train_run([*rl, "--rl", algo, "--out_dir", run_dir], os.path.join(run_dir, "train.log"))
        recs = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
        final[algo] = next(r for r in recs if r.get("stage") == "final")
        final[algo]["step_s"] = statistics.fmean(r["step_s"] for r in recs if r.get("stage") == algo and "step_s" in r)
    print_memory(final, args)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(final, f, indent=1)


def print_memory(final: dict[str, dict], args) -> None:
    """The memory table: models and their states, the measured peaks, and GRPO / PPO."""
    params = final["grpo"]["models"][0]["params"]
    print(f"\n## peak memory of an RL step: {params:,}-parameter policy (L{args.n_layer} H{args.n_head} "
          f"D{args.n_embd}), {args.prompts} x G={args.group} completions of up to {args.max_new_tokens} tokens, "
          f"micro-batch {args.micro_batch or 'whole'}, forward chunk {args.forward_chunk or 'whole'}, "
          f"{args.steps} steps")
    cuda = "cuda_increase_mib" in final["grpo"]["memory"]
    head = "| | models held (parameters) | weights + grads + AdamW MiB | RSS before policy | RSS before RL | peak RSS " \
           "| increase over before RL | increase with the policy | s/step |"
    print(head + (" CUDA peak allocated MiB |" if cuda else ""))
    print("|---" * (head.count("|") - 1 + cuda) + "|")
    for algo, r in final.items():
        m = r["memory"]
        models = ", ".join(f"{x['model']} ({x['params']:,})" for x in r["models"] if x["params"])
        states = sum(x["mib"] for x in r["models"])
        row = (f"| {algo} | {models} | {states:.0f} | {m['rss_before_policy_mib']:.0f} | {m['rss_before_mib']:.0f} | "
               f"{m['peak_rss_mib']:.0f} | {m['rss_increase_mib']:.0f} | {m['rss_increase_with_policy_mib']:.0f} | "
               f"{r['step_s']:.1f} |")
        print(row + (f" {m['cuda_peak_allocated_mib']:.0f} |" if cuda else ""))
    g, p = final["grpo"]["memory"], final["ppo"]["memory"]
    ratios = {"peak RSS": "peak_rss_mib", "increase over the RSS before RL": "rss_increase_mib",
              "increase with the policy": "rss_increase_with_policy_mib"}
    if cuda:
        ratios["CUDA peak allocated"] = "cuda_peak_allocated_mib"
    print("GRPO / PPO: " + ", ".join(f"{k} {g[v] / p[v]:.2f}x" for k, v in ratios.items()))
    if not (g["peak_rss_reset"] and p["peak_rss_reset"]):
        print("(the peak RSS mark could not be reset: the peaks are the processes' own, SFT's load included)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="bench", required=True)
    s = sub.add_parser("sampling", help="KV-cached vs uncached batched greedy sampling")
    s.add_argument("--batch", type=int, default=128, help="sequences sampled together")
    s.add_argument("--new_tokens", type=int, default=64, help="tokens generated per sequence")
    s.add_argument("--prompt_len", type=int, default=24, help="longest prompt (shortest is half)")
    s.add_argument("--n_layer", type=int, default=4)
    s.add_argument("--n_head", type=int, default=4)
    s.add_argument("--n_embd", type=int, default=128)
    s.add_argument("--vocab", type=int, default=384)
    s.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    g = sub.add_parser("grpo", help="seconds per GRPO step, split by phase, and rollout tokens/s by batch")
    o = sub.add_parser("ppo", help="seconds per step of GRPO and of PPO side by side, split by phase; their models")
    st = sub.add_parser("step", help="the GRPO step with --prompt_once against without, in alternated rounds")
    st.add_argument("--rounds", type=int, default=3, help="alternated rounds of both")
    st.add_argument("--trl", type=float, default=0.0, help="TRL's seconds per step on the same work "
                    "(tools/time_trl.py), to print each one's ratio to it")
    g.add_argument("--prompt_once", action="store_true", help="run each group's prompt once (train.py --prompt_once)")
    for parser in (g, o, st):
        parser.add_argument("--n_layer", type=int, default=4)
        parser.add_argument("--n_head", type=int, default=4)
        parser.add_argument("--n_embd", type=int, default=128)
        parser.add_argument("--prompts", type=int, default=16, help="prompts per step (B)")
        parser.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
        parser.add_argument("--max_new_tokens", type=int, default=64)
        parser.add_argument("--kl_coef", type=float, default=0.04, help="beta; 0 skips the reference's forward pass")
        parser.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    g.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128, 256],
                   help="batch sizes of the tokens/s table")
    for parser in (s, g, o, st):
        parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    c = sub.add_parser("compare", help="GRPO against PPO: whole runs from one SFT model per seed, and their tables")
    v = sub.add_parser("variants", help="DeepSeekMath GRPO, Dr. GRPO, DAPO-style and process supervision, the same way")
    for parser, out in ((c, "runs/compare"), (v, "runs/variants")):
        parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one SFT start and one run each per seed")
        parser.add_argument("--rl_steps", type=int, default=200, help="RL steps of every run (no time budget)")
        parser.add_argument("--out", default=out, help="the sweep's directory: seedS/ (SFT), seedS/NAME/ (each run)")
        parser.add_argument("--sft_from", default="", help="start every run from these SFT checkpoints instead of "
                            "training them, {seed} filled in: e.g. runs/default_s{seed}/sft (same config and seed)")
        parser.add_argument("--no_plot", action="store_true", help="skip the plot (it needs matplotlib)")
        parser.add_argument("train_args", nargs="*", help="after --: flags for every train.py run")
    m = sub.add_parser("memory", help="peak memory of GRPO and of PPO steps at one model size, each in its process")
    m.add_argument("--n_layer", type=int, default=8)
    m.add_argument("--n_head", type=int, default=16)
    m.add_argument("--n_embd", type=int, default=1024)
    m.add_argument("--prompts", type=int, default=4, help="prompts per step (B)")
    m.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    m.add_argument("--max_new_tokens", type=int, default=64)
    m.add_argument("--micro_batch", type=int, default=1, help="completions per forward + backward pass (0: all)")
    m.add_argument("--forward_chunk", type=int, default=8, help="completions per no-grad forward pass (0: all)")
    m.add_argument("--steps", type=int, default=2, help="RL steps of each algorithm")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", default="runs/memory", help="OUT/<settings>/: init/ (the checkpoint), grpo/ and ppo/")
    m.add_argument("train_args", nargs="*", help="after --: flags for every train.py run")
    args = p.parse_args(argv)
    if getattr(args, "threads", 0):
        torch.set_num_threads(args.threads)
    if args.bench in ("compare", "variants"):
        return bench_sweep(args, COMPARE if args.bench == "compare" else VARIANTS)
    if args.bench == "memory":
        return bench_memory(args)
    {"sampling": bench_sampling, "grpo": bench_grpo, "ppo": bench_ppo, "step": bench_step}[args.bench](args)


if __name__ == "__main__":
    main()
