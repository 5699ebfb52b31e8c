"""The GRPO objective and its PPO baseline, one small pure function per equation.

Tensors in, tensors out: no model state, optimizer or globals, except that `completion_logprobs` and
`completion_values` run the model they are given. Each function's docstring gives its equation and the
paper's equation number; the rewards (DAPO's soft overlong penalty and the per-step rewards included) are
in rewards.py.

    log-probs and masks    at_completion_states, completion_logprobs, completion_values, completion_mask
    KL estimators          kl_k1, kl_k2, kl_k3 (DeepSeekMath Eq. 4)
    advantages             group_advantages, rloo_advantages, broadcast_outcome_advantage,
                           process_advantages, dynamic_sampling_filter
    surrogate              policy_ratio, clipped_surrogate, clip_fraction, aggregate, aggregate_weight
    objectives             grpo_objective, grpo_loss (Eq. 3); ppo_objective, ppo_loss (Eq. 1)
    the PPO baseline       ppo_token_rewards (Eq. 2), gae, value_loss, explained_variance, whiten
    gradient coefficients  grpo_gradient_coefficient, gradient_coefficient (§5.2.1, Table 10)
    evaluation             pass_at_k, majority_vote
    a learned reward       completion_scores, preference_loss (Bradley-Terry), pair_accuracy
    a verifier             verifier_loss (Cobbe et al.: each token predicts whether the answer is right)

GRPO and PPO share the surrogate and the aggregation and differ in two places: the advantage (group
statistics, or a critic and GAE) and the KL to pi_ref (a k3 loss term, or a k1 penalty in each token's reward).
Shapes: B prompts, G samples per prompt, N = B*G completion rows (row n = b*G + g), T completion tokens,
P prompt tokens, V vocabulary; every per-token tensor is (N, T) with a `mask` (N, T), True on real
completion tokens. Every objective J is maximised; each loss is -J, with the sign flip written out.

The equations and their papers: docs/equations.md. The choices where the papers leave a point open:
docs/design.md ("GRPO equations", "PPO baseline"). Tests: python -m pytest -q tests/test_grpo.py
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model import hidden_prompt_once

DDOF = 0  # (design: Population std)
EPS = 1e-6  # added to the std (design: Std plus eps)
SCALES = ("group", "batch", "none")
AGGREGATIONS = ("seq_mean", "token_mean", "constant")
GC_METHODS = ("sft", "rft", "online_rft", "ppo", "grpo")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: allowed values are {', '.join(repr(a) for a in allowed)}")


# ---------------------------------------------------------------------------------------------
# 1. Log-probabilities, values and masks
# ---------------------------------------------------------------------------------------------
def at_completion_states(model, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor, completion_ids: torch.Tensor,
                         completion_mask: torch.Tensor, prompt_once: bool = False) -> torch.Tensor:
    """model's output at the state s_t = (q, o_<t) before each completion token o_t   -> (N, T, ...), >= fp32.

    One forward pass over [left-padded prompt (N, P) | completion (N, T)], read at positions P-1+t,
    t = 0..T-1: the position of the last token of s_t, whose output predicts o_t (logits) or scores s_t
    (values). The model's `valid` is cat(prompt_valid, completion_mask): left pads are invisible keys and
    positions skip them (design: Left padding). Completion pads come after the EOS, so under causal attention
    no real token ever sees them; marking them invalid only keeps them out of the positions.
    prompt_once (--prompt_once): the same states from model.hidden_prompt_once, each distinct prompt run once, and
    the head (LM head or value head) applied at these T positions only.
    """
    if prompt_once:
        out = model.head(hidden_prompt_once(model, prompt_ids, prompt_valid, completion_ids, completion_mask))
        return out.to(torch.promote_types(out.dtype, torch.float32))
    P = prompt_ids.size(1)
    ids = torch.cat([prompt_ids, completion_ids], dim=1)  # (N, P+T)
    valid = torch.cat([prompt_valid, completion_mask], dim=1)  # (N, P+T)
    out = model(ids, valid=valid)[:, P - 1:-1]  # (N, T, ...): position P-1+t is the state before token t
    return out.to(torch.promote_types(out.dtype, torch.float32))  # losses in >= fp32


def completion_logprobs(model, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor, completion_ids: torch.Tensor,
                        completion_mask: torch.Tensor, temperature: float = 1.0, prompt_once: bool = False) -> torch.Tensor:
    """logp_{i,t} = log softmax(z_{i,t} / tau)[o_{i,t}]: log pi(o_{i,t} | q_i, o_{i,<t}) of every completion token.

    One forward pass (`at_completion_states`); returns (N, T), 0 where completion_mask is False. With grad:
    wrap the call in torch.no_grad() for pi_old and pi_ref. Pass the rollout's mask here, and apply
    overlong filtering (`completion_mask`) to the loss only.
    """
    logits = at_completion_states(model, prompt_ids, prompt_valid, completion_ids, completion_mask,
                                  prompt_once)  # (N, T, V)
    logp_all = F.log_softmax(logits / temperature, dim=-1)  # (N, T, V)
    logp = logp_all.gather(-1, completion_ids[..., None]).squeeze(-1)  # (N, T) log pi(o_{i,t})
    return logp.masked_fill(~completion_mask, 0.0)


def completion_values(critic, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor, completion_ids: torch.Tensor,
                      completion_mask: torch.Tensor, prompt_once: bool = False) -> torch.Tensor:
    """V_{i,t} = V_psi(q_i, o_{i,<t}): the critic's value of the state before each completion token   -> (N, T)

    The value PPO's GAE needs at step t (DAPO Eq. 3: delta_t = r_t + gamma V(s_{t+1}) - V(s_t)), read at the
    very position whose logits give log pi(o_t), via `at_completion_states` (design: Critic alignment); 0 where
    completion_mask is False. With grad for the critic's update; under torch.no_grad() for the rollout's values.
    """
    values = at_completion_states(critic, prompt_ids, prompt_valid, completion_ids, completion_mask,
                                  prompt_once)  # (N, T)
    return values.masked_fill(~completion_mask, 0.0)


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """sum of x where mask is True, over dim (or all of x). Masked-out inf or NaN are ignored (torch.where)."""
    x = torch.where(mask, x, torch.zeros_like(x))
    return x.sum() if dim is None else x.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """sum(x * mask) / sum(mask) over dim (or all of x); 0, not NaN, where the mask is empty."""
    count = mask.sum() if dim is None else mask.sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1)


def completion_mask(mask: torch.Tensor, truncated: torch.Tensor, overlong_filter: bool) -> torch.Tensor:
    """The loss mask (N, T): the rollout's mask, with the rows that hit max_new_tokens zeroed when
    overlong_filter (DAPO §3.4 "overlong filtering": a truncated sample is neither rewarded nor punished)."""
    if not overlong_filter:
        return mask
    return mask & ~truncated[:, None]  # (N, T)


# ---------------------------------------------------------------------------------------------
# 2. KL estimators (Schulman 2020), with log r = ref_logp - logp, r = pi_ref / pi_theta
# ---------------------------------------------------------------------------------------------
def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 = -log r = log pi_theta - log pi_ref. Unbiased, high variance, negative for about half the samples."""
    return logp - ref_logp  # k1 = -log r


