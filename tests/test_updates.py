# classroom: not in the student copy (it re-derives the assignments' solutions, independently of the code)
"""Every learning update of train.py against an independent implementation written here, one token at a time.

`grpo_update` (GRPO), `ppo_update` (PPO) and `sft_step` (SFT) run with plain SGD on float64 models, and the
parameters they leave must equal those of the reference implementation below to 1e-10 (they agree to ~1e-16). The
reference shares no code with train.py or grpo.py: it runs the model on EACH ROW ALONE, unpadded, writes the clipped
surrogate, the k3 KL, GAE and the aggregations as loops over rows and tokens, and steps with p <- p - lr * g by
hand. Only the sampling is shared: which rows each update uses is `rollouts.minibatches`' documented random split,
reproduced here from a generator seeded like the one passed in.

    GRPO   DeepSeekMath (arXiv 2402.03300) Eq. 3, with Eq. 4's k3 estimator of the KL:
             J = 1/G sum_i 1/|o_i| sum_t { min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A) - beta k3 },
             rho = pi_theta(o_t) / pi_old(o_t),   k3 = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1
           and DAPO's token_mean / Dr. GRPO's constant in place of the 1/G 1/|o_i| (--agg)
    PPO    DeepSeekMath Eq. 1 (the same clipped surrogate, A_t from GAE; no KL term) and Eq. 2 (the per-token
           reward r_t = - beta log(pi_old(o_t) / pi_ref(o_t)), plus the score on the last token), GAE as DAPO
           Eqs. 2-3, and PPO2's clipped value loss for the critic
    SFT    the mean negative log-likelihood of the completion tokens (the prompt is never a target)

Each setting that must reach the loss (mu, minibatches, both clip bounds, temperature, the overlong filter, the
three aggregations, beta, the gradient clip, gamma, lambda, whitening, the value clip, --micro_batch and
--forward_chunk) has a case in which it changes the result. These tests replace one that compared the micro-batched
update with the whole-minibatch one: a bug shared by both paths passed it; here every path must give the
reference's numbers.

Run: python -m pytest -q tests/test_updates.py
"""

import copy

import pytest
import torch

import grpo
import train
from model import Critic
from test_grpo import EOS, PAD, PROMPTS, rollout, tiny
import sft
import rollouts
import config

F64 = torch.float64
MAX_NEW = 8  # the generation budget of the rollouts below
ADV = [1.0, -0.6, 0.8, -1.3, 0.5, -0.4]  # hand-chosen advantages of the 6 rows, both signs
SCORES = [1.0, 0.0, 0.5, 2.0, 0.0, 1.0]  # the completions' scores r_phi(q, o): 3 questions x G = 2
SEED = 3  # the seed of the generator that draws the minibatches


def sampled_rollouts(policy) -> rollouts.Rollouts:
    """The policy's samples for test_grpo's 6 PROMPTS (B = 3, G = 2), of lengths 8, 7, 3, 2, 8, 3: row 4 hit the budget
    (truncated), row 0 wrote its EOS as its 8th token (full length, not truncated), the others ended early."""
    r = rollout(policy, PROMPTS, max_new_tokens=MAX_NEW, seed=5)
    assert r.mask.sum(-1).tolist() == [8, 7, 3, 2, 8, 3] and r.truncated.tolist() == [False] * 4 + [True, False]
    return rollouts.Rollouts(problems=[None] * 3, prompts=PROMPTS, ids=r.ids, mask=r.mask, truncated=r.truncated,
                          texts=[""] * 6, rewards=torch.tensor(SCORES, dtype=F64).view(3, 2),
                          correct=torch.zeros(3, 2))


# ============================================================================= the reference implementation


def completions(roll):
    """Each row as (prompt tokens, completion tokens), unpadded: the completion up to and including its EOS."""
    return [(roll.prompts[i], roll.ids[i, :int(roll.mask[i].sum())].tolist()) for i in range(len(roll.prompts))]


