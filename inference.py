"""Inference-time scaling: spend more samples (or tokens) at test time, then pick one answer without the gold answer.

    python verifier.py runs/default/grpo --out_dir runs/default/verifier_grpo       # an outcome verifier first
    python inference.py curve runs/default/sft runs/default/grpo \
        --verifier runs/default/verifier_sft runs/default/verifier_grpo             # accuracy against N
    python inference.py budget runs/default/sft runs/default/grpo                  # accuracy against a think cap

Training Verifiers to Solve Math Word Problems (Cobbe et al. 2021, arXiv 2110.14168) samples many solutions and
lets a verifier pick; Self-Consistency (Wang et al. 2022, arXiv 2203.11171) takes the majority answer. DeepSeek-R1
reports both beside pass@1 (cons@64). Every selector here sees only the sampled completions and scores a model
gives them, never the gold answer; pass@N, which does see it, is the oracle they are measured against.

    weighted_vote      the answer with the largest total weight (all weights 1: grpo.majority_vote, cons@k's vote)
    best_of_n          the answer of the highest-scoring sample (a verifier's score, a process score, a log-prob)
    process_score      the share of a completion's calculator steps that the rule checker accepts (no gold answer)
    SELECTORS          the selectors by name, each (answers, scores) -> the chosen answer
    accuracy_at_n      accuracy against N from one sampling pass: every smaller N from random subsets of the n
                       samples, pass@N exactly (grpo.pass_at_k)
    sequence_flops     the forward FLOPs of one sequence (Kaplan et al.), to set N samples against model sizes
    sample_candidates  n samples of each question in one pass, with every score a selector can use
    PICKS, curve       the picks of the curve and of sample.py --best_of, each a (selector, score) pair, and
                       their accuracy against N
    choose             one question's pick among its candidates, and which samples won it
    complete_with_budget   greedy completions whose thinking is cut at a budget, then answered

>>> weighted_vote([3, 5, 5, 3], [0.9, 0.2, 0.3, 0.1])   # 3: 1.0 against 5: 0.5
3
>>> best_of_n([3, 5, 4], [0.1, 0.7, 0.2])
5
"""

from __future__ import annotations

import argparse
import json
import random
import sys

import torch

import grpo
import rewards
import sample
import tasks
import verifier
from model import generate


def weighted_vote(answers: list, weights: list[float]) -> object | None:
    """The answer whose samples' weights sum highest, ties going to the one seen first; None if no sample gave
    an answer (a None answer abstains). With every weight 1 this is the majority vote of cons@k; with a
    verifier's probabilities it is the verifier-weighted vote (Uesato et al. 2022, arXiv 2211.14275).

    [3, 5, 5, 3] with [0.9, 0.2, 0.3, 0.1] -> 3 (1.0 > 0.5);   [3, 5] with [1, 1] -> 3;   [None] -> None
    """
    if len(answers) != len(weights):
        raise ValueError(f"weighted_vote needs one weight per answer, got {len(answers)} answers and {len(weights)} "
                         "weights")
    totals: dict = {}
    for answer, weight in zip(answers, weights):
        if answer is not None:
            totals[answer] = totals.get(answer, 0.0) + weight  # dicts keep insertion order: ties to the first seen
    return max(totals, key=totals.get) if totals else None


def best_of_n(answers: list, scores: list[float]) -> object | None:
    """The answer of the highest-scoring sample, ties going to the first; its answer may be None (no answer), and
    then the pick is wrong, as a verifier that trusts a completion without an answer deserves.

    [3, 5, 4] with [0.1, 0.7, 0.2] -> 5;   [3, 5] with [0.5, 0.5] -> 3
    """
    if len(answers) != len(scores) or not answers:
        raise ValueError(f"best_of_n needs one score per answer and at least one, got {len(answers)} answers and "
                         f"{len(scores)} scores")
    return answers[max(range(len(scores)), key=scores.__getitem__)]


def process_score(completion: str) -> float:
    """The share of a completion's <<expr=value>> calculator steps whose arithmetic the rule checker accepts
    (rewards.step_rewards), 0.0 without any: a score of the working, computed without the gold answer.

    "2+3 = <<2+3=5>>5, 5*4 = <<5*4=21>>21" -> 0.5;   "the answer is 20" -> 0.0
    """
    steps = rewards.step_rewards(completion)
    return sum(s.reward for s in steps) / len(steps) if steps else 0.0