def kl_k2(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k2 = 1/2 (log r)^2. Biased, low variance, >= 0."""
    return 0.5 * (ref_logp - logp) ** 2  # k2 = (log r)^2 / 2


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 = r - log r - 1 = pi_ref/pi_theta - log(pi_ref/pi_theta) - 1   (DeepSeekMath Eq. 4, R1 Eq. 2).

    Unbiased and >= 0; 0 exactly when the policies agree. d/dlogp k3 = 1 - r.
    Computed as expm1(log r) - log r (design: k3 via expm1).
    """
    # BEGIN SOLUTION kl-and-clip: k3 = r - log r - 1, r = pi_ref / pi_theta, from log-probs, precisely
    log_r = ref_logp - logp  # log r = log pi_ref - log pi_theta
    return torch.expm1(log_r) - log_r  # k3 = (r - 1) - log r
    # END SOLUTION kl-and-clip


# ---------------------------------------------------------------------------------------------
# 3. Advantages: group-relative (GRPO) and their relatives
# ---------------------------------------------------------------------------------------------
def group_advantages(rewards: torch.Tensor, scale: str = "group", ddof: int = DDOF, eps: float = EPS) -> torch.Tensor:
    """A_i = (r_i - mean(r)) / (std(r) + eps) within each group of G   (B, G) -> (B, G)

    DeepSeekMath §4.1.2, R1 Eq. 3, DAPO Eq. 9 (scale="group"); Dr. GRPO §3.2 A_i = r_i - mean(r)
    (scale="none"); scale="batch": group mean, std of the whole batch (design: Group mean, batch std).
    ddof 0 or 1 (design: Population std); eps (design: Std plus eps). A group whose G rewards are all equal
    gets exactly 0.
    """
    _check_choice("scale", scale, SCALES)
    if rewards.dim() != 2 or rewards.size(1) < 2:
        raise ValueError(f"rewards must be (B, G) with group_size G >= 2, got shape {tuple(rewards.shape)}")
    # BEGIN SOLUTION advantages: centre each group, divide by its std + eps (scale, ddof); equal rewards: 0
    same = (rewards == rewards[:, :1]).all(-1, keepdim=True)  # (B, 1): one reward value in the group
    centred = torch.where(same, 0.0, rewards - rewards.mean(-1, keepdim=True))  # r_i - mean(r)
    if scale == "none":
        return centred  # Dr. GRPO: no std
    if scale == "group":
        std = rewards.std(-1, correction=ddof, keepdim=True)  # std(r) over the G rewards, (B, 1)
    else:
        std = centred.std(correction=ddof)  # std over all B*G centred rewards, a scalar
    return torch.where(centred == 0, 0.0, centred / (std + eps))  # A_i; the where keeps eps=0 NaN-free
    # END SOLUTION advantages


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """A_i = r_i - 1/(G-1) sum_{j != i} r_j, the leave-one-out baseline   (B, G) -> (B, G).

    Dr. GRPO App. A: equals G/(G-1) times the centred reward of scale="none".
    """
    G = rewards.size(-1)
    others = (rewards.sum(-1, keepdim=True) - rewards) / (G - 1)  # mean_{j != i} r_j
    return rewards - others


def broadcast_outcome_advantage(adv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A_{i,t} = A_i on every token of o_i (DeepSeekMath §4.1.2): (N,) -> (N, T), 0 off the mask."""
    return torch.where(mask, adv[:, None], torch.zeros((), dtype=adv.dtype))  # (N, T)


def process_advantages(step_rewards: list[list[float]], step_end: list[list[int]], T: int, ddof: int = DDOF,
                       eps: float = EPS, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Process supervision for ONE group of G rows (DeepSeekMath §4.1.3)   -> (G, T)

        r~_i^{index(j)} = (r_i^{index(j)} - mean(R)) / (std(R) + eps),  R = all step rewards of all G rows
        A_{i,t} = sum_{index(j) >= t} r~_i^{index(j)}

    step_rewards[i][j] is the reward of step j of row i, step_end[i][j] the token index index(j) where that
    step ends (rewards.step_rewards + rewards.char_to_token_index give both). Tokens after a row's last
    step get 0 (design: Process advantages per group); if all the group's step rewards are equal every
    advantage is 0.
    """
    if len(step_rewards) != len(step_end) or any(len(r) != len(e) for r, e in zip(step_rewards, step_end)):
        raise ValueError("step_rewards and step_end must have the same number of rows and of steps per row")
    if any(not 0 <= e < T for ends in step_end for e in ends):
        raise ValueError(f"every step end must be a token index in [0, {T})")
    s = torch.zeros(len(step_rewards), T, dtype=dtype)  # (G, T): r~ at step ends, 0 elsewhere
    flat = torch.tensor([r for row in step_rewards for r in row], dtype=dtype)  # R, flattened
    if flat.numel() == 0 or (flat == flat[0]).all():
        return s  # no steps, or nothing to tell the steps apart
    z = (flat - flat.mean()) / (flat.std(correction=ddof) + eps)  # r~ = (r - mean(R)) / std(R)
    rows = torch.tensor([i for i, ends in enumerate(step_end) for _ in ends], dtype=torch.long)
    cols = torch.tensor([e for ends in step_end for e in ends], dtype=torch.long)
    s.index_put_((rows, cols), z, accumulate=True)  # two steps ending on one token add up
    return s.flip(-1).cumsum(-1).flip(-1)  # A_{i,t} = sum_{index(j) >= t} r~_i^{index(j)}


def dynamic_sampling_filter(rewards: torch.Tensor) -> torch.Tensor:
    """keep_b = the G rewards of group b are not all equal   (B, G) -> (B,) bool   (DAPO Eq. 11).

    For 0/1 correctness this is 0 < n_correct < G: groups all right or all wrong have zero advantage and
    so zero gradient. Works on rewards or on a bool `correct` tensor.
    """
    return (rewards != rewards[:, :1]).any(-1)  # (B,)


# ---------------------------------------------------------------------------------------------
# 4. The clipped surrogate and the token aggregation
# ---------------------------------------------------------------------------------------------
def policy_ratio(logp: torch.Tensor, old_logp: torch.Tensor) -> torch.Tensor:
    """rho_{i,t} = pi_theta(o_{i,t}|q,o_{i,<t}) / pi_old(o_{i,t}|q,o_{i,<t})   (DeepSeekMath Eqs. 1, 3)."""
    # BEGIN SOLUTION kl-and-clip: rho = pi_theta / pi_old, from log-probs
    return torch.exp(logp - old_logp)  # rho_{i,t} = pi_theta / pi_old
    # END SOLUTION kl-and-clip


def clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, clip_eps_low: float = 0.2,
                      clip_eps_high: float | None = None) -> torch.Tensor:
    """min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)   (DeepSeekMath Eqs. 1, 3; DAPO Eq. 10).

    eps_high defaults to eps_low (design: Symmetric clip by default). For A > 0 the gradient vanishes once
    rho > 1 + eps_high, for A < 0 once rho < 1 - eps_low.
    """
    # BEGIN SOLUTION kl-and-clip: min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)
    clip_eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high
    clipped = ratio.clamp(1 - clip_eps_low, 1 + clip_eps_high)  # clip(rho, 1 - eps_low, 1 + eps_high)
    return torch.minimum(ratio * adv, clipped * adv)  # min(rho A, clip(rho) A)
    # END SOLUTION kl-and-clip


def clip_fraction(ratio: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, clip_eps_low: float = 0.2,
                  clip_eps_high: float | None = None) -> torch.Tensor:
    """Fraction of masked tokens where min() picks the clipped branch and it differs (design: Clip fraction)."""
    clip_eps_high = clip_eps_low if clip_eps_high is None else clip_eps_high
    clipped = ratio.clamp(1 - clip_eps_low, 1 + clip_eps_high) * adv < ratio * adv  # (N, T) bool
    return masked_mean(clipped.to(ratio.dtype), mask)


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, mode: str = "seq_mean",
              max_len: int | None = None) -> torch.Tensor:
    """Reduce a per-token quantity (N, T) to a scalar (design: Three aggregations):

        seq_mean    1/G sum_i 1/|o_i| sum_t x_{i,t}          GRPO, DeepSeekMath Eq. 3
        token_mean  1/(sum_i |o_i|) sum_i sum_t x_{i,t}      DAPO Eq. 12
        constant    1/(N * max_len) sum_i sum_t x_{i,t}      Dr. GRPO (max_len = the generation budget)
    """
    _check_choice("mode", mode, AGGREGATIONS)
    # BEGIN SOLUTION aggregation: seq_mean, token_mean and constant, as the docstring writes them
    if mode == "seq_mean":
        per_row = masked_mean(per_token, mask, dim=-1)  # 1/|o_i| sum_t x_{i,t}, (N,)
        return masked_mean(per_row, mask.any(-1))  # mean over the rows that have tokens
    if mode == "token_mean":
        return masked_mean(per_token, mask)  # sum_{i,t} x / sum_i |o_i|
    if max_len is None:
        raise ValueError("mode='constant' needs max_len (Dr. GRPO divides by the generation budget)")
    return masked_sum(per_token, mask) / (mask.size(0) * max_len)  # sum_{i,t} x / (N * L_max)
    # END SOLUTION aggregation


