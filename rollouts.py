"""Rollouts: sample G completions per question, score them, turn rewards into advantages, and prepare the
batch the updates learn from (DeepSeekMath Algorithm 1, the part before the gradient steps).

    Rollouts         one step's B x G completions: row b*G + g is sample g of question b (a group: G rows)
    sample_groups    G completions per question from ONE batched KV-cache generate() call, then the rewards
    collect_rollouts a step's batch (its questions drawn from a task mixture, if any); with DAPO's dynamic
                     sampling, groups of equal rewards are refilled; in shards of whole groups under torchrun
    gather_rollouts  every process's rollout side by side (for the step's log)
    advantages       A_{i,t}: outcome (group-relative, §4.1.2) or process supervision (per step, §4.1.3)
    rollout_batch    the rollout on the device with log pi_old and log pi_ref, computed once, without gradient
    minibatches      the rows in random order, cut into exactly min(k, N) minibatches
    rollout_stats    what a step logs about its rollout: reward, accuracy, zero-std groups, lengths
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import distributed
import grpo
import rewards
import tasks
from model import generate, left_pad
from optim import autocast
from sample import decode_completions

DYNAMIC_SAMPLING_ROUNDS = 4  # with --dynamic_sampling, at most this many rollouts to fill one batch


@dataclass
class Rollouts:
    """One step's samples: N = B * G rows, the G samples of question b in rows b*G .. b*G + G - 1."""
    problems: list  # the B questions (tasks.Problem)
    prompts: list  # N prompt token lists (each question's G times)
    ids: torch.Tensor  # (N, T) completion tokens, right-padded
    mask: torch.Tensor  # (N, T) bool, True on real completion tokens (the EOS included)
    truncated: torch.Tensor  # (N,) bool, hit max_new_tokens without an EOS
    texts: list  # N completion texts (EOS dropped), as the rewards see them
    rewards: torch.Tensor  # (B, G) r_i, the weighted reward sum (rewards.total_reward, + reward_rm x rm_scores)
    correct: torch.Tensor  # (B, G) accuracy 1/0, for logging and dynamic sampling
    rm_scores: torch.Tensor | None = None  # (B, G) a learned reward model's r_phi(q, o_i), when one is used


def reward_weights(cfg) -> rewards.RewardWeights:
    return rewards.RewardWeights(accuracy=cfg.reward_accuracy, format=cfg.reward_format,
                                 overlong=cfg.reward_overlong, language=cfg.reward_language,
                                 accuracy_wrong=cfg.reward_wrong)


