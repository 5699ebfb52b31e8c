"""An outcome verifier: a scalar-head model that reads a question and one of the model's own solutions and
says how likely its answer is right, without the gold answer. Best-of-N then keeps the solution it rates highest.

    python verifier.py runs/default/grpo --out_dir runs/default/verifier_grpo
    python inference.py curve runs/default/grpo --verifier runs/default/verifier_grpo

Training Verifiers to Solve Math Word Problems (Cobbe et al. 2021, arXiv 2110.14168) trains it on the
generator's own samples, each labelled right or wrong by checking its final answer; no person labels anything.

    Solution          one sampled solution: question, completion text, whether the rule checker accepts it
    own_samples       k sampled solutions per training question from the generator, labelled by
                      rewards.accuracy_reward (the check RL rewards)
    solution_batch    the solutions as left-padded prompt + completion + EOS sequences, cut to the positions
    token_values      v_{i,t}: the verifier's output after every completion token (grad flows)
    verifier_scores   v after each solution's EOS, the score best-of-N ranks by (no grad, in chunks); the
                      number grpo.completion_scores reads from an RL batch
    train_verifier    a model.Critic (the one scalar-head model: PPO's critic and stage 4's reward model are the
                      same class) started from the generator's weights, trained on grpo.verifier_loss; held-out
                      accuracy, against always guessing the commoner label, and ranking (how often a right
                      solution scores above a wrong one of the same question)
    build, load       sample -> train -> save; a saved verifier, checked against the policy it will score
                      (model.load_scorer, as stage 4's reward model is)

The verifier's held-out questions are training questions it never trained on; the test split stays for the
accuracy-against-N curve (inference.py). Design: docs/design.md ("The outcome verifier").
"""

from __future__ import annotations

import argparse
import random
from typing import NamedTuple

import torch

import grpo
import sample
import tasks
from model import Critic, left_pad, load_scorer, save_checkpoint
from optim import clip_and_step, make_optimizer
from rewards import accuracy_reward


class Solution(NamedTuple):
    question: str
    text: str  # the completion as sampled, EOS dropped
    correct: bool  # rewards.accuracy_reward accepts it


def own_samples(model, tok, problems: list[tasks.Problem], k: int, template: str, max_new_tokens: int,
                temperature: float, top_p: float, generator: torch.Generator, batch_size: int = 256) -> list[Solution]:
    """k sampled completions of each problem (k consecutive rows per problem), each labelled by the rule checker."""
    texts = sample.complete(model, tok, [p.question for p in problems for _ in range(k)], template, max_new_tokens,
                            temperature, None, top_p if top_p < 1 else None, batch_size, generator)
    return [Solution(p.question, text, accuracy_reward(text, p.answer) > 0)
            for p, text in zip([p for p in problems for _ in range(k)], texts)]


def solution_batch(tok, questions: list[str], texts: list[str], template: str, max_len: int, device):
    """(ids, valid, completion_mask), each (N, L): every prompt + completion + EOS left-padded as one sequence, so
    that every row ends in the last column, and True on the completion's tokens (the EOS included). A completion
    that does not fit max_len positions after its prompt (only one that ran out of tokens can) keeps its first
    tokens."""
    prompts = [tasks.encode(tok, tasks.format_prompt(q, template)) for q in questions]
    if max(map(len, prompts)) >= max_len:
        raise ValueError(f"a prompt of {max(map(len, prompts))} tokens leaves no room in {max_len} positions")
    completions = [tasks.encode(tok, t)[:max_len - len(p) - 1] + [tasks.eos_id(tok)] for p, t in zip(prompts, texts)]
    ids, valid = left_pad([p + c for p, c in zip(prompts, completions)], tasks.PAD_ID, device)
    L = ids.size(1)
    completion_mask = torch.arange(L, device=device)[None, :] >= torch.tensor([L - len(c) for c in completions],
                                                                               device=device)[:, None]
    return ids, valid, completion_mask