SELECTORS = {
    "vote": lambda answers, scores: grpo.majority_vote(answers),  # maj@N, the vote of cons@k
    "weighted_vote": weighted_vote,  # weights: the scores
    "best_of_n": best_of_n,
}


def accuracy_at_n(samples: list[list[tuple]], ns: list[int], selector: str, resamples: int,
                  seed: int = 0) -> dict[int, float]:
    """Accuracy against N for one selector, from one sampling pass of n samples per question.

    samples: per question, its n samples as (answer, correct, score) (answer: the parsed value or None; correct:
    whether it matches the gold answer, used only to score the pick). For each N, `resamples` random N-subsets of
    each question's samples (drawn from Random(f"{seed}-{N}"), the same subsets for every selector) are given to
    SELECTORS[selector]; the accuracy is the share of picks whose answer is a correct sample's. selector "pass"
    is the oracle pass@N, computed exactly by grpo.pass_at_k instead.

    Two questions, 3 samples each, all of them picked from (N = 3): the majority is right in the first only, the
    top score in both, and each has a right sample:
    >>> s = [[(5, True, 0.9), (4, False, 0.1), (5, True, 0.2)], [(2, False, 0.1), (3, True, 0.9), (2, False, 0.2)]]
    >>> accuracy_at_n(s, [3], "vote", 1), accuracy_at_n(s, [3], "best_of_n", 1), accuracy_at_n(s, [3], "pass", 1)
    ({3: 0.5}, {3: 1.0}, {3: 1.0})
    """
    if selector not in SELECTORS and selector != "pass":
        raise ValueError(f"unknown selector {selector!r}; allowed: pass, {', '.join(SELECTORS)}")
    out = {}
    for n in ns:
        if not all(1 <= n <= len(q) for q in samples):
            raise ValueError(f"N={n}: every question needs at least N samples (fewest: {min(map(len, samples))})")
        if selector == "pass":
            out[n] = sum(grpo.pass_at_k(len(q), sum(c for _, c, _ in q), n) for q in samples) / len(samples)
            continue
        pick, rng, hits = SELECTORS[selector], random.Random(f"{seed}-{n}"), 0
        for q in samples:
            right = {a for a, c, _ in q if c and a is not None}
            for _ in range(resamples):
                subset = rng.sample(q, n)
                hits += pick([a for a, _, _ in subset], [s for _, _, s in subset]) in right
        out[n] = hits / (len(samples) * resamples)
    return out


# ---------------------------------------------------------------------------------------------
# Compute: what N samples cost
# ---------------------------------------------------------------------------------------------
def sequence_flops(n_params: int, n_layer: int, n_embd: int, length: int) -> int:
    """C = sum_{t=1}^{L} (2 N + 2 n_layer t d) = 2 N L + n_layer d L (L + 1): the forward FLOPs of one sequence of
    L tokens, each token attending to the t before it (Scaling Laws for Neural Language Models, Kaplan et al. 2020,
    arXiv 2001.08361, Table 1: C_forward = 2N + 2 n_layer n_ctx d per token). N counts every parameter once: with
    the tied head, the embedding matrix is the LM head's matmul. A KV-cached sample of prompt p and completion c
    costs sequence_flops(..., p + c); a verifier's score of it about the same.

    (N, n_layer, d, L) = (10, 2, 4, 3) -> 2*10*3 + 2*4*3*4 = 156
    """
    return 2 * n_params * length + n_layer * n_embd * length * (length + 1)


