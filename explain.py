"""One GRPO update on one group, every number printed, in the order of DeepSeekMath's equations.

    python explain.py                                  # a seeded tiny model, 4 built-in completions, seconds
    python explain.py --rl ppo                         # the same group through PPO: critic, GAE, whitening
    python explain.py --completions " <think> </think> <answer> 40 </answer>" " 40"   # your own completions
    python explain.py runs/default --question "What is 12*3+4?"   # G completions sampled from a checkpoint

For one question and G completions it prints, in the order of DeepSeekMath's equations: the reward parts and
r_i of each completion (DeepSeek-R1 Eq. 4), the group's mean and std and each A_i (§4.1.2), then one row per token
of the last of mu updates: log pi_theta, pi_old and pi_ref, rho, rho*A, clip(rho)*A, their min, k3 (Eq. 4), the
token's objective (Eq. 3), Eq. 21's gradient coefficient beside autograd's d loss/d logp and the chain rule's
value of it; then each completion's 1/|o_i| average, J and the loss -J. The updates before the last (plain SGD
at --lr) move pi_theta away from pi_old and pi_ref, so that rho and k3 are not 1 and 0.

Without a checkpoint the policy is a seeded untrained 2-layer model (its tokenizer trained on 300 generated
problems), whose samples are noise with equal rewards: hence 4 built-in completions of the default question, or
--completions, scored teacher-forced. Every formula is a call to grpo.py or rewards.py, in float64; the same
command gives the same print. Walk-through: docs/tutorial.md. Tests: python -m pytest -q tests/test_explain.py
"""

from __future__ import annotations

import argparse
import copy
import re
from types import SimpleNamespace

import torch
from torch.nn.utils.rnn import pad_sequence

import grpo
import rewards
import rollouts
import tasks
from model import Critic, ModelConfig, Transformer, generate, left_pad
from sample import checkpoint_dir, decode_completions, load_model

DEFAULT_QUESTION = "What is 12*3+4?"
BUILT_IN = (" <think> 12*3 = 36, 36+4 = 40 </think> <answer> 40 </answer>",  # right, with work
            " <think> </think> <answer> 40 </answer>",  # right, without work
            " <think> 12*3 = 36 </think> <answer> 36 </answer>",  # wrong
            " 12*3+4 = 40")  # right, but no tags: nothing to extract
VALUE_CLIP = 0.2  # train.py's --value_clip
EPS_STD = grpo.EPS
LR = 0.1  # plain SGD: enough to move some ratios out of [0.8, 1.2] on the default print


# -------------------- 1. The group: a policy, a question, G completions as token ids --------------
def demo_policy(seed: int):
    """(a seeded untrained 2-layer Transformer in float64, a BPE tokenizer trained on 300 generated problems)."""
    train, _ = tasks.make_splits("arithmetic", 300, 10, seed=0)
    tok = tasks.train_tokenizer(tasks.corpus_texts(train), vocab_size=512)
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=2, n_head=2, n_embd=32, max_seq_len=128)
    return Transformer(cfg).double().eval(), tok


def gold_answer(question: str) -> str | None:
    """The answer of "What is EXPR?", computed exactly by rewards.safe_eval; None for any other question."""
    m = re.fullmatch(r"\s*What is (.+)\?\s*", question)
    value = rewards.safe_eval(m.group(1)) if m else None
    return None if value is None else str(value)