def token_values(model: Critic, ids, valid, completion_mask) -> torch.Tensor:
    """v_{i,t} (N, L): the output after each completion token (the state that includes it), 0 elsewhere. The
    last column is each solution's score (after its EOS), what `verifier_scores` reads."""
    return model(ids, valid=valid).float().masked_fill(~completion_mask, 0.0)


@torch.no_grad()
def verifier_scores(model: Critic, tok, questions: list[str], texts: list[str], template: str,
                    batch_size: int = 256) -> torch.Tensor:
    """v(q, o) (N,): the verifier's logit for each solution, read at its EOS (the last column of solution_batch);
    sigmoid(v) is its probability of being right. Computed batch_size solutions at a time."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        batch = solution_batch(tok, questions[i:i + batch_size], texts[i:i + batch_size], template,
                               model.cfg.max_seq_len, device)
        out.append(model(batch[0], valid=batch[1])[:, -1].float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def ranking(scores: list[float], solutions: list[Solution]) -> float | None:
    """The share of (right, wrong) pairs of the same question in which the right solution scores higher, a tie
    counting one half (the area under the ROC curve, within questions): what best-of-N needs. None without pairs.

    [0.9, 0.1, 0.5] for q right, q wrong, q right -> pairs (0.9 > 0.1), (0.5 > 0.1) -> 1.0
    """
    by_question: dict = {}
    for s, sol in zip(scores, solutions):
        by_question.setdefault(sol.question, ([], []))[0 if sol.correct else 1].append(s)
    wins = pairs = 0.0
    for right, wrong in by_question.values():
        for r in right:
            for w in wrong:
                wins += 1.0 if r > w else 0.5 if r == w else 0.0
                pairs += 1
    return wins / pairs if pairs else None


def evaluate_verifier(model: Critic, tok, solutions: list[Solution], template: str) -> dict:
    """Held-out accuracy (sigmoid(v) > 1/2 against the label), the share right (always guessing the commoner label
    scores max(share, 1 - share)), and the within-question ranking."""
    v = verifier_scores(model, tok, [s.question for s in solutions], [s.text for s in solutions], template)
    labels = torch.tensor([s.correct for s in solutions])
    return {"accuracy": ((v > 0) == labels).float().mean().item(), "share_right": labels.float().mean().item(),
            "ranking": ranking(v.tolist(), solutions)}


def train_verifier(policy, tok, train: list[Solution], test: list[Solution], steps: int, batch_size: int, lr: float,
                   seed: int, template: str = "compact", log=print) -> tuple[Critic, dict]:
    """A Critic whose trunk starts as a copy of the generator `policy`, trained for `steps` AdamW steps on batches
    of `batch_size` solutions drawn with `seed`, on grpo.verifier_loss (every completion token predicts the label).
    Returns it in eval mode with its last training loss and `evaluate_verifier` on the held-out solutions."""
    device = policy.tok_emb.weight.device
    model = Critic.from_policy(policy)
    model.train()
    optimizer = make_optimizer(model, lr, 0.0)
    rng = random.Random(f"{seed}-verifier")
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        batch = rng.sample(train, min(batch_size, len(train)))
        tensors = solution_batch(tok, [s.question for s in batch], [s.text for s in batch], template,
                                 model.cfg.max_seq_len, device)
        labels = torch.tensor([s.correct for s in batch], device=device)
        loss = grpo.verifier_loss(token_values(model, *tensors), labels, tensors[2])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_and_step(model, optimizer, 1.0)
        if log and (step + 1) % max(steps // 5, 1) == 0:
            log(f"verifier step {step + 1}/{steps}: loss {loss.item():.4f}")
    model.eval()
    return model, {"loss": loss.item(), **evaluate_verifier(model, tok, test, template)}


def build(policy, tok, problems: list[tasks.Problem], out_dir: str, train_config: dict, k: int, test_questions: int,
          steps: int, batch_size: int = 64, lr: float = 3e-4, temperature: float = 0.6, top_p: float = 0.95,
          seed: int = 0, log=print) -> dict:
    """A verifier for `policy`, saved in out_dir: k samples of each problem (the last test_questions problems held
    out), labelled, `train_verifier`. Its stats, which the checkpoint's metadata keeps too."""
    if not 0 < test_questions < len(problems):
        raise ValueError(f"--test_questions {test_questions} must be between 0 and --questions {len(problems)}")
    generator = torch.Generator(device=policy.tok_emb.weight.device).manual_seed(seed)
    template = train_config["template"]
    solutions = own_samples(policy, tok, problems, k, template, train_config["max_new_tokens"], temperature, top_p,
                            generator)
    cut = (len(problems) - test_questions) * k
    train, test = solutions[:cut], solutions[cut:]
    if log:
        log(f"{len(solutions)} solutions of {len(problems)} questions, {sum(s.correct for s in solutions) / len(solutions):.3f} "
            f"of them right; training on {len(train)}, holding out {len(test)}")
    model, stats = train_verifier(policy, tok, train, test, steps, batch_size, lr, seed, template, log)
    stats.update(questions=len(problems), samples=k, test_questions=test_questions, temperature=temperature,
                 top_p=top_p)
    save_checkpoint(out_dir, model, tok, {"train_config": train_config, "verifier": stats})
    if log:
        rank = f"{stats['ranking']:.3f}" if stats["ranking"] is not None else \
            "n/a (no question with a right and a wrong solution)"
        log(f"held-out: accuracy {stats['accuracy']:.3f} (always guessing the commoner label: "
            f"{max(stats['share_right'], 1 - stats['share_right']):.3f}), ranking {rank}\n"
            f"verifier: {out_dir} ({model.num_params():,} parameters)")
    return stats


