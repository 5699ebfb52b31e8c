"""A learned reward for the R1 pipeline's stage 4: a scalar-head model trained on preference pairs.

    python reward_model.py runs/default/sft --out_dir runs/rm     # train one from a checkpoint, save it
    python train.py --init_from runs/default/sft --reward_rm 1 --reward_model runs/rm --out_dir runs/rm_plus_rules

DeepSeek-R1 (arXiv 2501.12948, §2.3.4) pairs rule rewards for reasoning with reward models that capture human
preferences on general data. This model has no human preferences to learn from, so the project makes its own
pairs, about a second goal that the rules do not check: say it concisely, in the format, in one language.

    preference_pairs   (question, chosen, rejected, kind): the chosen response is the worked solution in R1's
                       format; the rejected one gives the same right answer in a dispreferred way:
                         'rambling'  a filler line and the first step said again
                         'format'    the reasoning and the answer without their tags, or in the wrong order
                         'language'  words of another script mixed into the reasoning (R1's language mixing)
    sequence_scores    r_phi(q, o) of responses given as text, each read at its EOS
    train_reward_model Bradley-Terry (grpo.preference_loss) on a Critic's scalar head, the trunk copied from a
                       policy (InstructGPT: the reward model starts from the SFT model); held-out pair accuracy
    build              pairs of given problems that fit the policy's positions -> train_reward_model -> saved
                       (what this script and stage 4 of train.py's R1 pipeline run)
    load               a saved reward model, checked against the policy it will score (train.py --reward_model)

Both sides of a pair hold the same right answer, so the reward model learns style, not correctness: optimised
alone, a policy can raise its score while its answers get worse (reward hacking).
"""

from __future__ import annotations

import argparse
import random

import torch

import grpo
import sample
import tasks
import verifier
from model import Critic, load_scorer, save_checkpoint
from optim import clip_and_step, make_optimizer

KINDS = ("rambling", "format", "language")
FILLER = "wait, let me say that again"
FOREIGN = ("итак", "значит", "потом", "также", "ответ")  # Russian: so, that is, then, also, answer


def rejected_response(p: tasks.Problem, kind: str, rng: random.Random) -> str:
    """The dispreferred response of a pair, with p's right answer.

    >>> p = tasks.Problem("What is 2+3*4?", "3*4 = <<3*4=12>>12\\n2+12 = <<2+12=14>>14", "14")
    >>> print(rejected_response(p, "rambling", random.Random(0)))
     <think> 3*4 = <<3*4=12>>12
    wait, let me say that again
    3*4 = <<3*4=12>>12
    2+12 = <<2+12=14>>14 </think> <answer> 14 </answer>
    """
    lines = p.reasoning.split("\n")
    if kind == "rambling":  # the first step again after a filler line (longer still would not fit the model)
        steps = lines[:1] + [FILLER] + lines
        return f" <think> {chr(10).join(steps)} </think> <answer> {p.answer} </answer>"
    if kind == "format":
        return rng.choice([f" {p.reasoning} so the answer is {p.answer}",
                           f" <answer> {p.answer} </answer> <think> {p.reasoning} </think>",
                           f" <think> {p.reasoning} <answer> {p.answer}"])
    if kind == "language":
        mixed = [f"{rng.choice(FOREIGN)} {line}" for line in lines]
        return f" <think> {chr(10).join(mixed)} </think> <answer> {p.answer} </answer>"
    raise ValueError(f"kind={kind!r}: allowed values are {', '.join(KINDS)}")


def preference_pairs(problems: list[tasks.Problem], seed: int) -> list[tuple[str, str, str, str]]:
    """One pair per problem, (question, chosen, rejected, kind), the kinds in turn: the chosen response is
    tasks.format_completion(p), the rejected one `rejected_response` of the same answer."""
    rng = random.Random(f"{seed}-preferences")
    return [(p.question, tasks.format_completion(p), rejected_response(p, KINDS[i % len(KINDS)], rng),
             KINDS[i % len(KINDS)]) for i, p in enumerate(problems)]


def sequence_scores(model: Critic, tok, questions: list[str], responses: list[str], template: str,
                    device) -> torch.Tensor:
    """r_phi(q, o) of each (question, response + EOS), (n,): each prompt + response left-padded as one sequence
    (verifier.solution_batch, the layout the verifier reads) and read at its last token, the number grpo.completion_scores reads from a prompt | completion batch (the pads
    are invisible either way), in a batch no wider than its longest sequence."""
    ids, valid, _ = verifier.solution_batch(tok, questions, responses, template, model.cfg.max_seq_len, device)
    out = model(ids, valid=valid)[:, -1]
    return out.to(torch.promote_types(out.dtype, torch.float32))


def pair_scores(model: Critic, tok, pairs, template: str, device) -> tuple[torch.Tensor, torch.Tensor]:
    """r(q, chosen) and r(q, rejected) of each pair, (n,) each, from one forward pass over the 2n responses."""
    questions = [q for q, *_ in pairs]
    responses = [c for _, c, _, _ in pairs] + [r for _, _, r, _ in pairs]
    scores = sequence_scores(model, tok, questions * 2, responses, template, device)
    return scores[:len(pairs)], scores[len(pairs):]