def teacher_forced(tok, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Given completion texts as (ids, mask), each followed by EOS, right-padded: what sampling would return."""
    rows = [torch.tensor(tasks.encode(tok, t) + [tasks.eos_id(tok)]) for t in texts]
    return pad_sequence(rows, True, tasks.PAD_ID), pad_sequence([r >= 0 for r in rows], True, False)


def make_group(policy, tok, question: str, template: str, texts: list[str] | None, G: int, max_new: int,
               seed: int) -> SimpleNamespace:
    """G completions of the question: the given texts (teacher-forced), else sampled at temperature 1."""
    prompt = tasks.encode(tok, tasks.format_prompt(question, template))
    prompt_ids, prompt_valid = left_pad([prompt] * (len(texts) if texts else G), tasks.PAD_ID, "cpu")
    if texts:
        ids, mask = teacher_forced(tok, texts)
    else:
        roll = generate(policy, [prompt] * G, max_new, tasks.eos_id(tok), tasks.PAD_ID, temperature=1.0,
                        generator=torch.Generator().manual_seed(seed))
        ids, mask, texts = roll.ids, roll.mask, decode_completions(tok, roll)
    tokens = [[tasks.decode(tok, [t]) for t in row[keep].tolist()] for row, keep in zip(ids, mask)]
    return SimpleNamespace(texts=list(texts), tokens=tokens, prompt_ids=prompt_ids, prompt_valid=prompt_valid, ids=ids,
                           mask=mask)


# -------------------- 2. Compute: every quantity, from grpo.py and rewards.py only ----------------
def score(group, gold: str, weights: rewards.RewardWeights, max_new: int, cache_len: int) -> dict:
    """Each completion's reward parts and r_i; the group's mean, population std and advantages A_i."""
    lengths = group.mask.sum(-1).tolist()
    kw = lambda n: dict(length=n, max_len=max_new, cache_len=min(cache_len, max_new)) if weights.overlong else {}
    parts = [rewards.reward_components(t, gold, weights, **kw(n)) for t, n in zip(group.texts, lengths)]
    r = torch.tensor([rewards.weighted_sum(p, weights) for p in parts], dtype=torch.float64)
    adv = grpo.group_advantages(r[None], ddof=0, eps=EPS_STD)[0]  # (G,)
    return dict(parts=parts, weights=weights, r=r, mean=r.mean().item(), std=r.std(correction=0).item(), adv=adv)


def logprobs(model, group) -> torch.Tensor:
    return grpo.completion_logprobs(model, group.prompt_ids, group.prompt_valid, group.ids, group.mask)


def sgd_step(model, loss: torch.Tensor, lr: float) -> None:
    """One plain SGD step, theta <- theta - lr * d loss/d theta: it only moves pi_theta for the next update."""
    optimizer = torch.optim.SGD(model.parameters(), lr)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def clip_terms(logp, old, A, mask, eps: float) -> dict:
    """rho (grpo.policy_ratio), the min's two branches rho*A and clip(rho)*A, the min (grpo.clipped_surrogate), and
    where the clipped branch is the smaller: there the surrogate has no gradient (grpo.clip_fraction's test)."""
    ratio = grpo.policy_ratio(logp, old)
    unclipped, clipped = ratio * A, ratio.clamp(1 - eps, 1 + eps) * A
    return dict(ratio=ratio, unclipped=unclipped, clipped=clipped, is_clipped=(clipped < unclipped) & mask,
                surrogate=grpo.clipped_surrogate(ratio, A, eps, eps))


def leaf_grad(loss_fn, logp) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(log pi_theta as a leaf, autograd's d loss/d logp_{i,t}, the loss) for loss_fn(logp) -> (loss, stats)."""
    leaf = logp.detach().requires_grad_(True)
    loss, _ = loss_fn(leaf)
    return leaf.detach(), torch.autograd.grad(loss, leaf)[0], loss.item()


def grpo_tokens(logp, old, ref, adv, mask, beta: float, eps: float) -> dict:
    """One update's per-token quantities (N, T), its per-completion averages, J, the loss, and the gradients."""
    logp, grad, loss = leaf_grad(lambda x: grpo.grpo_loss(x, old, ref, adv, mask, beta, eps, eps), logp)
    A = grpo.broadcast_outcome_advantage(adv, mask)  # A_{i,t} = A_i
    terms, k3 = clip_terms(logp, old, A, mask, eps), grpo.kl_k3(logp, ref)
    per_token = terms["surrogate"] - beta * k3  # the summand of Eq. 3
    gc = grpo.grpo_gradient_coefficient(A, logp, ref, beta)  # Eq. 21: A + beta (pi_ref/pi_theta - 1)
    at_rho = grpo.grpo_gradient_coefficient(torch.where(terms["is_clipped"], 0.0, terms["unclipped"]), logp, ref, beta)
    factor = 1.0 / (mask.any(-1).sum() * mask.sum(-1, keepdim=True).clamp(min=1)).to(logp.dtype)  # 1/G * 1/|o_i|
    J, _ = grpo.grpo_objective(logp, old, ref, adv, mask, beta, eps, eps)
    return dict(logp=logp, k3=k3, per_token=per_token, gc=gc, grad=grad, factor=factor, A=A, J=J.item(), loss=loss,
                hand=torch.where(mask, -factor * at_rho, 0.0), row_mean=grpo.masked_mean(per_token, mask, dim=-1),
                **terms)


def gap(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """max |a - b| over the completion tokens."""
    return (a - b)[mask].abs().max().item()


def start(policy, group, ref_policy) -> tuple:
    """(pi_theta: a trainable copy of the policy, log pi_old: the policy that sampled, log pi_ref: it too, where RL
    starts, unless a ref_policy is given), the log-probs without gradient."""
    policy = copy.deepcopy(policy).train()  # the caller's model is left as it was
    with torch.no_grad():
        old = logprobs(policy, group)
        return policy, old, old if ref_policy is None else logprobs(ref_policy, group)


def compute_grpo(policy, group, scored: dict, beta: float, eps: float, mu: int, lr: float, ref_policy=None) -> dict:
    """mu updates of one rollout, each but the last summed up in a few numbers; every number of the last."""
    policy, old, ref = start(policy, group, ref_policy)
    adv, mask, earlier = scored["adv"], group.mask, []
    for k in range(mu):
        logp = logprobs(policy, group)  # log pi_theta, with gradient through the model
        step = grpo_tokens(logp, old, ref, adv, mask, beta, eps)
        if k == mu - 1:
            return dict(kind="grpo", G=mask.size(0), beta=beta, eps=eps, mu=mu, lr=lr, old=old, ref=ref, mask=mask,
                        ref_is_old=ref_policy is None, earlier=earlier, **step)
        ratio = step["ratio"][mask]
        earlier.append(dict(J=step["J"], loss=step["loss"], ratio_min=ratio.min().item(), ratio_max=ratio.max().item(),
                            k3_max=step["k3"][mask].max().item(), clipped=int(step["is_clipped"].sum()),
                            eq21_gap=gap(step["grad"], -step["factor"] * step["gc"], mask)))
        sgd_step(policy, grpo.grpo_loss(logp, old, ref, adv, mask, beta, eps, eps)[0], lr)


def compute_ppo(policy, group, scored: dict, beta: float, eps: float, mu: int, lr: float, seed: int,
                ref_policy=None) -> dict:
    """The same group through PPO (DeepSeekMath Eqs. 1-2): a critic's values, per-token rewards with the k1
    penalty, GAE (gamma = lambda = 1), whitening; mu updates of the policy, every number of the last."""
    policy, old, ref = start(policy, group, ref_policy)
    critic, mask, earlier = Critic.from_policy(policy), group.mask, []  # not stepped: L_V is printed at V = V_old
    with torch.no_grad():  # train.py starts the head at 0; seeded here so that the values are not all 0
        critic.value_head.weight.normal_(0.0, 0.5 / policy.cfg.n_embd ** 0.5,
                                         generator=torch.Generator().manual_seed(seed))
        old_values = grpo.completion_values(critic, group.prompt_ids, group.prompt_valid, group.ids, mask)  # V_old
    token_rewards = grpo.ppo_token_rewards(scored["r"], old, ref, mask, beta)  # score on the last token - beta k1
    adv, returns = grpo.gae(token_rewards, old_values, mask, gamma=1.0, lam=1.0)  # A_t, R_t = A_t + V_old(s_t)
    adv_w, adv_mean = grpo.whiten(adv, mask), grpo.masked_mean(adv, mask)  # whitened over the group's tokens
    out = dict(kind="ppo", G=mask.size(0), beta=beta, eps=eps, mu=mu, lr=lr, seed=seed, mask=mask, old=old, ref=ref,
               ref_is_old=ref_policy is None, n_embd=policy.cfg.n_embd, k1=grpo.kl_k1(old, ref), A=adv_w,
               token_rewards=token_rewards, old_values=old_values, gae=adv, returns=returns, earlier=earlier,
               adv_mean=adv_mean.item(), adv_std=grpo.masked_mean((adv - adv_mean) ** 2, mask).sqrt().item(),
               value_loss=grpo.value_loss(old_values, old_values, returns, mask, VALUE_CLIP).item())
    for k in range(mu):
        logp = logprobs(policy, group)
        leaf, grad, loss = leaf_grad(lambda x: grpo.ppo_loss(x, old, adv_w, mask, eps, eps), logp)
        if k == mu - 1:
            terms = clip_terms(leaf, old, adv_w, mask, eps)
            J, _ = grpo.ppo_objective(leaf, old, adv_w, mask, eps, eps)
            return {**out, **terms, "logp": leaf, "grad": grad, "J": J.item(), "loss": loss,
                    "row_mean": grpo.masked_mean(terms["surrogate"], mask, dim=-1)}
        earlier.append(dict(J=-loss, loss=loss))
        sgd_step(policy, grpo.ppo_loss(logp, old, adv_w, mask, eps, eps)[0], lr)


def explain(policy, tok, question: str, gold: str, texts: list[str] | None = None, G: int = 4, seed: int = 0,
            beta: float = 0.04, clip_eps: float = 0.2, mu: int = 2, lr: float = LR, rl: str = "grpo",
            template: str = "compact", max_new: int = 16, weights: rewards.RewardWeights = rewards.RewardWeights(),
            cache_len: int = 16, source: str = "", ref_policy=None) -> dict:
    """Every number of the print, as a dict of floats and tensors (N, T); format_explain writes it out.
    pi_ref is the policy itself (RL's first step) unless a ref_policy is given."""
    group = make_group(policy, tok, question, template, texts, G, max_new, seed)
    scored = score(group, gold, weights, max_new, cache_len)
    core = (compute_grpo(policy, group, scored, beta, clip_eps, mu, lr, ref_policy) if rl == "grpo" else
            compute_ppo(policy, group, scored, beta, clip_eps, mu, lr, seed, ref_policy))
    return {**scored, **core, "group": group, "question": question, "gold": gold, "source": source}


# -------------------- 3. Format: the numbers above as text (4 decimals; gradients 6) --------------
def num(x: float, width: int = 0, places: int = 4) -> str:
    """x with fixed decimals, right-aligned in width; never "-0.0000"."""
    text = f"{x:.{places}f}"
    return f"{text[1:] if text.startswith('-') and float(text) == 0 else text:>{width}}"


def signed_sum(x: torch.Tensor) -> str:
    """[0.5, -0.25] -> '0.5000 - 0.2500'."""
    terms = [num(v) for v in x.tolist()]
    return terms[0] + "".join(f" - {t[1:]}" if t.startswith("-") else f" + {t}" for t in terms[1:])


def token_cell(text: str) -> str:
    shown = repr(text)
    return f"{shown if len(shown) <= 10 else shown[:9] + '~':<10}"


def format_head(c: dict) -> list[str]:
    name, mu, same = c["kind"].upper(), c["mu"], c["ref_is_old"]
    lines = [f"{name}: one update on one group, every number (DeepSeekMath, arXiv 2402.03300); float64, 4 decimals"
             + (", gradients 6" if name == "GRPO" else ""),
             f"policy: {c['source']}",
             f"question {c['question']!r}, gold answer {c['gold']}; G = {c['G']}, beta = {c['beta']:g}, "
             f"eps = {c['eps']:g}, lr = {c['lr']:g}",
             f"mu = {mu} updates of this group, " + (f"updates 1-{mu - 1} a line each, " if mu > 2 else
                                                    "update 1 on one line, " if mu == 2 else "")
             + f"update {mu} in full; pi_old = " + ("pi_ref = " if same else "")
             + "the policy that sampled" + ("" if same else ", pi_ref = the reference given")]
    if name == "GRPO":
        return lines + ["seq_mean: J = 1/G sum_i 1/|o_i| sum_t obj_{i,t}, so d(-J)/d logp_{i,t} = -(1/G)(1/|o_i|) "
                        "d obj_{i,t}/d logp_{i,t}"]
    return lines + [
        "PPO differs from GRPO: each token gets its own advantage, from a critic's values and GAE (GRPO: one per",
        "  completion, from the group's rewards); the KL to pi_ref is a k1 penalty in each token's reward (GRPO: a k3",
        f"  term in the loss). The critic is model.Critic.from_policy with its value head seeded N(0, (0.5/sqrt("
        f"{c['n_embd']}))^2)",
        f"  (seed {c['seed']}), so that V is not 0 everywhere (train.py starts the head at 0)"]


def format_rewards(group, s: dict) -> list[str]:
    w = s["weights"]
    lines = ["", f"1. Rewards r_i = {w.accuracy:g}*accuracy + {w.format:g}*format + {w.overlong:g}*overlong + "
             f"{w.language:g}*language (DeepSeek-R1 Eq. 4; rewards.py)",
             "   i  accuracy    format  overlong  language       r_i  |o_i|  completion"]
    for i, (p, text) in enumerate(zip(s["parts"], group.texts)):
        lines.append(f"{i + 1:>4}" + "".join(num(p[k], 10) for k in ("accuracy", "format", "overlong", "language"))
                     + num(s["r"][i].item(), 10) + f"{len(group.tokens[i]):>7}  {text!r}")
    return lines


def format_advantages(s: dict) -> list[str]:
    lines = [f"2. Advantages A_i = (r_i - mean) / (std + {EPS_STD:g}) (DeepSeekMath §4.1.2; grpo.group_advantages)",
             f"   mean = {num(s['mean'])}, std = {num(s['std'])} (population std, ddof 0)"]
    if s["std"] == 0:
        return lines + ["   every r_i is equal: every A_i is exactly 0 and only the KL term acts (try --completions)"]
    return lines + [f"   A_{i + 1} = ({num(r)} - {num(s['mean'])}) / {num(s['std'])} = {num(a)}"
                    for i, (r, a) in enumerate(zip(s["r"].tolist(), s["adv"].tolist()))]


def format_earlier(c: dict) -> list[str]:
    """The updates before the last, a line or three each."""
    lines = []
    for k, e in enumerate(c["earlier"]):
        lines.append(f"3. Update {k + 1} of {c['mu']}: " + ("" if c["kind"] == "ppo" else
                     f"rho in [{num(e['ratio_min'])}, {num(e['ratio_max'])}], max k3 {num(e['k3_max'])}, "
                     f"{e['clipped']} tokens clipped; ") + f"J = {num(e['J'])}, loss = -J = {num(e['loss'])}")
        if c["kind"] == "grpo":
            lines.append(f"   autograd's d loss/d logp against -(1/G)(1/|o_i|) GC (Eq. 21): max |difference| "
                         f"{e['eq21_gap']:.1e}" + ("  (rho = 1: exact)" if e["ratio_min"] == e["ratio_max"] == 1 else
                                                  ""))
        lines.append(f"   then one SGD step: theta <- theta - lr * d loss/d theta, lr = {c['lr']:g}")
    return lines


def table(c: dict, columns: list[tuple[str, str, int]], note) -> list[str]:
    """One block per completion: a header, a row per token (columns: (title, key, places)), the average."""
    width = lambda places: 10 if places == 6 else 8
    head = "".join(f"{h:>{width(p)}}" + (" " if k == "surrogate" else "") for h, k, p in columns)
    lines = [f"4. Update {c['mu']} of {c['mu']}, token by token; pi_theta = "
             + (f"the policy after update {c['mu'] - 1}" if c["mu"] > 1 else "pi_old (no update yet)")] + note(None)
    for i, tokens in enumerate(c["group"].tokens):
        lines += ["", f"completion {i + 1}: r = {num(c['r'][i])}, |o_{i + 1}| = {len(tokens)} tokens" + note(i)[0],
                  f"   t  token     {head}".rstrip()]
        for t, token in enumerate(tokens):
            star = "*" if c["is_clipped"][i, t] else " "
            cells = "".join(num(c[k][i, t].item(), width(p), p) + (star if k == "surrogate" else "")
                            for _, k, p in columns)
            lines.append(f"{t + 1:>4}  {token_cell(token)}{cells}".rstrip())
        lines.append(f"   1/|o_{i + 1}| sum_t {'obj' if c['kind'] == 'grpo' else 'min'} = {num(c['row_mean'][i])}")
    return lines


GRPO_COLUMNS = [("logp", "logp", 4), ("old", "old", 4), ("ref", "ref", 4), ("rho", "ratio", 4),
                ("rho*A", "unclipped", 4), ("clip*A", "clipped", 4), ("min", "surrogate", 4), ("k3", "k3", 4),
                ("obj", "per_token", 4), ("GC", "gc", 4), ("dL/dlogp", "grad", 6), ("hand", "hand", 6)]
PPO_COLUMNS = [("logp", "logp", 4), ("old", "old", 4), ("k1", "k1", 4), ("r_t", "token_rewards", 4),
               ("V_old", "old_values", 4), ("GAE A", "gae", 4), ("R", "returns", 4), ("A_w", "A", 4),
               ("rho", "ratio", 4), ("rhoA_w", "unclipped", 4), ("clipA_w", "clipped", 4), ("min", "surrogate", 4)]


def rule(name: str, formula: str, where: str = "") -> str:
    """One line of a print's legend: 'name = formula', the paper's equation or the function on the right."""
    return f"   {name:<8} = {formula:<64} {where}".rstrip()


def grpo_note(c: dict, i: int | None) -> list[str]:
    eps, beta = c["eps"], c["beta"]
    if i is not None:
        return [f", A = {num(c['A'][i, 0])}, 1/(G |o_{i + 1}|) = {num(c['factor'][i, 0], 0, 6)}"]
    return [rule("rho", "exp(logp - old)", "grpo.policy_ratio"),
            rule("min", f"min(rho*A, clip(rho, {1 - eps:g}, {1 + eps:g})*A); * where clip*A < rho*A",
                 "grpo.clipped_surrogate"),
            rule("k3", "exp(ref - logp) - (ref - logp) - 1", "Eq. 4, grpo.kl_k3"),
            rule("obj", f"min - {beta:g}*k3", "Eq. 3"),
            rule("GC", f"A + {beta:g}*(exp(ref - logp) - 1)", "Eq. 21, grpo.grpo_gradient_coefficient"),
            rule("dL/dlogp", "d loss/d logp_{i,t} by autograd, loss = -J"),
            rule("hand", f"-(1/G)(1/|o_i|) (rho*A + {beta:g}*(exp(ref - logp) - 1))", "the chain rule"),
            "              as d min/d logp = rho*A; 0 on * tokens, which keep the beta part alone. At rho = 1: "
            "-(1/G)(1/|o_i|) GC"]


def format_grpo(c: dict) -> list[str]:
    lines = format_advantages(c) + format_earlier(c) + table(c, GRPO_COLUMNS, lambda i: grpo_note(c, i))
    return lines + ["", f"J = 1/G sum_i (1/|o_i| sum_t obj) = 1/{c['G']} ({signed_sum(c['row_mean'])}) = "
                        f"{num(c['J'])}   grpo.grpo_objective",
                    f"loss = -J = {num(c['loss'])}   grpo.grpo_loss",
                    f"dL/dlogp against hand: max |difference| {gap(c['grad'], c['hand'], c['mask']):.1e} "
                    f"over {int(c['mask'].sum())} tokens, {int(c['is_clipped'].sum())} of them clipped"]


def format_ppo(c: dict) -> list[str]:
    eps, beta = c["eps"], c["beta"]
    lines = ["2. Per-token rewards, GAE and whitening (DeepSeekMath Eq. 2; GAE with gamma = lambda = 1)",
             rule("k1", "old - ref", "grpo.kl_k1"),
             rule("r_t", f"-{beta:g}*k1, plus r_i on the last token", "Eq. 2, grpo.ppo_token_rewards")]
    if c["ref_is_old"]:
        lines.append("              pi_old = pi_ref here (the sampler is where RL starts): k1 = 0 until pi_old moves away")
    lines += [rule("GAE A", "sum of r_t from t on - V_old(s_t)", "grpo.gae"),
              rule("R", "A + V_old, the critic's target"),
              rule("A_w", f"(A - {num(c['adv_mean'])}) / ({num(c['adv_std'])} + 1e-8), over the group's tokens",
                   "grpo.whiten"),
              rule("L_V", f"1/2 mean_t max((V-R)^2, (V_old + clip(V-V_old, +-{VALUE_CLIP:g}) - R)^2)",
                   "grpo.value_loss"),
              f"              = {num(c['value_loss'])} at V = V_old, the critic's loss before its first step "
              "(train.py then steps it)"]
    note = lambda i: ([f", r_{i + 1} = {num(c['r'][i])} on its last token"] if i is not None else
                      [rule("rho", "exp(logp - old)", "grpo.policy_ratio"),
                       rule("min", f"min(rho*A_w, clip(rho, {1 - eps:g}, {1 + eps:g})*A_w); * where clipped",
                            "Eq. 1, grpo.ppo_objective")])
    lines += format_earlier(c) + table(c, PPO_COLUMNS, note)
    return lines + ["", f"J = 1/G sum_i (1/|o_i| sum_t min) = 1/{c['G']} ({signed_sum(c['row_mean'])}) = "
                        f"{num(c['J'])}   grpo.ppo_objective",
                    f"policy loss = -J = {num(c['loss'])}   grpo.ppo_loss"]


def format_explain(c: dict) -> str:
    """The whole print of explain()'s numbers."""
    body = format_grpo(c) if c["kind"] == "grpo" else format_ppo(c)
    return "\n".join(format_head(c) + format_rewards(c["group"], c) + body)


# -------------------- 4. The command line ---------------------------------------------------------
def parse_args(argv=None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", nargs="?", help="checkpoint or run directory (default: a seeded tiny model)")
    p.add_argument("--question", default=DEFAULT_QUESTION, help="the question q")
    p.add_argument("--answer", help="its gold answer (default: the value of 'What is EXPR?')")
    p.add_argument("--completions", nargs="+", metavar="TEXT", help="score these, teacher-forced, instead of sampling")
    p.add_argument("--group", type=int, help="G, completions to sample (default 4)")
    p.add_argument("--seed", type=int, default=0, help="the tiny model's weights, the sampling, the critic's head")
    p.add_argument("--beta", type=float, default=0.04, help="the KL coefficient (DeepSeekMath: 0.04)")
    p.add_argument("--clip_eps", type=float, default=0.2, help="the clip range eps")
    p.add_argument("--mu", type=int, default=2, help="updates of the group; the last is printed in full")
    p.add_argument("--lr", type=float, default=LR, help="plain SGD's learning rate of the updates before the last")
    p.add_argument("--rl", choices=("grpo", "ppo"), default="grpo", help="the update to explain")
    p.add_argument("--max_new_tokens", type=int, help="sampling budget (default: the checkpoint's, or 16)")
    args = p.parse_args(argv)
    for name, ok, rule in (("group", args.group is None or args.group >= 2, ">= 2"), ("beta", args.beta >= 0, ">= 0"),
                           ("clip_eps", 0 < args.clip_eps < 1, "in (0, 1)"), ("mu", args.mu >= 1, ">= 1"),
                           ("lr", args.lr > 0, "> 0"),
                           ("max_new_tokens", args.max_new_tokens is None or args.max_new_tokens >= 1, ">= 1")):
        if not ok:
            p.error(f"--{name} must be {rule}, got {getattr(args, name)}")
    if args.completions and args.group not in (None, len(args.completions)):
        p.error(f"--group {args.group} but {len(args.completions)} --completions: give G completions, or no --group")
    if args.completions is not None and len(args.completions) < 2:
        p.error("--completions needs at least 2 texts: a group of one has no advantage")
    if not args.question.strip():
        p.error("--question must not be empty")
    return p, args


def setup(args, p: argparse.ArgumentParser) -> dict:
    """explain()'s arguments from the command line: the policy and its settings, the question and its group."""
    kw = dict(seed=args.seed, beta=args.beta, clip_eps=args.clip_eps, mu=args.mu, lr=args.lr, rl=args.rl,
              question=args.question)
    if args.checkpoint:
        path = checkpoint_dir(args.checkpoint)
        policy, meta, tok = load_model(path, "cpu", p)
        cfg = meta.get("train_config") or {}
        kw.update(template=cfg.get("template", "compact"),
                  max_new=args.max_new_tokens or cfg.get("max_new_tokens", 128),
                  cache_len=cfg.get("overlong_cache", 16),
                  weights=rollouts.reward_weights(SimpleNamespace(**cfg)) if cfg else rewards.RewardWeights(),
                  source=f"{path}, stage {meta.get('stage')}, step {meta.get('step')}, "
                         f"{policy.num_params():,} parameters")
    else:
        policy, tok = demo_policy(args.seed)
        kw.update(max_new=args.max_new_tokens or 16, source=f"a seeded untrained Transformer (seed {args.seed}, "
                  f"{policy.num_params():,} parameters), tokenizer trained on 300 generated problems")
    texts = args.completions or (list(BUILT_IN) if not args.checkpoint and args.question == DEFAULT_QUESTION else None)
    kw.update(policy=policy.double(), tok=tok, texts=texts, G=len(texts) if texts else args.group or 4,
              gold=args.answer or gold_answer(args.question))
    if kw["gold"] is None or rewards.parse_number(kw["gold"]) is None:
        p.error(f"no numeric gold answer for {args.question!r}: give --answer N")
    n_prompt = len(tasks.encode(tok, tasks.format_prompt(args.question, kw.get("template", "compact"))))
    positions = policy.cfg.max_seq_len
    longest = max(len(tasks.encode(tok, t)) + 1 for t in texts) if texts else 1
    if n_prompt + longest > positions:
        p.error(f"the prompt ({n_prompt} tokens) and the longest completion ({longest}) exceed the model's "
                f"{positions} positions: give shorter ones")
    kw["max_new"] = min(kw["max_new"], positions - n_prompt)  # sampling: what fits after the prompt
    return kw


def main(argv=None) -> None:
    p, args = parse_args(argv)
    print(format_explain(explain(**setup(args, p))))


if __name__ == "__main__":
    main()