def aggregate_count(mask: torch.Tensor, mode: str = "seq_mean") -> float:
    """What an aggregation averages over, counted in the rows of `mask` (N, T): the rows with a token (seq_mean),
    the tokens (token_mean) or the rows (constant). aggregate_weight is a ratio of two of these."""
    _check_choice("mode", mode, AGGREGATIONS)
    if mode == "seq_mean":
        return float(mask.any(-1).sum())
    if mode == "token_mean":
        return float(mask.sum())
    return float(mask.size(0))


def aggregate_weight(part_mask: torch.Tensor, whole_mask: torch.Tensor, mode: str = "seq_mean") -> float:
    """The share w_k of a micro-batch k of rows in the aggregate of the whole minibatch
    (design: Three aggregations):

        aggregate(x, whole) = sum_k w_k * aggregate(x_k, part_k)     (gradient accumulation, exactly)

        seq_mean    w_k = (rows of part k with a token) / (rows of the whole with a token)
        token_mean  w_k = (tokens of part k) / (tokens of the whole)
        constant    w_k = (rows of part k) / (rows of the whole)   (N * max_len: max_len is shared)

    0 where the whole has nothing to average (its aggregate is 0 then anyway). Under torchrun the whole minibatch
    spans the processes: its count is aggregate_count summed over them (train.minibatch_updates).
    """
    part, whole = aggregate_count(part_mask, mode), aggregate_count(whole_mask, mode)
    return part / whole if whole else 0.0


