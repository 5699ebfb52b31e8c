"""Stage 3 of the DeepSeek-R1 pipeline: rejection sampling, then SFT on what was kept.

DeepSeek-R1 (arXiv 2501.12948, §2.3.3): once reasoning-oriented RL has converged, its checkpoint collects the SFT
data of the next round. For each prompt it samples several responses and keeps only the correct ones, dropping
chains of thought with mixed languages, long paragraphs or code blocks (about 600k reasoning samples). It adds
about 200k non-reasoning samples (writing, factual QA; a simple query gets no chain of thought), and fine-tunes
DeepSeek-V3-Base, the model stage 1 started from, for two epochs on the ~800k.

In miniature, on the run's own training questions (design: Rejection sampling in miniature):
    readable          the readability rule: at least one calculator step, every step's arithmetic right, no step
                      done twice, and only characters of the worked solutions (the analogue of one language)
    verdict           kept, or why not: wrong answer, no R1 format, truncated, unreadable
    dedupe            one copy of each (question, completion), spaces normalised
    rejection_sample  k completions per question from the stage-2 policy, in batches written to a file as they
                      are done (a killed run continues from the last whole batch); the kept ones and the counts
    non_reasoning     one-operation questions answered directly, with an empty <think> block
    stage_examples    the SFT mix as token ids: the kept reasoning plus a fraction of non-reasoning examples

Seen as a gradient (DeepSeekMath, arXiv 2402.03300, §5.2 and Table 10; `grpo.gradient_coefficient`): SFT on the
kept samples is RFT, whose coefficient is I(o), 1 for a kept completion and 0 for a rejected one, on samples drawn
once from a fixed policy. Online RFT draws them from the policy being trained. GRPO replaces I(o) by the
group-relative advantage, which also pushes the wrong completions down.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random

import rewards
import rollouts
import sft
import tasks
from checkpoint import step_generator

VERDICTS = ("kept", "wrong", "format", "truncated", "unreadable")
CANDIDATES_FILE = "candidates.jsonl"  # in out_dir/rejection/: every sampled completion and its verdict


def alphabet(problems) -> frozenset[str]:
    """The characters of the worked solutions in the R1 format: what a readable chain of thought is written in.

    >>> sorted(alphabet([tasks.Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5")]))[:6]
    [' ', '+', '/', '2', '3', '5']
    """
    return frozenset("".join(tasks.format_completion(p) for p in problems))


def readable(completion: str, chars: frozenset[str]) -> str:
    """'' if the chain of thought is readable, else the rule it breaks (design: Rejection sampling in miniature):

        'no steps'              no <<expr=value>> calculator step: an answer, not a worked solution
        'wrong step'            a step's arithmetic is wrong (rewards.step_rewards), even if the answer is right
        'repeated step'         the same calculation done twice: rambling (a worked solution never repeats one)
        "foreign character 'x'" a character no worked solution uses: the analogue of mixing languages

    >>> chars = alphabet([tasks.Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5")])
    >>> readable(" <think> 2+3 = <<2+3=5>>5 </think> <answer> 5 </answer>", chars)
    ''
    >>> readable(" <think> 2+3 = <<2+3=4>>5 </think> <answer> 5 </answer>", chars)
    'wrong step'
    >>> readable(" <think> 2+3 = <<2+3=5>>5 </think> <answer> 5! </answer>", chars)
    "foreign character '!'"
    """
    steps = rewards.step_rewards(completion)
    if not steps:
        return "no steps"
    if any(s.reward < 1.0 for s in steps):
        return "wrong step"
    exprs = [" ".join(s.expr.split()) for s in steps]
    if len(set(exprs)) < len(exprs):
        return "repeated step"
    foreign = sorted(set(completion) - chars)
    return f"foreign character {foreign[0]!r}" if foreign else ""


def verdict(completion: str, gold: str, truncated: bool, chars: frozenset[str]) -> str:
    """Why a sampled completion is kept or not, checked in this order: 'truncated' (it hit max_new_tokens),
    'format' (not R1's <think> </think> <answer> </answer>), 'wrong' (its answer is not gold), 'unreadable'
    (`readable`), else 'kept'."""
    if truncated:
        return "truncated"
    if rewards.format_reward(completion) < 1.0:
        return "format"
    if rewards.accuracy_reward(completion, gold) < 1.0:
        return "wrong"
    return "unreadable" if readable(completion, chars) else "kept"


def dedupe(pairs: list[tuple[tasks.Problem, str]]) -> list[tuple[tasks.Problem, str]]:
    """The (problem, completion) pairs with each (question, completion) once, spaces normalised; first kept."""
    seen, out = set(), []
    for problem, text in pairs:
        key = (tasks.normalise_question(problem.question), " ".join(text.split()))
        if key not in seen:
            seen.add(key)
            out.append((problem, text))
    return out


def read_candidates(path: str) -> list[list[dict]]:
    """The whole batches of a candidates file, each a list of records; what follows the last whole batch (a kill
    mid-batch) is cut off the file, so that the batch is sampled again."""
    if not os.path.exists(path):
        return []
    batches, current, keep = [], [], 0
    with open(path, "rb") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break  # a line cut by a kill
            if "done" in record:  # the end of batch record["done"]
                batches.append(current)
                current, keep = [], f.tell()
            else:
                current.append(record)
    with open(path, "ab") as f:
        f.truncate(keep)
    return batches


def sample_batch(policy, tok, problems: list[tasks.Problem], cfg, generator) -> tuple[list[str], list[bool]]:
    """cfg.rs_samples completions of each problem, consecutive (rollouts.sample_groups with G = rs_samples):
    their texts and whether each hit max_new_tokens."""
    roll = rollouts.sample_groups(policy, tok, problems, dataclasses.replace(cfg, group_size=cfg.rs_samples), generator)
    return roll.texts, roll.truncated.tolist()


def rejection_sample(policy, tok, problems: list[tasks.Problem], cfg, chars: frozenset[str], path: str,
                     device: str = "cpu") -> tuple[list[tuple[tasks.Problem, str]], dict]:
    """Sample cfg.rs_samples completions of each problem from `policy` (cfg.temperature), rs_batch questions at a
    time, each batch's records appended to `path` when whole; judge each (`verdict`) and keep the accepted ones,
    deduplicated. Batch b draws from step_generator(seed, "rejection", b): resumed or not, the same samples.
    Returns (kept pairs, counts): questions, samples, each verdict, kept after dedupe, acceptance rate (kept
    samples / samples, before dedupe), the fraction of questions with at least one kept sample."""
    by_question = {p.question: p for p in problems}
    batches = read_candidates(path)
    size = cfg.rs_batch
    for b in range(len(batches), (len(problems) + size - 1) // size):
        part = problems[b * size:(b + 1) * size]
        texts, truncated = sample_batch(policy, tok, part, cfg, step_generator(cfg.seed, "rejection", b, device))
        golds = [p for p in part for _ in range(cfg.rs_samples)]
        records = [dict(question=p.question, completion=text, truncated=bool(cut),
                        verdict=verdict(text, p.answer, bool(cut), chars))
                   for p, text, cut in zip(golds, texts, truncated)]
        with open(path, "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in records) + json.dumps({"done": b}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        batches.append(records)
        print(f"rejection sampling: {min((b + 1) * size, len(problems))}/{len(problems)} questions, "
              f"{sum(r['verdict'] == 'kept' for r in records)}/{len(records)} kept in this batch", flush=True)
    records = [r for batch in batches for r in batch]
    accepted = [(by_question[r["question"]], r["completion"]) for r in records if r["verdict"] == "kept"]
    kept = dedupe(accepted)
    counts = {v: sum(r["verdict"] == v for r in records) for v in VERDICTS}
    stats = dict(questions=len(problems), samples=len(records), **counts, kept_unique=len(kept),
                 acceptance_rate=counts["kept"] / max(len(records), 1),
                 questions_with_kept=len({p.question for p, _ in kept}) / max(len(problems), 1))
    return kept, stats


def non_reasoning(n: int, seed: int, digits: int, exclude: set[str]) -> list[tasks.Problem]:
    """n one-operation questions ("What is 48+7?"), none in `exclude` (normalised questions), answered directly:
    R1's non-reasoning data in miniature, simple queries that get no chain of thought."""
    rng = random.Random(f"{seed}-non-reasoning")
    draw = lambda: tasks.arithmetic_problem(rng, digits=digits, mul_digits=1, min_ops=1, max_ops=1)
    return tasks._unique_problems(draw, n, set(exclude), "non-reasoning") if n else []


def stage_examples(kept: list[tuple[tasks.Problem, str]], direct: list[tasks.Problem], tok, template: str,
                   max_len: int) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids + EOS): each kept completion as sampled, then each direct question with
    `<think> </think> <answer> N </answer>`; an example longer than max_len is dropped."""
    pairs = kept + [(p, tasks.format_completion(p, show_work=False)) for p in direct]
    lead, eos = tasks.completion_lead(template), tasks.eos_id(tok)  # what a completion starts with after the prompt
    pairs = [(p, text if text.startswith(lead) else lead + text) for p, text in pairs]
    prompts = tok.encode_batch([tasks.format_prompt(p.question, template) for p, _ in pairs], add_special_tokens=False)
    completions = tok.encode_batch([text for _, text in pairs], add_special_tokens=False)
    examples = [(p.ids, c.ids + [eos]) for p, c in zip(prompts, completions)]
    return [e for e in examples if len(e[0]) + len(e[1]) <= max_len]


def run_rejection_sft(run, policy, train: list[tasks.Problem], test: list[tasks.Problem], point=None,
                      start_model=None):
    """Stage 3: rejection sampling from the stage-2 `policy`, then SFT on the kept reasoning plus non-reasoning
    examples, from the model cfg.rs_init names (`start_model`: the stage-1 starting point, the stage-1 model, or
    the stage-2 policy, built by the caller). With a resume point of this stage ("rs_sft"), the samples are read
    back from the candidates file and `start_model` already holds the point's weights. Returns the new model."""
    cfg = run.cfg
    folder = os.path.join(cfg.out_dir, "rejection")
    os.makedirs(folder, exist_ok=True)
    questions = random.Random(f"{cfg.seed}-rejection").sample(train, min(cfg.rs_questions, len(train)))
    kept, stats = rejection_sample(policy, run.tok, questions, cfg, alphabet(train[:20_000]),
                                   os.path.join(folder, CANDIDATES_FILE), run.device)
    if not kept:
        raise SystemExit(f"error: rejection sampling kept none of {stats['samples']} samples ({stats}); stage 3 "
                         "has nothing to learn from: train stage 2 longer, or raise --rs_samples")
    n_direct = round(len(kept) * cfg.rs_direct_frac / (1 - cfg.rs_direct_frac))
    taken = {tasks.normalise_question(p.question) for p in train + test}
    direct = non_reasoning(n_direct, cfg.seed, cfg.digits if cfg.task in ("arithmetic", "mix") else 2, taken)
    examples = stage_examples(kept, direct, run.tok, cfg.template, cfg.max_seq_len)
    if point is None:
        run.metrics.log(stage="rejection", **stats, non_reasoning=len(direct), examples=len(examples))
    print(f"stage 3 data: {stats['samples']} samples of {stats['questions']} questions, acceptance rate "
          f"{stats['acceptance_rate']:.3f} ({', '.join(f'{v} {stats[v]}' for v in VERDICTS)}); "
          f"{stats['kept_unique']} unique kept, {stats['questions_with_kept']:.3f} of the questions with one; "
          f"+ {len(direct)} non-reasoning = {len(examples)} SFT examples")
    sft.run_sft(start_model, examples, test, run, point, stage="rs_sft", steps=cfg.rs_sft_steps,
                lr=cfg.rs_lr or cfg.lr)
    return start_model