@torch.no_grad()
def sample_groups(policy, tok, problems, cfg, generator, timer: dict | None = None, reward_model=None) -> Rollouts:
    """G completions for each of the B questions from ONE batched KV-cache generate() call, then scored.

    The sampler is pi_old of this step (Algorithm 1: pi_old <- pi_theta, then o_i ~ pi_old(O|q)). The rule
    rewards (rewards.py) are weighted and summed; with a learned `reward_model` (model.Critic, frozen), its score
    of each sampled completion as sampled, EOS included (grpo.completion_scores), is added with weight reward_rm.
    timer, if given, accumulates the seconds spent in "rollout" (sampling) and "reward" (decoding, scoring),
    and the completion tokens sampled ("tokens").
    """
    timer = {} if timer is None else timer
    t = time.perf_counter()
    G = cfg.group_size
    prompts = [tasks.encode(tok, tasks.format_prompt(p.question, cfg.template)) for p in problems]
    prompts = [ids for ids in prompts for _ in range(G)]  # each question G times, consecutive rows
    was_training = policy.training
    policy.eval()
    roll = generate(policy, prompts, cfg.max_new_tokens, tasks.eos_id(tok), tasks.PAD_ID, temperature=cfg.temperature,
                    top_p=cfg.top_p if cfg.top_p < 1 else None, generator=generator,
                    max_batch=cfg.forward_chunk or None, prompt_once=cfg.prompt_once)
    policy.train(was_training)
    timer["rollout"] = timer.get("rollout", 0.0) + time.perf_counter() - t
    timer["tokens"] = timer.get("tokens", 0) + int(roll.mask.sum())
    t = time.perf_counter()
    texts = decode_completions(tok, roll)
    weights, lengths = reward_weights(cfg), roll.mask.sum(-1).tolist()
    golds = [p.answer for p in problems for _ in range(G)]
    parts = [rewards.reward_components(text, gold, weights, length=n, max_len=cfg.max_new_tokens,
                                       cache_len=cfg.overlong_cache) for text, gold, n in zip(texts, golds, lengths)]
    r = torch.tensor([rewards.weighted_sum(p, weights) for p in parts])  # r_i = rewards.total_reward
    c = [float(p["accuracy"] == 1.0) for p in parts]  # correct: 1/0 whatever value a wrong answer gets
    B, scores = len(problems), None
    if reward_model is not None and cfg.reward_rm:  # R1 stage 4: a preference reward beside the rules
        device = next(reward_model.parameters()).device  # (no gradient: this function runs under no_grad)
        scores = grpo.completion_scores(reward_model, *left_pad(prompts, tasks.PAD_ID, device),
                                        roll.ids.to(device), roll.mask.to(device)).cpu().view(B, G)
        r = r + cfg.reward_rm * scores.flatten().to(r.dtype)
    timer["reward"] = timer.get("reward", 0.0) + time.perf_counter() - t
    return Rollouts(problems, prompts, roll.ids, roll.mask, roll.truncated, texts, r.view(B, G),
                    torch.tensor(c).view(B, G), scores)


def select_groups(parts: list[Rollouts], keep: list[torch.Tensor], n_groups: int, G: int) -> Rollouts:
    """The first n_groups kept groups of several rollouts, as one Rollouts (completions re-padded)."""
    chosen = [(part, b) for part, k in zip(parts, keep) for b in k.nonzero().flatten().tolist()][:n_groups]
    if not chosen:  # every group had equal rewards: nothing to learn from in this step
        none = torch.zeros(0, 0, dtype=torch.long)
        return Rollouts([], [], none, none.bool(), torch.zeros(0, dtype=torch.bool), [], torch.zeros(0, G),
                        torch.zeros(0, G))
    T = max(part.ids.size(1) for part, _ in chosen)
    pad = lambda x, value: F.pad(x, (0, T - x.size(1)), value=value)
    rows = lambda part, b: slice(b * G, (b + 1) * G)
    return Rollouts(
        problems=[part.problems[b] for part, b in chosen],
        prompts=[ids for part, b in chosen for ids in part.prompts[rows(part, b)]],
        ids=torch.cat([pad(part.ids[rows(part, b)], tasks.PAD_ID) for part, b in chosen]),
        mask=torch.cat([pad(part.mask[rows(part, b)], False) for part, b in chosen]),
        truncated=torch.cat([part.truncated[rows(part, b)] for part, b in chosen]),
        texts=[t for part, b in chosen for t in part.texts[rows(part, b)]],
        rewards=torch.stack([part.rewards[b] for part, b in chosen]),
        correct=torch.stack([part.correct[b] for part, b in chosen]),
        rm_scores=None if chosen[0][0].rm_scores is None else torch.stack([part.rm_scores[b] for part, b in chosen]))