# ---------------------------------------------------------------------------------------------
# 5. The objectives: GRPO, and PPO beside it
# ---------------------------------------------------------------------------------------------
def _stats(ratio, adv, mask, clip_eps_low, clip_eps_high) -> dict[str, float]:
    r = ratio.detach()
    on = r[mask] if mask.any() else r.new_ones(1)
    return {"clip_frac": clip_fraction(r, adv.detach(), mask, clip_eps_low, clip_eps_high).item(),
            "ratio_mean": masked_mean(r, mask).item(), "ratio_min": on.min().item(), "ratio_max": on.max().item(),
            "tokens": int(mask.sum())}


def grpo_objective(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None, adv: torch.Tensor,
                   mask: torch.Tensor, kl_coef: float, clip_eps_low: float = 0.2, clip_eps_high: float | None = None,
                   agg: str = "seq_mean", max_len: int | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """DeepSeekMath Eq. 3:

        J_GRPO = 1/G sum_i 1/|o_i| sum_t { min(rho A, clip(rho, 1-eps_low, 1+eps_high) A) - beta k3 }

    The KL term is INSIDE the token aggregation. agg="token_mean" gives DAPO Eq. 12, "constant" Dr. GRPO.
    adv is (N,) per sequence (broadcast to its tokens) or (N, T) per token. ref_logp may be None when
    kl_coef == 0 (DAPO and Dr. GRPO drop the KL). Returns (J, stats); stats are detached floats.
    """
    if ref_logp is None and kl_coef != 0:
        raise ValueError(f"kl_coef={kl_coef} needs ref_logp (pass kl_coef=0 to train without a reference model)")
    if adv.dim() == 1:
        adv = broadcast_outcome_advantage(adv, mask)  # A_{i,t} = A_i
    ratio = policy_ratio(logp, old_logp)  # rho_{i,t}
    per_token = clipped_surrogate(ratio, adv, clip_eps_low, clip_eps_high)  # min(rho A, clip(rho) A)
    stats = _stats(ratio, adv, mask, clip_eps_low, clip_eps_high)
    stats["kl"] = float("nan")  # no reference model
    if ref_logp is not None:
        kl = kl_k3(logp, ref_logp.detach())  # D_KL[pi_theta || pi_ref], Eq. 4
        per_token = per_token - kl_coef * kl  # surrogate - beta * k3, per token
        stats["kl"] = masked_mean(kl.detach(), mask).item()
    objective = aggregate(per_token, mask, agg, max_len)  # J_GRPO
    stats["objective"] = objective.item()
    return objective, stats


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, ref_logp: torch.Tensor | None, adv: torch.Tensor,
              mask: torch.Tensor, kl_coef: float, clip_eps_low: float = 0.2, clip_eps_high: float | None = None,
              agg: str = "seq_mean", max_len: int | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """loss = -J_GRPO: the optimiser minimises, GRPO maximises. Arguments as grpo_objective."""
    objective, stats = grpo_objective(logp, old_logp, ref_logp, adv, mask, kl_coef, clip_eps_low, clip_eps_high,
                                      agg, max_len)
    return -objective, stats  # the sign flip


def ppo_objective(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
                  clip_eps_low: float = 0.2, clip_eps_high: float | None = None, agg: str = "seq_mean",
                  max_len: int | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """J_PPO = 1/|o| sum_t min(rho_t A_t, clip(rho_t, 1-eps, 1+eps) A_t)   (DeepSeekMath Eq. 1)

    The same surrogate as GRPO, but A_t comes from `gae` and there is no KL term: PPO's KL is already in
    the reward (`ppo_token_rewards`). adv is (N, T) per token, or (N,) per sequence (broadcast to its tokens,
    as grpo_objective does). Returns (J, stats).
    """
    if adv.dim() == 1:
        adv = broadcast_outcome_advantage(adv, mask)  # A_{i,t} = A_i
    ratio = policy_ratio(logp, old_logp)  # rho_t
    per_token = clipped_surrogate(ratio, adv, clip_eps_low, clip_eps_high)  # min(rho A, clip(rho) A)
    objective = aggregate(per_token, mask, agg, max_len)  # J_PPO
    stats = _stats(ratio, adv, mask, clip_eps_low, clip_eps_high)
    stats["objective"] = objective.item()
    return objective, stats


def ppo_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor,
             clip_eps_low: float = 0.2, clip_eps_high: float | None = None, agg: str = "seq_mean",
             max_len: int | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """loss = -J_PPO, the policy part (add value_loss for the critic). Arguments as ppo_objective."""
    objective, stats = ppo_objective(logp, old_logp, adv, mask, clip_eps_low, clip_eps_high, agg, max_len)
    return -objective, stats  # the sign flip


# ---------------------------------------------------------------------------------------------
# 6. The PPO baseline's other pieces: KL-shaped rewards, GAE, the critic's loss, whitening
# ---------------------------------------------------------------------------------------------
def ppo_token_rewards(score: torch.Tensor, logp_rollout: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor,
                      kl_coef: float) -> torch.Tensor:
    """r_t = r_phi(q, o_{<=t}) - beta log(pi(o_t|q,o_{<t}) / pi_ref(o_t|q,o_{<t}))   (DeepSeekMath Eq. 2)

    The KL part is a detached per-token reward from the rollout policy (design: KL in the PPO reward); the
    sequence score (N,) is added on each row's last real token only. -> (N, T), 0 off the mask.
    """
    rewards = -kl_coef * kl_k1(logp_rollout, ref_logp).detach()  # -beta log(pi / pi_ref)
    last = mask.long().cumsum(-1).argmax(-1)  # (N,) index of each row's last real token
    rewards[torch.arange(mask.size(0)), last] += score  # + r_phi on the last token
    return torch.where(mask, rewards, torch.zeros_like(rewards))


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A_t = sum_l (gamma lam)^l delta_{t+l},  delta_t = r_t + gamma V(s_{t+1}) - V(s_t)   (DAPO Eqs. 2-3)

    A reverse scan A_t = delta_t + gamma lam A_{t+1} with V(s_{T+1}) = 0 after each row's last token
    (design: Terminal completion end). Returns (advantages, returns = advantages + values), both (N, T), 0 off
    the mask.
    """
    # BEGIN SOLUTION gae: a reverse scan A_t = delta_t + gamma lam A_{t+1}; returns = A + V
    zero = torch.zeros((), dtype=values.dtype)
    r = torch.where(mask, rewards, zero)
    v = torch.where(mask, values.detach(), zero)  # V = 0 past the end, so V(s_{|o|+1}) = 0
    adv = torch.zeros_like(v)
    next_v, next_adv = torch.zeros_like(v[:, 0]), torch.zeros_like(v[:, 0])
    for t in reversed(range(v.size(1))):
        delta = r[:, t] + gamma * next_v - v[:, t]  # delta_t = r_t + gamma V(s_{t+1}) - V(s_t)
        next_adv = delta + gamma * lam * next_adv  # A_t = delta_t + gamma lam A_{t+1}
        adv[:, t], next_v = next_adv, v[:, t]
    return adv, torch.where(mask, adv + v, zero)  # returns R_t = A_t + V(s_t)
    # END SOLUTION gae


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip_eps: float | None = 0.2, agg: str = "token_mean") -> torch.Tensor:
    """L_V = 1/2 max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2), aggregated   (PPO2's clipped critic)

    DeepSeekMath gives no value loss (design: The critic); clip_eps=None gives the plain 1/2 (V - R)^2.
    """
    loss = (values - returns) ** 2  # (V - R)^2
    if clip_eps is not None:
        v_clip = old_values + (values - old_values).clamp(-clip_eps, clip_eps)  # V_clip
        loss = torch.maximum(loss, (v_clip - returns) ** 2)  # the pessimistic of the two
    return 0.5 * aggregate(loss, mask, agg)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """EV = 1 - Var(R - V) / Var(R) over the masked tokens (population variances)   (design: Explained variance)

    How much of the returns' spread the critic predicts: 1 for V = R, 0 for a constant V equal to mean(R),
    negative when V is worse than that constant. NaN when Var(R) = 0 (every return equal: nothing to explain).
    A diagnostic of PPO implementations (OpenAI baselines, cleanrl), no paper equation.
    """
    var = lambda x: masked_mean((x - masked_mean(x, mask)) ** 2, mask)  # population variance over the mask
    var_r = var(returns).item()
    return float("nan") if var_r == 0 else 1.0 - var(returns - values).item() / var_r


def whiten(adv: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(A - mean(A)) / (std(A) + eps) over all masked tokens of the batch (population std): PPO's
    batch-level advantage normalisation. 0 off the mask."""
    mean = masked_mean(adv, mask)  # mean over the batch's tokens
    std = masked_mean((adv - mean) ** 2, mask).sqrt()  # population std
    return torch.where(mask, (adv - mean) / (std + eps), torch.zeros_like(adv))


# ---------------------------------------------------------------------------------------------
# 7. The unified paradigm: gradient coefficients (DeepSeekMath §5.2.1, Eq. 5, Table 10)
#    grad J_A = E[ 1/|o| sum_t GC_A(q, o, t) grad log pi_theta(o_t | q, o_<t) ]
# ---------------------------------------------------------------------------------------------
def grpo_gradient_coefficient(adv: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor,
                              kl_coef: float) -> torch.Tensor:
    """DeepSeekMath Eqs. 20-21:

        GC_GRPO = A_{i,t} + beta (pi_ref(o_{i,t}|o_{i,<t}) / pi_theta(o_{i,t}|o_{i,<t}) - 1)

    The derivative of Eq. 19 at pi_old = pi_theta, k3 included. A coefficient: returned detached.
    """
    ratio_ref = torch.exp(ref_logp.detach() - logp.detach())  # pi_ref / pi_theta
    return adv.detach() + kl_coef * (ratio_ref - 1)  # GC = A + beta (pi_ref / pi_theta - 1)


def gradient_coefficient(method: str, mask: torch.Tensor, correct: torch.Tensor | None = None,
                         adv: torch.Tensor | None = None, logp: torch.Tensor | None = None,
                         ref_logp: torch.Tensor | None = None, kl_coef: float = 0.0) -> torch.Tensor:
    """GC_A(q, o, t) of DeepSeekMath Table 10, (N, T), 0 off the mask:

        sft         1                                   Eqs. 6-7   (data: SFT set)
        rft         I(o): 1 if o is correct else 0      Eqs. 8-10  (data: samples of pi_sft)
        online_rft  I(o)                                Eqs. 10-11 (data: samples of pi_theta)
        ppo         A_t from GAE                        Eqs. 15-18
        grpo        A_{i,t} + beta (pi_ref/pi_theta - 1) Eqs. 19-21
    RFT and online RFT share the coefficient and differ only in where the samples come from.
    correct: (N,) for rft/online_rft; adv: (N, T) for ppo/grpo; logp, ref_logp, kl_coef for grpo.
    DPO (Eq. 14) is not implemented.
    """
    _check_choice("method", method, GC_METHODS)
    if method == "sft":
        gc = torch.ones(mask.shape)  # GC_SFT = 1
    elif method in ("rft", "online_rft"):
        gc = correct.to(torch.get_default_dtype())[:, None].expand(mask.shape)  # GC = I(o)
    elif method == "ppo":
        gc = adv  # GC_PPO = A_t
    else:
        gc = grpo_gradient_coefficient(adv, logp, ref_logp, kl_coef)  # GC_GRPO
    return torch.where(mask, gc, torch.zeros((), dtype=gc.dtype))


# ---------------------------------------------------------------------------------------------
# 8. Evaluation
# ---------------------------------------------------------------------------------------------
def pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k = 1 - C(n-c, k) / C(n, k), the unbiased estimate from n samples of which c are correct
    (Chen et al. 2021, arXiv 2107.03374), computed as 1 - prod_{i=n-c+1}^{n} (1 - k/i) to avoid huge binomials.
    (5, 2, 1) -> 0.4;  (4, 1, 2) -> 0.5;  (10, 0, 1) -> 0.0;  (3, 3, 2) -> 1.0
    """
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"need 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    # BEGIN SOLUTION pass-at-k: 1 - C(n-c, k) / C(n, k), as a product, without huge binomials
    if n - c < k:
        return 1.0  # every k-subset contains a correct sample
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))  # 1 - C(n-c,k)/C(n,k)
    # END SOLUTION pass-at-k


def majority_vote(answers: list) -> object | None:
    """The most common of k sampled final answers, ties going to the one seen first; None if no sample
    gave an answer (None entries are abstentions and never win).

    cons@k ("consensus", majority voting; DeepSeek-R1 reports R1-Zero's AIME cons@64 beside pass@1;
    Wang et al. 2022, "Self-Consistency", arXiv 2203.11171) is the fraction of problems whose majority
    answer is right.
    Beside greedy pass@1 it measures the headroom of mode-sharpening: RL that only concentrates
    probability on answers the model already prefers can lift greedy pass@1 to about cons@k, while
    pass@k - cons@k is what RL must teach. Pass parsed values (rewards.parse_number) so that "12" and
    "12.0" are one answer.   [3, 5, 3, None] -> 3;  [5, 3] -> 5;  [None, None] -> None
    """
    # BEGIN SOLUTION pass-at-k: the most common non-None answer, ties to the first seen; None if there is none
    counts: dict = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1  # dicts keep insertion order, so ties go to the first seen
    return max(counts, key=counts.get) if counts else None
    # END SOLUTION pass-at-k


# ---------------------------------------------------------------------------------------------
# 9. A learned reward: a scalar head scored on whole completions, trained on preference pairs
# ---------------------------------------------------------------------------------------------
def completion_scores(model, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor, completion_ids: torch.Tensor,
                      completion_mask: torch.Tensor) -> torch.Tensor:
    """r_phi(q, o): a scalar-head model's output at the last real token of each completion (its EOS)   -> (N,)

    One forward pass over [left-padded prompt (N, P) | completion (N, T)], as `at_completion_states`, read at
    position P + |o| - 1, the state that holds the whole response (InstructGPT's reward model reads the last
    token too). A row with no completion token reads the prompt's last token. >= fp32.
    """
    P = prompt_ids.size(1)
    ids = torch.cat([prompt_ids, completion_ids], dim=1)
    valid = torch.cat([prompt_valid, completion_mask], dim=1)
    out = model(ids, valid=valid)  # (N, P + T)
    last = P + completion_mask.sum(-1) - 1  # (N,) the EOS, or the prompt's last token
    return out.gather(1, last[:, None]).squeeze(1).to(torch.promote_types(out.dtype, torch.float32))


def preference_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """L = -mean log sigmoid(r(q, o_chosen) - r(q, o_rejected))   (Bradley-Terry; InstructGPT, arXiv 2203.02155, Eq. 1)

    The probability that the chosen response is preferred is sigmoid of the score difference; only the
    difference is learnt, so a constant added to every score changes nothing. (0, 0) -> log 2;
    (2, 0) -> log(1 + e^-2) = 0.1269. logsigmoid keeps a large negative difference finite.
    """
    return -F.logsigmoid(chosen - rejected).mean()


def verifier_loss(values: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """L = mean over solutions i and their tokens t of BCE(sigmoid(v_{i,t}), y_i)
         = -mean_{i,t} [y_i log sigmoid(v_{i,t}) + (1 - y_i) log(1 - sigmoid(v_{i,t}))]

    The outcome verifier of Cobbe et al. 2021 (arXiv 2110.14168, §4): v_{i,t} is a scalar-head model's output
    after token t of solution i (N, T), y_i (N,) is 1 if the rule checker accepts the solution's answer, else 0;
    the mean runs over the tokens of `mask` (N, T) ("token-level" verification: every prefix predicts the final
    outcome, which the paper found to train better than the last token alone). The score used to pick a solution
    is v at its last token (completion_scores). v = 0 -> log 2 whatever y; (v, y) = (2, 1) -> log(1 + e^-2) =
    0.1269; (2, 0) -> log(1 + e^2) = 2.1269.
    """
    y = labels.to(values.dtype)[:, None].expand_as(values)
    bce = F.binary_cross_entropy_with_logits(values, y, reduction="none")  # -[y log s(v) + (1-y) log(1-s(v))]
    return bce[mask].mean()


def pair_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """The fraction of pairs the reward model ranks the right way round, r(chosen) > r(rejected) (ties: wrong)."""
    return (chosen > rejected).float().mean().item()