# ---------------------------------------------------------------------------------------------
# One sampling pass, every score
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def sample_candidates(model, tok, problems: list[tasks.Problem], n: int, template: str, max_new_tokens: int,
                      temperature: float, top_p: float, generator: torch.Generator, scorer=None,
                      batch_size: int = 256) -> list[dict]:
    """n samples of each problem from one batched pass, each with what a selector may look at, per problem:
    answers (rewards.parse_number of the extracted answer, None if none), correct (the rule checker against the
    gold answer, only to score a pick; None for a problem whose answer is ""), texts, prompt_length (tokens),
    lengths (completion tokens, EOS included), flops (of sampling each), and scores: "logprob" (mean log pi per
    token at the sampling temperature), "process" (process_score), and with a verifier `scorer` (a model.Critic)
    "verifier" (sigmoid of its logit: its probability of being right)."""
    was_training = model.training
    model.eval()
    questions = [p.question for p in problems for _ in range(n)]
    prompts = [tasks.encode(tok, tasks.format_prompt(q, template)) for q in questions]
    texts, lengths, logprobs = [], [], []
    for i in range(0, len(prompts), batch_size):
        roll = generate(model, prompts[i:i + batch_size], max_new_tokens, tasks.eos_id(tok), tasks.PAD_ID, temperature,
                        top_p=top_p if top_p < 1 else None, generator=generator)
        texts += sample.decode_completions(tok, roll)
        count = roll.mask.sum(-1)
        lengths += count.tolist()
        logprobs += ((roll.logprobs * roll.mask).sum(-1) / count.clamp(min=1)).tolist()
    model.train(was_training)
    cfg = model.cfg
    flops = [sequence_flops(model.num_params(), cfg.n_layer, cfg.n_embd, len(pr) + c) for pr, c in zip(prompts, lengths)]
    probs = torch.sigmoid(verifier.verifier_scores(scorer, tok, questions, texts, template)).tolist() if scorer else None
    out = []
    for j, p in enumerate(problems):
        rows = range(j * n, (j + 1) * n)
        answers = [rewards.parse_number(rewards.extract_answer(texts[r])) for r in rows]
        scores = {"logprob": [logprobs[r] for r in rows], "process": [process_score(texts[r]) for r in rows]}
        if probs is not None:
            scores["verifier"] = [probs[r] for r in rows]
        out.append({"question": p.question, "answers": answers,  # a question asked without its answer: None
                    "correct": [rewards.accuracy_reward(texts[r], p.answer) > 0 if p.answer else None for r in rows],
                    "texts": [texts[r] for r in rows], "prompt_length": len(prompts[j * n]),
                    "lengths": [lengths[r] for r in rows],
                    "flops": [flops[r] for r in rows], "scores": scores})
    return out


# the curve's columns: name -> (selector, the score it reads; None: every weight 1)
PICKS = {
    "pass@N": ("pass", None),  # the oracle: some sample is right
    "vote": ("vote", None),  # maj@N
    "verifier": ("best_of_n", "verifier"),
    "weighted": ("weighted_vote", "verifier"),
    "process": ("best_of_n", "process"),
    "logprob": ("best_of_n", "logprob"),
}


def choose(candidate: dict, pick: str) -> tuple[object, list[int]]:
    """(the chosen answer, the samples that gave it) of one question's candidates (sample_candidates) by PICKS
    name (not the oracle "pass@N"); for best-of-N the winner is the first top-scoring sample alone."""
    selector, score = PICKS[pick]
    if selector == "pass":
        raise ValueError("pass@N sees the gold answer: it is not a way to choose")
    weights = candidate["scores"][score] if score else [1.0] * len(candidate["answers"])
    answer = SELECTORS[selector](candidate["answers"], weights)
    if selector == "best_of_n":
        return answer, [max(range(len(weights)), key=weights.__getitem__)]
    return answer, [i for i, a in enumerate(candidate["answers"]) if a is not None and a == answer]


def curve(candidates: list[dict], ns: list[int], resamples: int, seed: int = 0) -> dict[str, dict[int, float]]:
    """Accuracy against N of every pick in PICKS whose score the candidates have (the verifier's only with one),
    from `accuracy_at_n` on the same random subsets."""
    out = {}
    for name, (selector, score) in PICKS.items():
        if score is not None and score not in candidates[0]["scores"]:
            continue
        samples = [list(zip(c["answers"], c["correct"], c["scores"][score] if score else [1.0] * len(c["answers"])))
                   for c in candidates]
        out[name] = accuracy_at_n(samples, ns, selector, resamples, seed)
    return out


# ---------------------------------------------------------------------------------------------
# Thinking budgets
# ---------------------------------------------------------------------------------------------
CLOSE = " </think>"  # what a completion cut at its budget is given, before it answers


