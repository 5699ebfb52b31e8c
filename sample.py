"""Ask a trained checkpoint a question, or score it on held-out problems.

    python sample.py runs/default --question "What is 347*6+125-89?"
    python sample.py runs/default --n 500                  # greedy pass@1 on 500 held-out problems
    python sample.py runs/default --question "What is 12*3+4?" --temperature 0.7 --samples 4
    python sample.py runs/default --n 500 --max_ops 3      # on problems with an operation more than it trained on
    python sample.py runs/default --question "What is 12*3+4?" --temperature 0.6 --best_of 8 --select vote
    python sample.py runs/default --question "What is 12*3+4?" --temperature 0.6 --best_of 8 --select verifier \
        --verifier runs/default/verifier_grpo               # best-of-N by a verifier (verifier.py trains one)

Give a run directory (runs/default: its grpo/ or ppo/ checkpoint if there is one, else sft/) or a checkpoint
directory (runs/default/sft). A checkpoint directory holds model.safetensors (the training config is in its
metadata) and tokenizer.json. The held-out problems are rebuilt from that config, so `--n` scores exactly
the test split the model never trained on.

    complete, decode_completions       completions of questions (greedy at temperature 0), as text
    pass_rate, greedy_pass_at_1        the fraction that earns rewards.accuracy_reward, the check RL rewards
    evaluate                           greedy pass@1, shows_work; from k samples pass@k, sampled pass@1, cons@k
    split_completion                   (reasoning, answer) out of a completion in the R1 format
    held_out_problems, checkpoint_dir  the checkpoint's own test split (or one with other arithmetic knobs);
                                       a run directory's latest stage

The evaluation equations (pass@k, cons@k) are written out in docs/equations.md; the choices behind the
evaluation are in docs/design.md ("Evaluation").
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import torch
from tokenizers import Tokenizer

import distributed
import grpo
import tasks
from model import TOKENIZER_FILE, WEIGHTS_FILE, generate, load_checkpoint
from rewards import accuracy_reward, extract_answer, format_reward, parse_number


def complete(model, tok, questions: list[str], template: str, max_new_tokens: int, temperature: float = 0.0,
             top_k: int | None = None, top_p: float | None = None, batch_size: int = 256,
             generator: torch.Generator | None = None) -> list[str]:
    """The model's completion text for every question (greedy when temperature is 0). Under torchrun each process
    completes its share of the questions (distributed.shard) and every process gets all the texts back."""
    was_training = model.training
    model.eval()
    texts, questions = [], distributed.shard(questions)
    for start in range(0, len(questions), batch_size):
        chunk = questions[start:start + batch_size]
        prompts = [tasks.encode(tok, tasks.format_prompt(q, template)) for q in chunk]
        roll = generate(model, prompts, max_new_tokens, tasks.eos_id(tok), tasks.PAD_ID, temperature, top_k, top_p,
                        generator)
        texts += decode_completions(tok, roll)
    model.train(was_training)
    return distributed.gather(texts)


def decode_completions(tok, roll) -> list[str]:
    """The text of each completion of model.generate's Completions: its real tokens (mask), without the EOS
    (tasks.eos_id of the tokenizer)."""
    eos = tasks.eos_id(tok)
    return [tasks.decode(tok, [t for t, m in zip(ids, mask) if m and t != eos])
            for ids, mask in zip(roll.ids.tolist(), roll.mask.tolist())]


def pass_rate(texts: list[str], problems: list[tasks.Problem]) -> float:
    """Fraction of completions (one per problem) that earn the accuracy reward (rewards.accuracy_reward)."""
    return sum(accuracy_reward(t, p.answer) for t, p in zip(texts, problems)) / len(problems)


def greedy_pass_at_1(model, tok, problems: list[tasks.Problem], template: str, max_new_tokens: int,
                     batch_size: int = 256) -> float:
    """Fraction of problems whose greedy completion earns the accuracy reward (rewards.accuracy_reward)."""
    return pass_rate(complete(model, tok, [p.question for p in problems], template, max_new_tokens,
                              batch_size=batch_size), problems)


def split_completion(text: str) -> tuple[str, str]:
    """(reasoning, answer) out of ' <think> ... </think> <answer> N </answer>'; '' where a part is missing."""
    think = re.search(r"<think>(.*?)</think>", text, re.S)
    answer = re.search(r"<answer>(.*?)</answer>", text, re.S)
    return (think.group(1).strip() if think else ""), (answer.group(1).strip() if answer else "")


def evaluate(model, tok, problems: list[tasks.Problem], template: str, max_new_tokens: int, pass_k: int = 1,
             temperature: float = 0.6, top_p: float = 0.95, generator: torch.Generator | None = None,
             batch_size: int = 256, length: bool = False) -> dict:
    """Held-out scores of a model: greedy pass@1 and shows_work (the fraction of greedy completions with a
    non-empty <think> block), on problems of several tasks the greedy pass@1 of each task (pass_at_1_arithmetic,
    pass_at_1_word), with `length` the mean length in tokens of the greedy completions (EOS not
    counted), and with pass_k = k > 1, from k samples per problem at (temperature, top_p):
    pass@k (the unbiased estimator of Chen et al. 2021, grpo.pass_at_k with n = k), sampled pass@1 and cons@k
    (majority vote over the k answers, grpo.majority_vote: what sharpening alone could reach)."""
    texts = complete(model, tok, [p.question for p in problems], template, max_new_tokens, batch_size=batch_size)
    out = {"pass_at_1": pass_rate(texts, problems)}
    kinds = [tasks.task_of(p) for p in problems]
    for kind in [k for k in tasks.KINDS if k in kinds] if len(set(kinds)) > 1 else []:  # several tasks: each's too
        out[f"pass_at_1_{kind}"] = pass_rate(*zip(*[(t, p) for t, p, k in zip(texts, problems, kinds) if k == kind]))
    out["shows_work"] = sum(split_completion(t)[0] != "" for t in texts) / len(problems)
    if length:
        out["length"] = sum(len(tasks.encode(tok, t)) for t in texts) / len(problems)
    k = pass_k
    if k > 1:
        texts = complete(model, tok, [p.question for p in problems for _ in range(k)], template, max_new_tokens,
                         temperature=temperature, top_p=top_p, generator=generator, batch_size=batch_size)
        hits = [sum(accuracy_reward(texts[i * k + j], p.answer) for j in range(k)) for i, p in enumerate(problems)]
        out[f"pass_at_{k}"] = sum(grpo.pass_at_k(k, int(c), k) for c in hits) / len(problems)
        out["sampled_pass_at_1"] = sum(hits) / (k * len(problems))
        values = [parse_number(extract_answer(t)) for t in texts]  # "12" and "12.0": one vote
        votes = [grpo.majority_vote(values[i * k:(i + 1) * k]) for i in range(len(problems))]
        out[f"cons_at_{k}"] = sum(v is not None and v == parse_number(p.answer)
                                  for v, p in zip(votes, problems)) / len(problems)
    return out


def rebuild_splits(train_config: dict, n_train: int = 0) -> tuple[list[tasks.Problem], list[tasks.Problem]]:
    """(the first n_train training problems, the test split) of a run, built from its training config (a
    TrainConfig as a dict): train.load_problems for a run, and a checkpoint's splits rebuilt exactly (GSM8K's train
    file is read only when n_train > 0). With recheck_frac, that share of the training solutions catch a slip."""
    c = train_config
    if c["task"] == "gsm8k":
        test = tasks.load_gsm8k(os.path.join(c["gsm8k_dir"], "test.jsonl"))
        train = tasks.load_gsm8k(os.path.join(c["gsm8k_dir"], "train.jsonl")) if n_train else []
        train = tasks.split_gsm8k(train, test)[0][:n_train]
    else:
        train, test = tasks.make_splits(c["task"], n_train, c["n_test"], c["seed"], **tasks.split_knobs(c))
    recheck = c.get("recheck_frac", 0.0)  # (absent from runs started before the flag existed)
    return (tasks.with_rechecks(train, recheck, c["seed"]) if recheck else train), test


KNOBS = ("digits", "mul_digits", "min_ops", "max_ops")  # arithmetic's knobs, which --n can score other values of


def held_out_problems(train_config: dict, n: int, knobs: dict | None = None) -> list[tasks.Problem]:
    """The first n problems of the checkpoint's own test split, rebuilt from its training config. With knobs (e.g.
    {"max_ops": 3}), the test split those arithmetic knobs draw instead (problems harder, or other, than the model
    trained on), without any question of its training split."""
    if train_config is None:
        raise ValueError("the checkpoint stores no train_config, so its held-out split cannot be rebuilt")
    knobs = {k: v for k, v in (knobs or {}).items() if v is not None}
    if knobs and train_config["task"] not in ("arithmetic", "mix"):
        raise ValueError(f"--{next(iter(knobs))}: the checkpoint was trained on --task {train_config['task']}, "
                         "which has no arithmetic knobs")
    _, test = rebuild_splits({**train_config, **knobs})
    if knobs:  # leave out every question the model trained on
        seen = {tasks.normalise_question(p.question) for p in rebuild_splits(train_config, train_config["n_train"])[0]}
        test = [p for p in test if tasks.normalise_question(p.question) not in seen]
    if n > len(test):
        raise ValueError(f"--n {n}: the checkpoint's test split has only {len(test)} problems"
                         + (" not among its training questions" if knobs else ""))
    return test[:n]


def checkpoint_dir(path: str) -> str:
    """A checkpoint directory as given, or, for a run directory (runs/NAME), its latest stage: grpo/ or ppo/,
    else sft/."""
    if os.path.isfile(os.path.join(path, WEIGHTS_FILE)):
        return path
    for stage in ("grpo", "ppo", "sft"):
        if os.path.isfile(os.path.join(path, stage, WEIGHTS_FILE)):
            return os.path.join(path, stage)
    return path  # load_checkpoint names what is missing


def load_model(path: str, device: str, parser: argparse.ArgumentParser):
    """(model, its metadata, its tokenizer) from a checkpoint directory; a parser error naming what is wrong."""
    try:
        model, meta = load_checkpoint(path, device)
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    tok_path = os.path.join(path, TOKENIZER_FILE)
    if not os.path.isfile(tok_path):
        parser.error(f"no tokenizer at {tok_path}")
    try:
        tok = Tokenizer.from_file(tok_path)
    except Exception as e:  # tokenizers raises its own exception type
        parser.error(f"{tok_path}: not a readable tokenizer ({e})")
    return model, meta, tok


def budget_left(n_prompt: int, max_new: int, positions: int, what: str) -> int:
    """The generation budget that fits after a prompt of n_prompt tokens in the model's positions; a note when
    it is less than max_new (a prompt longer than any the model trained on)."""
    if n_prompt + max_new <= positions:
        return max_new
    print(f"note: {what} has {n_prompt} tokens, so at most {positions - n_prompt} new tokens fit in this "
          f"checkpoint's {positions} positions (--max_new_tokens {max_new})", file=sys.stderr)
    return positions - n_prompt


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="checkpoint directory (holds model.safetensors and tokenizer.json), or a run "
                                      "directory such as runs/default, whose grpo/ or ppo/, else sft/ checkpoint "
                                      "is used")
    p.add_argument("--question", help="a question to answer")
    p.add_argument("--n", type=int, default=0, help="score greedy pass@1 on this many held-out problems")
    p.add_argument("--temperature", type=float, default=0.0, help="0 for greedy decoding")
    p.add_argument("--top_k", type=int, default=None, help="sample from the k most likely tokens only")
    p.add_argument("--top_p", type=float, default=None, help="sample from the smallest set with this mass")
    p.add_argument("--samples", type=int, default=1, help="completions to sample for --question")
    p.add_argument("--best_of", type=int, default=0, help="with --question: sample N completions and choose one "
                                                              "by --select, without the gold answer")
    p.add_argument("--select", default="vote", choices=["vote", "verifier", "weighted", "process", "logprob"],
                   help="with --best_of: majority vote; the verifier's top score, or its probabilities as vote "
                        "weights (both need --verifier); the share of calculator steps that check; mean log-prob")
    p.add_argument("--verifier", default="", help="a verifier trained for this checkpoint (verifier.py)")
    p.add_argument("--max_new_tokens", type=int, default=None, help="default: the training config's")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    for knob in KNOBS:
        p.add_argument(f"--{knob}", type=int, default=None,
                       help=f"with --n: score problems drawn with this {knob} instead of the checkpoint's")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if not args.question and args.n <= 0:
        p.error("give --question TEXT, or --n N to score N held-out problems")
    for knob in KNOBS:
        if getattr(args, knob) is not None and args.n <= 0:
            p.error(f"--{knob} sets the problems that --n scores: give --n N too")
    if args.best_of and not args.question:
        p.error("--best_of chooses among samples of one question: give --question TEXT")
    if args.best_of < 0 or (args.best_of and args.temperature == 0):
        p.error(f"--best_of {args.best_of} needs N >= 1 samples at --temperature > 0 (e.g. 0.6): greedy decoding "
                "writes the same completion N times")
    if args.best_of and args.select in ("verifier", "weighted") and not args.verifier:
        p.error(f"--select {args.select} needs --verifier DIR (train one with verifier.py)")
    for name, ok, rule in (("samples", args.samples >= 1, ">= 1"), ("temperature", args.temperature >= 0, ">= 0"),
                           ("top_k", args.top_k is None or args.top_k >= 1, ">= 1"),
                           ("top_p", args.top_p is None or 0 < args.top_p <= 1, "in (0, 1]"),
                           ("max_new_tokens", args.max_new_tokens is None or args.max_new_tokens >= 1, ">= 1")):
        if not ok:
            p.error(f"--{name} must be {rule}, got {getattr(args, name)}")

    args.checkpoint = checkpoint_dir(args.checkpoint)
    model, meta, tok = load_model(args.checkpoint, args.device, p)
    cfg = meta.get("train_config")
    template = cfg["template"] if cfg else "compact"
    max_new = args.max_new_tokens or (cfg["max_new_tokens"] if cfg else 128)
    print(f"loaded {args.checkpoint}: {model.num_params():,} parameters, stage {meta.get('stage')}, "
          f"step {meta.get('step')}", file=sys.stderr)

    if args.question:
        n_prompt, positions = len(tasks.encode(tok, tasks.format_prompt(args.question, template))), model.cfg.max_seq_len
        if n_prompt >= positions:
            p.error(f"the question's prompt has {n_prompt} tokens, and this checkpoint handles {positions} positions "
                    "in all (its training data's longest prompt plus its generation budget): ask a shorter question")
        max_new = budget_left(n_prompt, max_new, positions, "the prompt")
        gen = torch.Generator(device=args.device).manual_seed(args.seed)
        if args.best_of:
            return best_of(args, model, tok, template, max_new, gen, p)
        texts = complete(model, tok, [args.question] * args.samples, template, max_new,
                         args.temperature, args.top_k, args.top_p, generator=gen)
        for i, text in enumerate(texts):
            reasoning, answer = split_completion(text)
            print(f"--- sample {i + 1}" if args.samples > 1 else "---")
            print(f"reasoning:\n{reasoning}\nanswer: {answer}")
            if not format_reward(text):  # a base model, or a broken one: what it wrote is the only clue
                print(f"(not in the <think>/<answer> format) as written: {text!r}")
    if args.n > 0:
        try:
            problems = held_out_problems(cfg, args.n, {k: getattr(args, k) for k in KNOBS})
        except (FileNotFoundError, ValueError) as e:
            p.error(str(e))
        longest = max(len(tasks.encode(tok, tasks.format_prompt(q.question, template))) for q in problems)
        if longest >= model.cfg.max_seq_len:
            p.error(f"the longest of these prompts has {longest} tokens, and this checkpoint handles "
                    f"{model.cfg.max_seq_len} positions in all: score easier problems")
        acc = greedy_pass_at_1(model, tok, problems, template,
                               budget_left(longest, max_new, model.cfg.max_seq_len, "the longest prompt"))
        print(f"greedy pass@1 on {len(problems)} held-out problems: {acc:.3f}")


def best_of(args, model, tok, template: str, max_new: int, gen, parser) -> tuple:
    """--best_of N: N samples of --question, each with its answer and scores, and the one --select chooses."""
    import inference  # (inference.py imports this module: imported here, where it is needed)
    import verifier
    scorer = None
    if args.verifier:
        try:
            scorer = verifier.load(args.verifier, model)
        except (FileNotFoundError, ValueError) as e:
            parser.error(str(e))
    [cand] = inference.sample_candidates(model, tok, [tasks.Problem(args.question, "", "")], args.best_of, template,
                                         max_new, args.temperature, args.top_p or 1.0, gen, scorer)
    answer, winners = inference.choose(cand, args.select)
    names = list(cand["scores"])
    for i, text in enumerate(cand["texts"]):
        mark = "*" if i in winners else " "
        print(f"{mark} sample {i + 1}: answer {cand['answers'][i]} | "
              + " | ".join(f"{k} {cand['scores'][k][i]:.3f}" for k in names) + f"\n  {text.strip()}")
    how = f"sample {winners[0] + 1} scores highest" if inference.PICKS[args.select][0] == "best_of_n" else \
        f"{len(winners)} of {args.best_of} samples give it"
    print(f"chosen by {args.select}: {answer} ({how}; * marks them)")
    return answer, winners


if __name__ == "__main__":
    main()