def token_logps(model, prompt, completion, temperature):
    """log pi(o_t | q, o_<t) for t = 0..|o|-1, the row ALONE: one forward pass over prompt + completion; the logits
    at position |q| - 1 + t predict o_t; pi is the tempered softmax(logits / temperature)."""
    logits = model(torch.tensor([prompt + completion]))[0]  # (|q| + |o|, V)
    P = len(prompt)
    logp = torch.log_softmax(logits[P - 1:P - 1 + len(completion)] / temperature, dim=-1)
    return logp[torch.arange(len(completion)), torch.tensor(completion)]


def state_values(critic, prompt, completion):
    """V(s_t) for t = 0..|o|-1, s_t = (q, o_<t), the row alone: the critic's output at the last token of s_t."""
    P = len(prompt)
    return critic(torch.tensor([prompt + completion]))[0, P - 1:P - 1 + len(completion)]


def minibatch_rows(n, k, generator):
    """The documented sampling of `rollouts.minibatches`: a random order of the n rows (torch.randperm), cut into
    min(k, n) consecutive parts whose sizes differ by at most one, the larger ones first."""
    order = torch.randperm(n, generator=generator).tolist()
    k = min(k, n)
    sizes = [n // k + (1 if j < n % k else 0) for j in range(k)]
    starts = [sum(sizes[:j]) for j in range(k)]
    return [order[s:s + size] for s, size in zip(starts, sizes)]


def clipped_surrogate_by_hand(rho, A, eps_low, eps_high):
    """min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A), written per sign of A: for A >= 0 the ratio is capped at
    1 + eps_high, for A < 0 floored at 1 - eps_low. Also: where the clip acted (the token's gradient is zero)."""
    surrogate = torch.where(A >= 0, torch.minimum(rho, torch.tensor(1 + eps_high, dtype=F64)),
                            torch.maximum(rho, torch.tensor(1 - eps_low, dtype=F64))) * A
    clipped = ((A > 0) & (rho > 1 + eps_high)) | ((A < 0) & (rho < 1 - eps_low))
    return surrogate, clipped


def aggregate_by_hand(per_token, n_rows, agg, max_len):
    """per_token: for each row of the minibatch that is in the loss, its 1-D tensor of per-token terms.

    seq_mean (GRPO Eq. 3): the mean over the rows of each row's mean; token_mean (DAPO Eq. 12): the sum over all
    tokens / their number; constant (Dr. GRPO): the sum / (rows in the minibatch * generation budget)."""
    per_token = [x for x in per_token if len(x) > 0]
    if not per_token:
        return torch.zeros((), dtype=F64)  # nothing to learn from
    if agg == "seq_mean":
        total = 0.0
        for x in per_token:
            total = total + x.sum() / len(x)
        return total / len(per_token)
    total, count = 0.0, 0
    for x in per_token:
        total, count = total + x.sum(), count + len(x)
    return total / count if agg == "token_mean" else total / (n_rows * max_len)


def sgd_step(model, loss, lr, grad_clip):
    """g = d loss / d params by autograd; g <- g * min(1, c / (||g|| + 1e-6)) if c = grad_clip > 0 (the global norm
    over every parameter, with torch.nn.utils.clip_grad_norm_'s 1e-6); p <- p - lr g. Returns ||g|| before the clip."""
    params = list(model.parameters())
    if loss.requires_grad:
        grads = torch.autograd.grad(loss, params)
    else:  # no loss token in the minibatch
        grads = [torch.zeros_like(p) for p in params]
    norm = sum((g ** 2).sum() for g in grads).sqrt().item()
    scale = min(1.0, grad_clip / (norm + 1e-6)) if grad_clip > 0 else 1.0
    with torch.no_grad():
        for p, g in zip(params, grads):
            p -= lr * scale * g
    return norm


def update_record(rhos, As, clipped, kls=()):
    """What one update saw before its step: its loss tokens' ratios rho and advantages A, and the statistics
    train.py logs for it, token means over the minibatch's loss tokens (0 without any; the ratio's extremes 1)."""
    n = sum(len(r) for r in rhos)
    rho, A = torch.cat([torch.zeros(0, dtype=F64), *rhos]), torch.cat([torch.zeros(0, dtype=F64), *As])
    record = {"rho": rho, "A": A, "clip_frac": 0.0, "ratio_mean": 0.0, "ratio_min": 1.0, "ratio_max": 1.0, "kl": 0.0}
    if n:
        record.update(clip_frac=sum(int(c.sum()) for c in clipped) / n, ratio_mean=rho.sum().item() / n,
                      ratio_min=rho.min().item(), ratio_max=rho.max().item(),
                      kl=sum(k.sum().item() for k in kls) / n if kls else float("nan"))
    return record


def mean_over(updates, key):
    return sum(u[key] for u in updates) / len(updates)


def grpo_by_hand(policy, ref, roll, adv, cfg, lr):
    """cfg.mu epochs over the rollout's minibatches, one SGD step each, maximising DeepSeekMath Eq. 3 token by token.
    adv: (N, T), A_{i,t}. Returns (the updated copy of policy, one record per update)."""
    policy = copy.deepcopy(policy)
    rows = completions(roll)
    tau, beta = cfg.temperature, cfg.kl_coef
    with torch.no_grad():
        old = [token_logps(policy, q, o, tau) for q, o in rows]  # pi_old: the policy that sampled, before any update
        ref_logp = [token_logps(ref, q, o, tau) for q, o in rows] if beta > 0 else None
    in_loss = [not (cfg.overlong_filter and bool(roll.truncated[i])) for i in range(len(rows))]  # DAPO's filter
    generator, updates = torch.Generator().manual_seed(SEED), []
    for _ in range(cfg.mu):  # GRPO iterations
        for part in minibatch_rows(len(rows), cfg.minibatches, generator):
            per_token, rhos, As, clipped, kls = [], [], [], [], []
            for i in [i for i in part if in_loss[i]]:
                q, o = rows[i]
                logp = token_logps(policy, q, o, tau)  # log pi_theta, with gradient
                rho, A = torch.exp(logp - old[i]), adv[i, :len(o)]
                surrogate, clip = clipped_surrogate_by_hand(rho, A, cfg.clip_eps_low, cfg.clip_eps_high)
                x = surrogate
                if beta > 0:  # - beta * k3, k3 = pi_ref / pi_theta - log(pi_ref / pi_theta) - 1   (Eq. 4)
                    log_r = ref_logp[i] - logp
                    k3 = torch.exp(log_r) - log_r - 1
                    x = x - beta * k3
                    kls.append(k3.detach())
                per_token.append(x)
                rhos.append(rho.detach())
                As.append(A)
                clipped.append(clip)
            J = aggregate_by_hand(per_token, len(part), cfg.agg, cfg.max_new_tokens)  # J_GRPO of this minibatch
            record = update_record(rhos, As, clipped, kls)
            record["loss"] = -J.item()
            record["entropy"] = -sum(old[i].sum().item() for i in part) / sum(len(rows[i][1]) for i in part)
            record["grad_norm"] = sgd_step(policy, -J, lr, cfg.grad_clip)  # the loss is -J
            updates.append(record)
    return policy, updates


def gae_by_hand(rewards, values, gamma, lam):
    """A_t = delta_t + gamma lam A_{t+1}, delta_t = r_t + gamma V(s_{t+1}) - V(s_t), V = 0 after the last token."""
    A = [0.0] * len(rewards)
    next_value, next_A = 0.0, 0.0
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * next_value - values[t]
        A[t] = delta + gamma * lam * next_A
        next_value, next_A = values[t], A[t]
    return torch.tensor(A, dtype=F64)


def ppo_by_hand(policy, ref, critic, roll, cfg, lr, critic_lr):
    """PPO: per-token KL-shaped rewards (Eq. 2), GAE, whitening, then cfg.mu epochs over the minibatches: one SGD
    step of the policy on -J_PPO (Eq. 1), then one of the critic on vf_coef * the clipped value loss.
    Returns (the updated copies of policy and critic, one record per update, what the rollout gave)."""
    policy, critic = copy.deepcopy(policy), copy.deepcopy(critic)
    rows = completions(roll)
    tau, beta, c = cfg.temperature, cfg.kl_coef, cfg.value_clip
    scores = roll.rewards.flatten().tolist()  # row i = b * G + g
    with torch.no_grad():
        old = [token_logps(policy, q, o, tau) for q, o in rows]  # pi_old
        ref_logp = [token_logps(ref, q, o, tau) for q, o in rows] if beta > 0 else old  # beta 0: no reference
        v_old = [state_values(critic, q, o) for q, o in rows]  # V_old(s_t), the critic at rollout time
    in_loss = [not (cfg.overlong_filter and bool(roll.truncated[i])) for i in range(len(rows))]
    adv, returns = [], []
    for i, (q, o) in enumerate(rows):
        r = [-beta * (old[i][t].item() - ref_logp[i][t].item()) for t in range(len(o))]  # - beta log(pi_old/pi_ref)
        r[-1] += scores[i]  # + the score, on the last token
        A = gae_by_hand(r, v_old[i].tolist(), cfg.gamma, cfg.lam)
        adv.append(A)
        returns.append(A + v_old[i])  # R_t = A_t + V_old(s_t)
    if cfg.whiten_adv:  # over every loss token of the batch, population std
        tokens = torch.cat([adv[i] for i in range(len(rows)) if in_loss[i]])
        mean = tokens.mean()
        std = ((tokens - mean) ** 2).mean().sqrt()
        adv = [(A - mean) / (std + 1e-8) for A in adv]
    generator, updates = torch.Generator().manual_seed(SEED), []
    for _ in range(cfg.mu):
        for part in minibatch_rows(len(rows), cfg.minibatches, generator):
            per_token, rhos, clipped, value_terms, value_clipped = [], [], [], [], 0
            for i in [i for i in part if in_loss[i]]:
                q, o = rows[i]
                rho = torch.exp(token_logps(policy, q, o, tau) - old[i])
                surrogate, clip = clipped_surrogate_by_hand(rho, adv[i], cfg.clip_eps_low, cfg.clip_eps_high)
                per_token.append(surrogate)
                rhos.append(rho.detach())
                clipped.append(clip)
                V, R = state_values(critic, q, o), returns[i]  # V with gradient
                term = (V - R) ** 2
                if c > 0:  # PPO2: the pessimistic of the plain and the clipped value
                    V_clip = v_old[i] + torch.clamp(V - v_old[i], -c, c)
                    term = torch.maximum(term, (V_clip - R) ** 2)
                    value_clipped += int(((V - v_old[i]).abs() > c).sum())
                value_terms.append(0.5 * term)
            J = aggregate_by_hand(per_token, len(part), cfg.agg, cfg.max_new_tokens)  # J_PPO of this minibatch
            record = update_record(rhos, [adv[i] for i in part if in_loss[i]], clipped)
            record["loss"] = -J.item()
            record["entropy"] = -sum(old[i].sum().item() for i in part) / sum(len(rows[i][1]) for i in part)
            record["grad_norm"] = sgd_step(policy, -J, lr, cfg.grad_clip)
            value_loss = aggregate_by_hand(value_terms, len(part), "token_mean", None)  # token-averaged
            record["value_loss"], record["value_clipped"] = value_loss.item(), value_clipped
            record["critic_grad_norm"] = sgd_step(critic, cfg.vf_coef * value_loss, critic_lr, cfg.grad_clip)
            updates.append(record)
    keep = [i for i in range(len(rows)) if in_loss[i]]
    log_r = torch.cat([ref_logp[i] - old[i] for i in keep])
    rollout_stats = {"V_old": torch.cat([v_old[i] for i in keep]), "R": torch.cat([returns[i] for i in keep]),
                     "kl": (torch.exp(log_r) - log_r - 1).mean().item(), "kl_k1": (-log_r).mean().item()}
    return policy, critic, updates, rollout_stats


# ============================================================================= comparisons


def assert_same_parameters(model, expected, start):
    """model's parameters equal expected's to 1e-10, and the update moved them far more than that."""
    moved = 0.0
    for (name, p), q, p0 in zip(model.named_parameters(), expected.parameters(), start.parameters()):
        assert torch.allclose(p, q, rtol=0, atol=1e-10), (name, (p - q).abs().max().item())
        moved = max(moved, (q - p0).abs().max().item())
    assert moved > 1e-4, moved


def assert_same_statistics(stats, updates, keys):
    """The statistics train.py returns are the means over the updates of the reference's (the ratio's extremes:
    min and max), after as many updates."""
    assert stats["updates"] == len(updates)
    for key in keys:
        assert stats[key] == pytest.approx(mean_over(updates, key), rel=1e-9, abs=1e-12), key
    assert stats["objective"] == pytest.approx(-mean_over(updates, "loss"), rel=1e-9, abs=1e-12)
    assert stats["ratio_min"] == pytest.approx(min(u["ratio_min"] for u in updates), rel=1e-9)
    assert stats["ratio_max"] == pytest.approx(max(u["ratio_max"] for u in updates), rel=1e-9)


# ============================================================================= 1. GRPO


GRPO_BASE = dict(rl="grpo", mu=1, minibatches=1, temperature=1.0, kl_coef=0.0, clip_eps_low=0.2, clip_eps_high=0.2,
                 agg="seq_mean", overlong_filter=False, grad_clip=0.0, micro_batch=0, forward_chunk=0,
                 max_new_tokens=MAX_NEW)
GRPO_LR = 0.05  # large enough that the ratio leaves [1 - eps, 1 + eps] within a few updates: the clip acts
MICRO = {"micro_batch_2": dict(micro_batch=2), "micro_batch_1_forward_chunk_2": dict(micro_batch=1, forward_chunk=2)}
GRPO_STATS = ("loss", "clip_frac", "ratio_mean", "grad_norm", "entropy")

GRPO_CASES = {  # TrainConfig fields over GRPO_BASE
    "one_update": dict(kl_coef=0.1),  # mu = 1, one minibatch: pi_old is the policy itself, the ratio exactly 1
    "mu_2": dict(mu=2, kl_coef=0.1),
    "2_minibatches": dict(minibatches=2),
    "3_minibatches_mu_2": dict(minibatches=3, mu=2, kl_coef=0.1),
    "4_minibatches_of_2_2_1_1": dict(minibatches=4),
    "6_minibatches_of_1_overlong_filter": dict(minibatches=6, overlong_filter=True),  # one minibatch has no token
    "clip_higher_0.1_0.3": dict(clip_eps_low=0.1, clip_eps_high=0.3, mu=2, minibatches=3),
    "clip_0.3_0.1": dict(clip_eps_low=0.3, clip_eps_high=0.1, mu=2, minibatches=3),
    "temperature_0.7": dict(temperature=0.7, mu=2, minibatches=2, kl_coef=0.1),
    "overlong_filter": dict(overlong_filter=True, mu=2, minibatches=2, kl_coef=0.1),
    "token_mean": dict(agg="token_mean", mu=2, minibatches=2, kl_coef=0.1),
    "constant": dict(agg="constant", mu=2, minibatches=2, kl_coef=0.1),
    # as if every row had ended before a budget of 12: Dr. GRPO divides by the budget, not the longest completion (8)
    "constant_budget_12": dict(agg="constant", mu=2, minibatches=2, max_new_tokens=12),
    "kl_0.3_clip_off": dict(kl_coef=0.3, mu=2, minibatches=2, clip_eps_low=10.0, clip_eps_high=10.0),
    "grad_clip_0.05": dict(grad_clip=0.05, mu=2, minibatches=2, kl_coef=0.1),
    # gradient accumulation and chunked forward passes give the same update, for each aggregation, with the
    # truncated row filtered out (so a micro-batch may hold no loss token)
    **{f"{agg}_{name}": dict(agg=agg, mu=2, minibatches=2, kl_coef=0.1, overlong_filter=True, **kw)
       for agg in grpo.AGGREGATIONS for name, kw in MICRO.items()},
}


def run_grpo_update(policy, ref, roll, adv, cfg):
    """train.grpo_update with SGD at GRPO_LR on a copy of policy -> (the copy, the returned statistics)."""
    updated = copy.deepcopy(policy)
    models = train.RLModels(updated, ref, torch.optim.SGD(updated.parameters(), lr=GRPO_LR))
    stats = train.grpo_update(models, roll, adv, cfg, "cpu", torch.Generator().manual_seed(SEED))
    return updated, stats


@pytest.mark.parametrize("case", GRPO_CASES)
def test_grpo_update_equals_deepseekmath_eq_3_computed_token_by_token(case):
    cfg = config.TrainConfig(**{**GRPO_BASE, **GRPO_CASES[case]})
    policy, ref = tiny(seed=0), tiny(seed=1)  # a reference that differs from the policy: k3 > 0
    roll = sampled_rollouts(policy)
    adv = grpo.broadcast_outcome_advantage(torch.tensor(ADV, dtype=F64), roll.mask)  # A_{i,t} = A_i
    expected, updates = grpo_by_hand(policy, ref, roll, adv, cfg, GRPO_LR)

    updated, stats = run_grpo_update(policy, ref if cfg.kl_coef > 0 else None, roll, adv, cfg)  # beta 0: no pi_ref
    assert_same_parameters(updated, expected, policy)
    assert_same_statistics(stats, updates, GRPO_STATS + (("kl",) if cfg.kl_coef > 0 else ()))
    assert stats["updates"] == cfg.mu * min(cfg.minibatches, 6)
    # the settings are not vacuous:
    if stats["updates"] == 1:  # one update: the ratio is exactly 1, nothing is clipped
        assert stats["ratio_min"] == stats["ratio_max"] == 1.0 and stats["clip_frac"] == 0.0
    if case.startswith("clip"):  # the later updates take the ratio out of [1 - eps_low, 1 + eps_high] on both sides,
        # and between 1 +- eps_low and 1 +- eps_high, where the two bounds give different gradients
        rho, A = torch.cat([u["rho"] for u in updates]), torch.cat([u["A"] for u in updates])
        lo, hi = sorted((cfg.clip_eps_low, cfg.clip_eps_high))
        assert ((A > 0) & (rho > 1 + cfg.clip_eps_high)).any() and ((A < 0) & (rho < 1 - cfg.clip_eps_low)).any()
        assert ((A > 0) & (rho > 1 + lo) & (rho < 1 + hi)).any() and ((A < 0) & (rho < 1 - lo) & (rho > 1 - hi)).any()
    if cfg.grad_clip > 0:  # the gradient's norm is clipped at every update
        assert min(u["grad_norm"] for u in updates) > cfg.grad_clip


def test_grpo_update_with_per_token_advantages_equals_the_reference():
    """Process supervision gives every token its own A_{i,t} (DeepSeekMath §4.1.3): each token's own is used."""
    cfg = config.TrainConfig(**{**GRPO_BASE, **dict(mu=2, minibatches=2, kl_coef=0.1)})
    policy, ref = tiny(seed=0), tiny(seed=1)
    roll = sampled_rollouts(policy)
    adv = torch.randn(roll.ids.shape, dtype=F64, generator=torch.Generator().manual_seed(0)) * roll.mask
    expected, updates = grpo_by_hand(policy, ref, roll, adv, cfg, GRPO_LR)
    updated, stats = run_grpo_update(policy, ref, roll, adv, cfg)
    assert_same_parameters(updated, expected, policy)
    assert_same_statistics(stats, updates, GRPO_STATS + ("kl",))


def test_rl_update_with_grpo_learns_from_the_group_normalised_rewards():
    """train.rl_update: outcome advantages A_i = (r_i - mean) / (std + 1e-6) within each group of G (population
    std, DeepSeekMath §4.1.2), then the update of Eq. 3."""
    cfg = config.TrainConfig(**{**GRPO_BASE, **dict(mu=2, minibatches=2, kl_coef=0.1)})
    policy, ref = tiny(seed=0), tiny(seed=1)
    roll = sampled_rollouts(policy)
    A = []
    for group in roll.rewards.tolist():  # by hand, group by group
        mean = sum(group) / len(group)
        std = (sum((r - mean) ** 2 for r in group) / len(group)) ** 0.5
        A += [(r - mean) / (std + 1e-6) for r in group]
    adv = torch.tensor(A, dtype=F64)[:, None] * roll.mask  # on every token of the row
    expected, updates = grpo_by_hand(policy, ref, roll, adv, cfg, GRPO_LR)
    updated = copy.deepcopy(policy)
    models = train.RLModels(updated, ref, torch.optim.SGD(updated.parameters(), lr=GRPO_LR))
    stats = train.rl_update(models, roll, None, cfg, "cpu", torch.Generator().manual_seed(SEED))
    assert_same_parameters(updated, expected, policy)
    assert_same_statistics(stats, updates, GRPO_STATS + ("kl",))


# ============================================================================= 2. PPO


PPO_BASE = dict(rl="ppo", mu=2, minibatches=2, temperature=1.0, kl_coef=0.1, clip_eps_low=0.2, clip_eps_high=0.2,
                agg="seq_mean", overlong_filter=False, grad_clip=0.0, micro_batch=0, forward_chunk=0,
                max_new_tokens=MAX_NEW, gamma=0.9, lam=0.8, whiten_adv=True, value_clip=0.05, vf_coef=0.5)
PPO_LR, CRITIC_LR = 0.05, 0.02  # the critic's: the values leave V_old +- value_clip, and the updates stay stable

PPO_CASES = {  # TrainConfig fields over PPO_BASE
    "gamma_0.9_lambda_0.8": dict(),
    "gamma_1_lambda_0.7": dict(gamma=1.0, lam=0.7),
    "gamma_lambda_1": dict(gamma=1.0, lam=1.0),
    "no_whitening": dict(whiten_adv=False),
    "no_value_clip": dict(value_clip=0.0),
    "kl_0": dict(kl_coef=0.0),
    "one_update": dict(mu=1, minibatches=1),
    "3_minibatches_mu_2": dict(minibatches=3),
    "temperature_0.7": dict(temperature=0.7),
    "overlong_filter": dict(overlong_filter=True),
    "token_mean": dict(agg="token_mean"),
    "constant": dict(agg="constant"),
    "clip_higher_0.1_0.3": dict(clip_eps_low=0.1, clip_eps_high=0.3, minibatches=3),
    "grad_clip_0.05": dict(grad_clip=0.05),
    **{f"{agg}_{name}": dict(agg=agg, overlong_filter=True, **kw)
       for agg in ("seq_mean", "token_mean") for name, kw in MICRO.items()},
}


def critic_with_random_head(policy) -> Critic:
    """A critic whose value head is random (train.py starts it at zero), so that V varies from state to state."""
    critic = Critic.from_policy(policy)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        critic.value_head.weight.copy_(torch.randn(critic.value_head.weight.shape, generator=g, dtype=F64) * 0.1)
        critic.value_head.bias.fill_(0.3)
    return critic


@pytest.mark.parametrize("case", PPO_CASES)
def test_ppo_update_equals_deepseekmath_eqs_1_2_with_gae_and_a_clipped_critic(case):
    cfg = config.TrainConfig(**{**PPO_BASE, **PPO_CASES[case]})
    policy, ref = tiny(seed=0), tiny(seed=1)
    critic = critic_with_random_head(policy)
    roll = sampled_rollouts(policy)
    expected_policy, expected_critic, updates, rollout_stats = ppo_by_hand(policy, ref, critic, roll, cfg, PPO_LR,
                                                                           CRITIC_LR)
    updated, updated_critic = copy.deepcopy(policy), copy.deepcopy(critic)
    models = train.RLModels(updated, ref if cfg.kl_coef > 0 else None,
                            torch.optim.SGD(updated.parameters(), lr=PPO_LR), updated_critic,
                            torch.optim.SGD(updated_critic.parameters(), lr=CRITIC_LR))
    stats = train.ppo_update(models, roll, cfg, "cpu", torch.Generator().manual_seed(SEED))

    assert_same_parameters(updated, expected_policy, policy)
    assert_same_parameters(updated_critic, expected_critic, critic)
    assert stats["updates"] == cfg.mu * min(cfg.minibatches, 6)
    assert_same_statistics(stats, updates, ("loss", "clip_frac", "ratio_mean", "grad_norm", "entropy", "value_loss",
                                            "critic_grad_norm"))
    # the rollout-time statistics, over the loss tokens
    V, R = rollout_stats["V_old"], rollout_stats["R"]
    assert stats["value_mean"] == pytest.approx(V.mean().item(), rel=1e-9)
    assert stats["return_mean"] == pytest.approx(R.mean().item(), rel=1e-9)
    assert stats["explained_var"] == pytest.approx(1 - (R - V).var(correction=0).item() / R.var(correction=0).item(),
                                                   rel=1e-9)
    assert stats["kl_k1"] == pytest.approx(rollout_stats["kl_k1"], rel=1e-9, abs=1e-15)
    if cfg.kl_coef > 0:
        assert stats["kl"] == pytest.approx(rollout_stats["kl"], rel=1e-9)
    if cfg.value_clip > 0 and stats["updates"] > 1 and not cfg.grad_clip:  # the value clip acts in later updates
        assert sum(u["value_clipped"] for u in updates) > 0


# ============================================================================= 3. SFT


SFT_EXAMPLES = [([5, 6, 7], [8, 9, 10, EOS]), ([9], [11, EOS]), ([10, 11, 12, 13, 14], [15, 16, 17, 18, 19, 20, EOS])]


def sft_by_hand(model, examples, idx, lr, grad_clip, targets="completion"):
    """One SGD step on the mean over the batch's completion tokens (EOS included) of -log softmax(logits)[target],
    each example alone and unpadded. Wrong variants, to show that they differ: targets="prompt_too" (the prompt's
    tokens are targets too), "padding_too" (so are the pads after the shorter rows), "row_mean" (the mean of each
    row's mean). -> (the updated copy of model, the loss)."""
    model = copy.deepcopy(model)
    longest = max(len(examples[i][0]) + len(examples[i][1]) for i in idx)
    nll_rows = []
    for i in idx:
        prompt, completion = examples[i]
        seq = prompt + completion
        if targets == "padding_too":
            seq = seq + [PAD] * (longest - len(seq))
        logp = torch.log_softmax(model(torch.tensor([seq]))[0], dim=-1)  # position j predicts seq[j + 1]
        first = 1 if targets == "prompt_too" else len(prompt)  # the first target token
        nll_rows.append(torch.stack([-logp[j - 1, seq[j]] for j in range(first, len(seq))]))
    if targets == "row_mean":
        loss = sum(x.mean() for x in nll_rows) / len(nll_rows)
    else:
        loss = sum(x.sum() for x in nll_rows) / sum(len(x) for x in nll_rows)
    sgd_step(model, loss, lr, grad_clip)
    return model, loss.item()


def relative_difference(a, b, start):
    """max |a - b| over the parameters, relative to the largest change from start to b."""
    diff = max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))
    return diff / max((q - p0).abs().max().item() for q, p0 in zip(b.parameters(), start.parameters()))