def collect_rollouts(policy, tok, train, cfg, rng: random.Random, generator, timer: dict | None = None,
                     reward_model=None, n_shards: int = 1, shard_generators: dict | None = None
                     ) -> tuple[Rollouts, Rollouts]:
    """(the batch to learn from, the first rollout as sampled, for logging).

    `train` is the training problems, or a tasks.Mixture that draws them by task (R1's stage 4). Without
    dynamic sampling both are one rollout of prompts_per_step random training questions. With it
    (DAPO Eq. 11), groups whose G rewards are all equal (zero advantage, zero gradient) are dropped and
    fresh questions are sampled until prompts_per_step groups remain or DYNAMIC_SAMPLING_ROUNDS rollouts
    have been drawn; the batch may then be smaller (or empty: the step is skipped).
    n_shards > 1 (design: Data parallelism): the questions are cut into n_shards equal shards of whole groups, and
    the shards in shard_generators {s: generator} are sampled, shard s from its own generator, then put side by
    side: a process of a torchrun run samples its own shard, one process with --rollout_shards S all S of them.
    """
    questions = train if isinstance(train, tasks.Mixture) else tasks.Mixture(train)
    problems = questions.draw(rng, cfg.prompts_per_step)
    if n_shards > 1:  # whole groups, each shard from its own random stream
        size = len(problems) // n_shards
        parts = [sample_groups(policy, tok, problems[s * size:(s + 1) * size], cfg, gen, timer, reward_model)
                 for s, gen in sorted(shard_generators.items())]
        roll = concat_rollouts(parts)
        return roll, roll
    first = sample_groups(policy, tok, problems, cfg, generator, timer, reward_model)
    if not cfg.dynamic_sampling:
        return first, first
    parts, keep = [first], [grpo.dynamic_sampling_filter(first.rewards)]
    while sum(int(k.sum()) for k in keep) < cfg.prompts_per_step and len(parts) < DYNAMIC_SAMPLING_ROUNDS:
        parts.append(sample_groups(policy, tok, questions.draw(rng, cfg.prompts_per_step), cfg, generator, timer,
                                   reward_model))
        keep.append(grpo.dynamic_sampling_filter(parts[-1].rewards))
    return select_groups(parts, keep, cfg.prompts_per_step, cfg.group_size), first


def gather_rollouts(roll: Rollouts) -> Rollouts:
    """Every process's rollout side by side, rank 0's groups first, on every rank (the step's log covers the whole
    batch); the rollout itself with one process."""
    return concat_rollouts(distributed.gather_objects(roll))


def concat_rollouts(parts: list[Rollouts]) -> Rollouts:
    """Rollouts side by side, every group of each in order (completions re-padded); a single one as it is."""
    if len(parts) == 1:
        return parts[0]
    return select_groups(parts, [torch.ones(len(p.problems), dtype=torch.bool) for p in parts],
                         sum(len(p.problems) for p in parts), parts[0].rewards.size(1))


def advantages(roll: Rollouts, tok, cfg) -> torch.Tensor:
    """A_{i,t} for every completion token, (N, T).

    outcome (DeepSeekMath §4.1.2): A_i from the group's rewards (grpo.group_advantages, normalised per
    --adv_scale), the same on every token.
    process (§4.1.3): one reward per <<expr=value>> step (rewards.step_rewards: 1 if its arithmetic is right),
    placed on the token that closes the step (tasks.token_spans + rewards.char_to_token_index), normalised
    over all steps of the group; each token gets the sum of the normalised rewards of its step and every
    later one (grpo.process_advantages). --process_outcome last_step also counts the outcome reward r_i as
    one more step, ending at the last token (not the paper's form: a switch to study, docs).
    """
    B, G = roll.rewards.shape
    if cfg.supervision == "outcome":
        A = grpo.group_advantages(roll.rewards, cfg.adv_scale, cfg.std_ddof)  # (B, G)
        return grpo.broadcast_outcome_advantage(A.flatten(), roll.mask)  # (N, T)
    T, lengths, out, eos = roll.ids.size(1), roll.mask.sum(-1).tolist(), [], tasks.eos_id(tok)
    for b in range(B):
        step_r, step_end = [], []
        for g in range(G):
            n = b * G + g
            ids = [t for t in roll.ids[n, :lengths[n]].tolist() if t != eos]  # the tokens of roll.texts[n]
            spans = tasks.token_spans(tok, ids)  # each token's characters in that text
            steps = rewards.step_rewards(roll.texts[n])
            step_r.append([s.reward for s in steps])
            step_end.append([rewards.char_to_token_index(s.end - 1, spans) for s in steps])  # index(j): its '>>'
            if cfg.process_outcome == "last_step":
                step_r[-1].append(roll.rewards[b, g].item())
                step_end[-1].append(lengths[n] - 1)
        out.append(grpo.process_advantages(step_r, step_end, T, cfg.std_ddof))
    return torch.cat(out) * roll.mask  # (N, T)


