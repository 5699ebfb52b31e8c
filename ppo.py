"""The PPO baseline's part of an RL step (`--rl ppo`), where GRPO has group-relative advantages.

PPO (DeepSeekMath Eqs. 1-2, GAE as in DAPO Eqs. 2-3) needs a critic V_psi: a Transformer of the policy's size
with a scalar head (model.Critic), trained beside the policy. train.rl_step calls, in this order:

    advantages   V_old(s_t) of the rollout -> per-token rewards with the KL penalty in them (Eq. 2) -> GAE ->
                 whitened advantages A_t and returns R_t = A_t + V_old(s_t); and the critic's value loss
    critic_step  after each policy step on a minibatch: one AdamW step of the critic on vf_coef * L_V

The policy's own update is GRPO's loop (train.minibatch_updates) with PPO's clipped surrogate (grpo.ppo_loss)
in place of GRPO's loss. The choices the papers leave open are in docs/design.md (PPO baseline).
"""

from __future__ import annotations

import time

import torch

import grpo
import rollouts
from optim import autocast, check_finite, clip_and_step


def advantages(critic, batch: rollouts.Batch, scores: torch.Tensor, cfg) -> tuple[torch.Tensor, object, dict]:
    """(A_t (N, T), the critic's loss function, the step's PPO statistics) for a rollout whose log pi_old and
    log pi_ref are in `batch`; scores (B, G) are the rule-based rewards r_phi(q, o) of the completions.

        r_t = score on the last token - beta (log pi_old(o_t) - log pi_ref(o_t))    Eq. 2, grpo.ppo_token_rewards
        A_t = sum_l (gamma lam)^l delta_{t+l},  R_t = A_t + V_old(s_t)               grpo.gae
        A_t <- (A_t - mean A) / std A over the batch's tokens (--whiten_adv)        grpo.whiten

    V_old are the critic's values at rollout time, like pi_old. The loss function maps (values, rows) to L_V,
    PPO2's value loss clipped around V_old (grpo.value_loss). The statistics: the k3 KL of pi_old against pi_ref
    (the estimator GRPO logs), the mean k1 the reward charges, the explained variance of V_old, the mean value,
    the returns' mean and std, and the seconds of the critic's forward (critic_s) and of the advantages (adv_s).
    """
    device, t = batch.ids.device.type, time.perf_counter()
    with torch.no_grad(), autocast(device):
        old_values = batch.all_rows(lambda rows: batch.values(critic, rows), cfg.forward_chunk)  # V_old(s_t)
    check_finite("critic's values", old_values)
    values_s, t = time.perf_counter() - t, time.perf_counter()
    score = scores.flatten().to(device)  # (N,) the reward of each completion
    ref_logp = batch.old_logp if batch.ref_logp is None else batch.ref_logp  # kl_coef 0: no reference, k1 = 0
    token_rewards = grpo.ppo_token_rewards(score, batch.old_logp, ref_logp, batch.mask, cfg.kl_coef)  # r_t
    adv, returns = grpo.gae(token_rewards, old_values, batch.mask, cfg.gamma, cfg.lam)  # A_t, R_t = A_t + V_old
    if cfg.whiten_adv:
        adv = grpo.whiten(adv, batch.loss_mask)  # normalised over the batch, after GAE (design: PPO's advantages)
    check_finite("advantages", adv)
    adv_s = time.perf_counter() - t
    value_loss = lambda values, rows: grpo.value_loss(values, old_values[rows], returns[rows], batch.loss_mask[rows],
                                                      cfg.value_clip or None)
    mask = batch.loss_mask
    kl = float("nan") if batch.ref_logp is None else grpo.masked_mean(
        grpo.kl_k3(batch.old_logp, batch.ref_logp), mask).item()
    returns_mean = grpo.masked_mean(returns, mask)
    return adv, value_loss, {
        "kl": kl, "kl_k1": grpo.masked_mean(grpo.kl_k1(batch.old_logp, ref_logp), mask).item(),
        "explained_var": grpo.explained_variance(old_values, returns, mask),
        "value_mean": grpo.masked_mean(old_values, mask).item(), "return_mean": returns_mean.item(),
        "return_std": grpo.masked_mean((returns - returns_mean) ** 2, mask).sqrt().item(),
        "adv_s": round(adv_s, 3), "critic_s": values_s}


def critic_step(models, batch: rollouts.Batch, rows: torch.Tensor, value_loss, cfg) -> tuple[float, float]:
    """One AdamW step of the critic on vf_coef * L_V over the minibatch `rows` (a token mean), its gradient
    accumulated over micro-batches of at most micro_batch rows; (L_V, the gradient norm before the clip).
    The critic has its own AdamW, so vf_coef acts only through the gradient clip (design: The critic)."""
    models.critic_optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for part in rollouts.micro_batches(rows, cfg.micro_batch):
        share = grpo.aggregate_weight(batch.loss_mask[part], batch.loss_mask[rows], "token_mean")
        with autocast(batch.ids.device.type):
            v_loss = value_loss(batch.values(models.critic, part), part)  # L_V, with gradient
        scaled = cfg.vf_coef * v_loss
        check_finite("loss", scaled)
        (share * scaled).backward()
        total += share * v_loss.item()
    return total, clip_and_step(models.critic, models.critic_optimizer, cfg.grad_clip)