@torch.no_grad()
def complete_with_budget(model, tok, questions: list[str], template: str, budget: int, answer_tokens: int,
                         batch_size: int = 256) -> tuple[list[str], list[bool]]:
    """Greedy completions whose first `budget` tokens are all the thinking they get (budget forcing, as in
    s1: Simple test-time scaling, Muennighoff et al. 2025, arXiv 2501.19393), and whether each was cut.

    A completion that ends (EOS) within the budget is kept as it is. One that runs on is cut at the budget: if
    it has closed its <think> block it simply goes on, else it is given CLOSE; then it gets `answer_tokens` more
    tokens to write its answer in. Returns (texts, cut: True where CLOSE was forced)."""
    prompts = [tasks.encode(tok, tasks.format_prompt(q, template)) for q in questions]
    close = tasks.encode(tok, CLOSE)
    need = max(map(len, prompts)) + budget + len(close) + answer_tokens
    if need > model.cfg.max_seq_len:
        raise ValueError(f"a budget of {budget} think tokens and {answer_tokens} answer tokens after a prompt of "
                         f"{max(map(len, prompts))} need {need} positions; the checkpoint has {model.cfg.max_seq_len}")
    was_training = model.training
    model.eval()
    eos = tasks.eos_id(tok)
    first = generate(model, prompts, budget, eos, tasks.PAD_ID, temperature=0.0, max_batch=batch_size)
    texts, cut, again = [], [], []
    for i, (ids, mask, ran_on) in enumerate(zip(first.ids.tolist(), first.mask.tolist(), first.truncated.tolist())):
        toks = [t for t, m in zip(ids, mask) if m and t != eos]
        text = tasks.decode(tok, toks)
        closed = "</think>" in text
        forced = ran_on and not closed
        texts.append(text + (CLOSE if forced else ""))
        cut.append(forced)
        if ran_on:
            again.append((i, prompts[i] + toks + (close if forced else [])))
    if again:
        second = generate(model, [ids for _, ids in again], answer_tokens, eos, tasks.PAD_ID,
                          temperature=0.0, max_batch=batch_size)
        for (i, _), text in zip(again, sample.decode_completions(tok, second)):
            texts[i] += text
    model.train(was_training)
    return texts, cut


def think_tokens(tok, text: str) -> int:
    """The tokens a completion spends before </think> (all of them if it never closes the block)."""
    return len(tasks.encode(tok, text.split("</think>")[0]))