@dataclass
class Batch:
    """A step's rollout on the device, with what every update of it reuses (computed once, without gradient)."""
    prompt_ids: torch.Tensor  # (N, P) left-padded prompts
    prompt_valid: torch.Tensor  # (N, P) bool
    ids: torch.Tensor  # (N, T) completions
    mask: torch.Tensor  # (N, T) bool, the rollout's mask: real completion tokens
    loss_mask: torch.Tensor  # (N, T) bool, the losses' mask: without truncated rows under --overlong_filter
    old_logp: torch.Tensor | None = None  # (N, T) log pi_old; None where it equals the policy's own, detached
    ref_logp: torch.Tensor | None = None  # (N, T) log pi_ref; None with kl_coef = 0
    logprob_s: float = 0.0  # seconds spent on old_logp and ref_logp
    prompt_once: bool = False  # run each distinct prompt once in these passes (--prompt_once)

    def logprobs(self, model, rows, temperature: float) -> torch.Tensor:
        """log pi(o_t) of the completions in `rows` under `model`, (n, T) (grpo.completion_logprobs)."""
        return grpo.completion_logprobs(model, self.prompt_ids[rows], self.prompt_valid[rows], self.ids[rows],
                                        self.mask[rows], temperature, self.prompt_once)

    def values(self, critic, rows) -> torch.Tensor:
        """V(s_t) before each completion token in `rows`, (n, T) (grpo.completion_values)."""
        return grpo.completion_values(critic, self.prompt_ids[rows], self.prompt_valid[rows], self.ids[rows],
                                      self.mask[rows], self.prompt_once)

    def all_rows(self, per_rows, chunk: int) -> torch.Tensor:
        """per_rows(rows) for every row, at most `chunk` rows per call (0: one call), concatenated: (N, T)."""
        N = self.ids.size(0)
        if not chunk or chunk >= N:
            return per_rows(slice(None))  # all N rows, without copying
        return torch.cat([per_rows(slice(i, i + chunk)) for i in range(0, N, chunk)])


def rollout_batch(policy, ref, roll: Rollouts, cfg, device: str, need_old: bool) -> Batch:
    """The rollout as a Batch, with pi_old's log-probs (if need_old) and pi_ref's (if kl_coef > 0) under no_grad.

    pi_old is the policy that sampled (design: pi_old is recomputed): its log-probs are recomputed before any update.
    """
    prompt_ids, prompt_valid = left_pad(roll.prompts, tasks.PAD_ID, device)
    ids, mask = roll.ids.to(device), roll.mask.to(device)
    batch = Batch(prompt_ids, prompt_valid, ids, mask,
                  grpo.completion_mask(mask, roll.truncated.to(device), cfg.overlong_filter),
                  prompt_once=cfg.prompt_once)
    t = time.perf_counter()
    with torch.no_grad(), autocast(device):
        if need_old:  # pi_old, before any update
            batch.old_logp = batch.all_rows(lambda rows: batch.logprobs(policy, rows, cfg.temperature),
                                            cfg.forward_chunk)
        if cfg.kl_coef > 0:  # pi_ref, never with gradient
            batch.ref_logp = batch.all_rows(lambda rows: batch.logprobs(ref, rows, cfg.temperature), cfg.forward_chunk)
    batch.logprob_s = time.perf_counter() - t
    return batch