def train_reward_model(policy, tok, train_pairs, test_pairs, steps: int, batch_size: int, lr: float, seed: int,
                       template: str = "compact", device: str = "cpu", log=print) -> tuple[Critic, dict]:
    """A Critic whose trunk starts as a copy of `policy`, trained for `steps` AdamW steps on batches of
    `batch_size` pairs drawn with `seed`, on grpo.preference_loss. Returns it with its held-out pair accuracy,
    overall and per kind, and its last training loss."""
    model = Critic.from_policy(policy)
    model.train()
    optimizer = make_optimizer(model, lr, 0.0)
    rng = random.Random(f"{seed}-reward-model")
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        batch = rng.sample(train_pairs, min(batch_size, len(train_pairs)))
        chosen, rejected = pair_scores(model, tok, batch, template, device)
        loss = grpo.preference_loss(chosen, rejected)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_and_step(model, optimizer, 1.0)
        if log and (step + 1) % max(steps // 5, 1) == 0:
            log(f"reward model step {step + 1}/{steps}: loss {loss.item():.4f}")
    model.eval()
    with torch.no_grad():
        chosen, rejected = pair_scores(model, tok, test_pairs, template, device)
    kinds = [k for *_, k in test_pairs]
    stats = {"loss": loss.item(), "pair_accuracy": grpo.pair_accuracy(chosen, rejected)}
    for kind in KINDS:
        rows = torch.tensor([k == kind for k in kinds])
        if rows.any():
            stats[f"pair_accuracy_{kind}"] = grpo.pair_accuracy(chosen[rows], rejected[rows])
    return model, stats


def build(policy, tok, problems: list[tasks.Problem], out_dir: str, train_config: dict, n_test: int, steps: int,
          batch_size: int = 32, lr: float = 1e-3, seed: int = 0, log=print) -> dict:
    """A reward model for `policy`, saved in out_dir: preference pairs of `problems` (those too long for the
    policy's positions dropped, and said), the last n_test of them held out, `train_reward_model`. Its stats."""
    template = train_config["template"]
    length = lambda q, response: len(tasks.encode(tok, tasks.format_prompt(q, template))) + \
        len(tasks.encode(tok, response)) + 1  # + EOS
    pairs = preference_pairs(problems, seed)
    fits = [x for x in pairs if max(length(x[0], x[1]), length(x[0], x[2])) <= policy.cfg.max_seq_len]
    if len(fits) < len(pairs) and log:
        log(f"dropped {len(pairs) - len(fits)} of {len(pairs)} pairs longer than the model's "
            f"{policy.cfg.max_seq_len} positions")
    n_test = min(n_test, len(fits) // 2)
    if not n_test:  # at least one pair to train on and one to hold out
        raise ValueError(f"{len(fits)} of {len(pairs)} preference pairs fit the model's {policy.cfg.max_seq_len} "
                         "positions: too few to train on one and hold out another")
    model, stats = train_reward_model(policy, tok, fits[:-n_test], fits[-n_test:], steps, batch_size, lr, seed,
                                      template, next(policy.parameters()).device.type, log)
    stats["test_pairs"] = n_test
    save_checkpoint(out_dir, model, tok, {"train_config": train_config, "reward_model": stats})
    if log:
        log("held-out pair accuracy: " + " | ".join(f"{k[len('pair_accuracy_'):] or 'all'} {v:.3f}"
                                                    for k, v in stats.items() if k.startswith("pair_accuracy"))
            + f" on {n_test} pairs\nreward model: {out_dir} ({model.num_params():,} parameters)")
    return stats


def load(path: str, policy) -> Critic:
    """The reward model saved in `path`, frozen, on the policy's device; a ValueError if it cannot score the
    policy's completions (model.load_scorer: another vocabulary, or fewer positions than the policy's sequences)."""
    return load_scorer(path, policy, "--reward_model")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="Train a reward model on preference pairs, from a checkpoint.")
    p.add_argument("checkpoint", help="the policy checkpoint the reward model starts from (and will score)")
    p.add_argument("--out_dir", required=True, help="where to save the reward model (model.safetensors)")
    p.add_argument("--pairs", type=int, default=3000, help="preference pairs made from training problems")
    p.add_argument("--test_pairs", type=int, default=300, help="of them, held out for the pair accuracy")
    p.add_argument("--steps", type=int, default=300, help="AdamW steps")
    p.add_argument("--batch_size", type=int, default=32, help="pairs per step")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not 0 < args.test_pairs < args.pairs:
        p.error(f"--test_pairs {args.test_pairs} must be between 0 and --pairs {args.pairs}")
    policy, meta, tok = sample.load_model(args.checkpoint, "cpu", p)
    config = (meta or {}).get("train_config")
    if not config:
        p.error(f"{args.checkpoint}: no train_config in the checkpoint, so its training problems are unknown")
    torch.manual_seed(args.seed)
    problems = sample.rebuild_splits(config, args.pairs)[0]  # never held-out ones
    try:
        return build(policy, tok, problems, args.out_dir, config, args.test_pairs, args.steps, args.batch_size,
                     args.lr, args.seed)
    except ValueError as e:
        p.error(str(e))


if __name__ == "__main__":
    main()