@pytest.mark.parametrize("grad_clip", [0.0, 0.1])
def test_sft_step_is_sgd_on_the_mean_nll_of_the_completion_tokens_only(grad_clip):
    model, lr, idx = tiny(seed=0), 0.5, [2, 0, 1]  # 3 examples of different lengths: the batch has padding
    x, y, mask = sft.sft_batch(SFT_EXAMPLES, idx, "cpu")
    expected, expected_loss = sft_by_hand(model, SFT_EXAMPLES, idx, lr, grad_clip)
    updated = copy.deepcopy(model)
    loss, norm = sft.sft_step(updated, torch.optim.SGD(updated.parameters(), lr=lr), x, y, mask, grad_clip, "cpu")
    # completion_loss takes the cross-entropy in float32, so the step agrees to float32's precision, not 1e-10
    assert loss == pytest.approx(expected_loss, rel=1e-6)
    assert relative_difference(updated, expected, model) < 1e-5
    if grad_clip > 0:
        assert norm > grad_clip
    # the prompt and the padding are never targets and every completion token weighs the same: each wrong variant
    # moves the parameters differently, by far more than the tolerance above
    for wrong in ("prompt_too", "padding_too", "row_mean"):
        other, _ = sft_by_hand(model, SFT_EXAMPLES, idx, lr, grad_clip, targets=wrong)
        assert relative_difference(other, expected, model) > 1e-2, wrong


def test_consecutive_sft_steps_each_start_from_a_zero_gradient():
    model, lr = tiny(seed=0), 0.5
    first, _ = sft_by_hand(model, SFT_EXAMPLES, [2, 0], lr, 0.0)
    expected, _ = sft_by_hand(first, SFT_EXAMPLES, [1], lr, 0.0)  # the second step's gradient is its batch's alone
    updated = copy.deepcopy(model)
    optimizer = torch.optim.SGD(updated.parameters(), lr=lr)
    for idx in ([2, 0], [1]):
        sft.sft_step(updated, optimizer, *sft.sft_batch(SFT_EXAMPLES, idx, "cpu"), 0.0, "cpu")
    assert relative_difference(updated, expected, model) < 1e-5