def micro_batches(rows: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """A minibatch's rows in micro-batches of at most `size` rows (0: one micro-batch, the whole)."""
    return rows.split(size) if size else (rows,)


def combine_stats(parts: list[tuple[float, dict]]) -> dict:
    """The statistics of a minibatch from those of its micro-batches: the objective as the loss (weighted by
    w_k), the token counts summed, the ratio's extremes as extremes, the rest (token means) weighted by tokens."""
    if len(parts) == 1:
        return dict(parts[0][1])
    stats = [s for _, s in parts]
    tokens = [s["tokens"] for s in stats]
    out = {}
    for key in stats[0]:
        values = [s[key] for s in stats]
        if key == "tokens":
            out[key] = sum(values)
        elif key in ("ratio_min", "ratio_max"):
            out[key] = (min if key == "ratio_min" else max)(values)
        elif key == "objective":
            out[key] = sum(w * v for (w, _), v in zip(parts, values))
        else:
            out[key] = sum(t * v for t, v in zip(tokens, values)) / max(sum(tokens), 1)
    return out


def minibatches(n_rows: int, k: int, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
    """The n_rows rows of a rollout in random order, cut into exactly min(k, n_rows) minibatches whose sizes
    differ by at most one (120 rows into 16: 8 of 8 and 8 of 7), so every minibatch is one optimizer step."""
    # BEGIN SOLUTION algorithm-1: a random permutation (from the generator, on its device) cut into min(k, n) parts
    device = generator.device if generator is not None else "cpu"
    return torch.randperm(n_rows, generator=generator, device=device).tensor_split(min(k, n_rows))
    # END SOLUTION algorithm-1


def rollout_stats(first: Rollouts, roll: Rollouts, std_ddof: int) -> dict:
    """What a step logs about its rollout as sampled (`first`; `roll` is what it learnt from):
    - the mean reward, accuracy and format reward (rewards.format_reward, whatever its weight);
    - the mean std of a group's rewards, and the fraction of groups with zero std (no signal for GRPO);
    - the mean completion length, overall, of right and of wrong ones (None when there are none), and by the
      question's number of calculator steps (tasks.difficulty); the fraction truncated at max_new_tokens;
    - the share of completions that catch a slip (tasks.RECHECK), and the accuracy of those that do and of those
      that do not (None when there are none);
    - with a learned reward model, its mean score (rm_score)."""
    lengths = first.mask.sum(-1).float()
    length_where = lambda keep: grpo.masked_mean(lengths, keep).item() if keep.any() else None
    accuracy_where = lambda keep: grpo.masked_mean(first.correct.flatten(), keep).item() if keep.any() else None
    rechecks = torch.tensor([tasks.count_rechecks(t) > 0 for t in first.texts], dtype=torch.bool)
    steps = torch.tensor([tasks.difficulty(p) for p in first.problems]).repeat_interleave(first.rewards.size(1))
    return dict(reward=first.rewards.mean().item(), accuracy=first.correct.mean().item(),
                format=sum(map(rewards.format_reward, first.texts)) / max(len(first.texts), 1),
                reward_std=first.rewards.std(-1, correction=std_ddof).mean().item(),
                zero_std_frac=(~grpo.dynamic_sampling_filter(first.rewards)).float().mean().item(),
                groups_used=roll.rewards.size(0), length=lengths.mean().item(),
                length_right=length_where(first.correct.flatten() > 0),
                length_wrong=length_where(first.correct.flatten() <= 0),
                truncated_frac=first.truncated.float().mean().item(),
                recheck_frac=rechecks.float().mean().item(),
                accuracy_recheck=accuracy_where(rechecks), accuracy_no_recheck=accuracy_where(~rechecks),
                length_by_steps={str(k): length_where(steps == k) for k in sorted(set(steps.tolist()))},
                **({} if first.rm_scores is None else {"rm_score": first.rm_scores.mean().item()}))


def mean_stats(logs: list[dict]) -> dict:
    """The statistics of a step's updates: each one's mean over the updates, the ratio's extremes as extremes,
    and the number of updates (optimizer steps of the policy)."""
    out = {k: sum(d[k] for d in logs) / len(logs) for k in logs[0] if k not in ("ratio_min", "ratio_max")}
    out["ratio_min"] = min(d["ratio_min"] for d in logs)
    out["ratio_max"] = max(d["ratio_max"] for d in logs)
    return {**out, "updates": len(logs)}