def load(path: str, policy) -> Critic:
    """The verifier saved in `path`, frozen, on the policy's device; a ValueError if it cannot score the policy's
    solutions (model.load_scorer: another vocabulary or fewer positions)."""
    return load_scorer(path, policy, "--verifier")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description="Train an outcome verifier on a checkpoint's own labelled samples.")
    p.add_argument("checkpoint", help="the generator: a checkpoint directory, or a run directory (its latest stage)")
    p.add_argument("--out_dir", required=True, help="where to save the verifier (model.safetensors)")
    p.add_argument("--questions", type=int, default=4000, help="training questions to sample solutions of")
    p.add_argument("--samples", type=int, default=8, help="sampled solutions per question")
    p.add_argument("--test_questions", type=int, default=250, help="of the questions, held out for the accuracy")
    p.add_argument("--steps", type=int, default=1000, help="AdamW steps")
    p.add_argument("--batch_size", type=int, default=64, help="solutions per step")
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature of the solutions")
    p.add_argument("--top_p", type=float, default=0.95, help="nucleus sampling of the solutions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    for name, ok, rule in (("questions", args.questions >= 2, ">= 2"), ("samples", args.samples >= 1, ">= 1"),
                           ("steps", args.steps >= 1, ">= 1"), ("batch_size", args.batch_size >= 1, ">= 1"),
                           ("temperature", args.temperature > 0, "> 0 (the verifier learns from samples)"),
                           ("top_p", 0 < args.top_p <= 1, "in (0, 1]")):
        if not ok:
            p.error(f"--{name} must be {rule}, got {getattr(args, name)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    policy, meta, tok = sample.load_model(sample.checkpoint_dir(args.checkpoint), args.device, p)
    config = (meta or {}).get("train_config")
    if not config:
        p.error(f"{args.checkpoint}: no train_config in the checkpoint, so its training problems are unknown")
    torch.manual_seed(args.seed)
    problems = sample.rebuild_splits(config, args.questions)[0]  # training questions, never held-out ones
    try:
        return build(policy, tok, problems, args.out_dir, config, args.samples, args.test_questions, args.steps,
                     args.batch_size, args.lr, args.temperature, args.top_p, args.seed)
    except ValueError as e:
        p.error(str(e))


if __name__ == "__main__":
    main()