# ---------------------------------------------------------------------------------------------
# The commands
# ---------------------------------------------------------------------------------------------
def powers_of_two(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself if it is not a power of two: 64 -> [1, 2, 4, 8, 16, 32, 64]."""
    ns = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ns if ns[-1] == n else ns + [n]


def load_for_command(path: str, parser) -> tuple:
    """(model, tokenizer, train_config, the checkpoint directory) of a checkpoint or run directory."""
    path = sample.checkpoint_dir(path)
    model, meta, tok = sample.load_model(path, "cpu", parser)
    if not (meta or {}).get("train_config"):
        parser.error(f"{path}: no train_config in the checkpoint, so its held-out problems are unknown")
    return model, tok, meta["train_config"], path


def run_curve(args, parser) -> dict:
    """For each checkpoint: one pass of --n samples per held-out question, the accuracy-against-N table, and a
    table of every checkpoint's points by sampling FLOPs per question (train-time against test-time compute)."""
    if args.verifier and len(args.verifier) != len(args.checkpoints):
        parser.error(f"--verifier: give one per checkpoint ({len(args.checkpoints)}), got {len(args.verifier)}")
    ns, results = powers_of_two(args.n), {}
    for i, path in enumerate(args.checkpoints):
        model, tok, config, path = load_for_command(path, parser)
        scorer = None
        if args.verifier:
            try:
                scorer = verifier.load(args.verifier[i], model)
            except (FileNotFoundError, ValueError) as e:
                parser.error(str(e))
        problems = sample.held_out_problems(config, args.questions)
        gen = torch.Generator().manual_seed(args.seed)
        cands = sample_candidates(model, tok, problems, args.n, config["template"], config["max_new_tokens"],
                                  args.temperature, args.top_p, gen, scorer, args.batch_size)
        table = curve(cands, ns, args.resamples, args.seed)
        flops = sum(f for c in cands for f in c["flops"]) / (len(cands) * args.n)  # per sample
        ver_flops = sum(sequence_flops(scorer.num_params(), scorer.cfg.n_layer, scorer.cfg.n_embd,
                                       c["prompt_length"] + length) for c in cands for length in c["lengths"]) \
            / (len(cands) * args.n) if scorer else 0.0
        mean_len = sum(sum(c["lengths"]) for c in cands) / (len(cands) * args.n)
        results[path] = {"questions": len(problems), "n": args.n, "resamples": args.resamples,
                         "temperature": args.temperature, "top_p": args.top_p, "mean_length": mean_len,
                         "flops_per_sample": flops, "verifier_flops_per_sample": ver_flops,
                         "curve": {k: {str(n): v for n, v in col.items()} for k, col in table.items()}}
        print(f"\n{path}: {len(problems)} held-out questions, {args.n} samples each at temperature "
              f"{args.temperature}, top-p {args.top_p}; mean length {mean_len:.1f} tokens, {flops / 1e6:.1f} MFLOPs a "
              f"sample" + (f" (+{ver_flops / 1e6:.1f} for the verifier's score)" if scorer else "")
              + f"; every N < {args.n} from {args.resamples} random N-subsets per question")
        names = list(table)
        print("| N | MFLOPs | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names))
        for n in ns:
            print(f"| {n} | {n * flops / 1e6:.1f} | " + " | ".join(f"{table[k][n]:.3f}" for k in names) + " |")
    if len(results) > 1:
        print("\nEvery point by sampling compute per question (the verifier's scoring not counted):")
        print("| MFLOPs | checkpoint | N | pass@N | vote |\n|---|---|---|---|---|")
        points = sorted((r["flops_per_sample"] * n, path, n, r["curve"]) for path, r in results.items() for n in ns)
        for f, path, n, col in points:
            print(f"| {f / 1e6:.1f} | {path} | {n} | {col['pass@N'][str(n)]:.3f} | {col['vote'][str(n)]:.3f} |")
    if args.plot:
        plot_curves(results, args.plot)
    return results


def plot_curves(results: dict, path: str) -> None:
    """Accuracy against sampling FLOPs per question, a line per checkpoint and pick; needs matplotlib (optional,
    imported here)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot; pip install matplotlib for one)")
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = ["--", "-", ":", "-."]  # a line style per checkpoint, a colour per pick
    for i, (run, r) in enumerate(results.items()):
        for name, col in r["curve"].items():
            ns = sorted(col, key=int)
            ax.plot([int(n) * r["flops_per_sample"] for n in ns], [col[n] for n in ns], marker="o", markersize=3,
                    color=f"C{list(PICKS).index(name)}", linestyle=styles[i % len(styles)], label=f"{run}: {name}")
    ax.set_xscale("log")
    ax.set_xlabel("sampling FLOPs per question")
    ax.set_ylabel("held-out accuracy")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def run_budget(args, parser) -> dict:
    """For each checkpoint: greedy pass@1 at each think budget and at its natural length, and pass@1 by the
    natural length's quartile."""
    try:
        budgets, results = [int(b) for b in args.budgets.split(",")], {}
    except ValueError:
        parser.error(f"--budgets: whole numbers of tokens separated by commas, such as 8,16,32; got {args.budgets!r}")
    if any(b < 1 for b in budgets):
        parser.error(f"--budgets: every budget must be >= 1 token, got {args.budgets}")
    for path in args.checkpoints:
        model, tok, config, path = load_for_command(path, parser)
        problems = sample.held_out_problems(config, args.questions)
        questions, template = [p.question for p in problems], config["template"]
        rows = []
        for budget in budgets:
            try:
                texts, cut = complete_with_budget(model, tok, questions, template, budget, args.answer_tokens,
                                                  args.batch_size)
            except ValueError as e:
                parser.error(f"--budgets {budget}: {e}")
            rows.append((str(budget), sample.pass_rate(texts, problems), sum(cut) / len(cut),
                         sum(think_tokens(tok, t) for t in texts) / len(texts)))
        natural = sample.complete(model, tok, questions, template, config["max_new_tokens"], batch_size=args.batch_size)
        natural_think = [think_tokens(tok, t) for t in natural]
        rows.append(("natural", sample.pass_rate(natural, problems), 0.0, sum(natural_think) / len(natural)))
        by_length = sorted(zip(natural_think, natural, problems), key=lambda x: x[0])
        quarters = [by_length[q * len(by_length) // 4:(q + 1) * len(by_length) // 4] for q in range(4)]
        results[path] = {"questions": len(problems), "answer_tokens": args.answer_tokens,
                         "budgets": [dict(zip(("budget", "pass_at_1", "cut", "think_tokens"), r)) for r in rows],
                         "natural_quartiles": [{"think_tokens": [part[0][0], part[-1][0]],
                                                "pass_at_1": sample.pass_rate([t for _, t, _ in part],
                                                                              [p for _, _, p in part])}
                                               for part in quarters if part]}
        print(f"\n{path}: greedy pass@1 on {len(problems)} held-out questions, thinking cut at each budget "
              f"(then {args.answer_tokens} tokens to answer in)")
        print("| think budget | pass@1 | cut | mean think tokens |\n|---|---|---|---|")
        for name, acc, c, mean in rows:
            print(f"| {name} | {acc:.3f} | {c:.3f} | {mean:.1f} |")
        print("| natural think tokens (quarter of the questions) | pass@1 |\n|---|---|")
        for q in results[path]["natural_quartiles"]:
            print(f"| {q['think_tokens'][0]}-{q['think_tokens'][1]} | {q['pass_at_1']:.3f} |")
    return results


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("curve", help="accuracy against N samples for every selector, from one sampling pass")
    c.add_argument("checkpoints", nargs="+", help="checkpoint or run directories (a run's latest stage)")
    c.add_argument("--verifier", nargs="+", default=[], help="one verifier (verifier.py) per checkpoint, in order")
    c.add_argument("--n", type=int, default=64, help="samples per question; every N = 1, 2, 4, ... up to it")
    c.add_argument("--questions", type=int, default=500, help="held-out questions")
    c.add_argument("--resamples", type=int, default=100, help="random N-subsets per question for each N < n")
    c.add_argument("--temperature", type=float, default=0.6)
    c.add_argument("--top_p", type=float, default=0.95)
    c.add_argument("--plot", default="", help="save a plot of accuracy against FLOPs here (needs matplotlib)")
    b = sub.add_parser("budget", help="greedy accuracy against a cap on think tokens, and against natural length")
    b.add_argument("checkpoints", nargs="+", help="checkpoint or run directories (a run's latest stage)")
    b.add_argument("--budgets", default="8,16,24,32,48,64", help="think budgets in tokens, comma-separated")
    b.add_argument("--answer_tokens", type=int, default=16, help="tokens to answer in after a cut")
    b.add_argument("--questions", type=int, default=500, help="held-out questions")
    for q in (c, b):
        q.add_argument("--batch_size", type=int, default=256, help="rows sampled at once")
        q.add_argument("--seed", type=int, default=0, help="sampling and subset seed")
        q.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
        q.add_argument("--out", default="", help="write the numbers to this JSON file too")
    args = p.parse_args(argv)
    checks = [("questions", args.questions >= 1, ">= 1"), ("batch_size", args.batch_size >= 1, ">= 1")]
    if args.command == "curve":
        checks += [("n", args.n >= 1, ">= 1"), ("resamples", args.resamples >= 1, ">= 1"),
                   ("temperature", args.temperature > 0, "> 0 (N samples of a greedy model are one answer)"),
                   ("top_p", 0 < args.top_p <= 1, "in (0, 1]")]
    else:
        checks += [("answer_tokens", args.answer_tokens >= 1, ">= 1")]
    for name, ok, rule in checks:
        if not ok:
            p.error(f"--{name} must be {rule}, got {getattr(args, name)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        results = run_curve(args, p) if args.command == "curve" else run_budget(args, p)
    except (FileNotFoundError, ValueError) as e:
        p.error(str(e))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
        print(f"numbers: {args.out}", file=sys.stderr)
    return results


if __name__ == "__main__":
    main()
