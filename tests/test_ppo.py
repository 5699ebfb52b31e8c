"""PPO, the baseline GRPO is compared with (DeepSeekMath Eqs. 1-2, GAE as DAPO Eqs. 2-3): the critic-side
equations on hand-computed numbers, the critic's alignment with the completion tokens, the PPO gradient
against REINFORCE with a baseline, one update on hand-made rollouts, the flags, and a smoke run of
`train.py --rl ppo`.

Run: python -m pytest -q tests/test_ppo.py
"""

import json
import math
import os

import pytest
import torch

import grpo
import train
from model import Critic, left_pad, load_checkpoint, load_critic, save_checkpoint
from test_grpo import PAD, PROMPTS, rollout, tiny
from test_train_grpo import RIGHT, WRONG, rollouts_of, tiny_model, tok  # noqa: F401 (tok is a pytest fixture)
import rollouts
import config

F64 = torch.float64


# ----------------------------------------------------------------------------- the critic-side equations


def test_token_rewards_gae_returns_value_loss_and_explained_variance_on_a_hand_computed_example():
    old_logp = torch.tensor([[-1.0, -0.5, -2.0], [-0.2, -1.0, 0.0]], dtype=F64)
    ref_logp = torch.tensor([[-1.5, -0.5, -1.0], [-0.2, -2.0, 0.0]], dtype=F64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    # k1 = old - ref = [[0.5, 0, -1], [0, 1]]; beta 0.1: r = -0.1 k1 = [[-0.05, 0, 0.1], [0, -0.1]], plus the
    # score on the last token: 1.0 on token 2 of row 0, 0.0 on token 1 of row 1
    r = grpo.ppo_token_rewards(torch.tensor([1.0, 0.0], dtype=F64), old_logp, ref_logp, mask, kl_coef=0.1)
    assert torch.allclose(r, torch.tensor([[-0.05, 0.0, 1.1], [0.0, -0.1, 0.0]], dtype=F64), atol=1e-15)
    values = torch.tensor([[0.5, 0.6, 0.8], [0.2, 0.1, 7.0]], dtype=F64)  # 7.0 is past the end: never read
    # gamma 1, lambda 0.95.  row 0: delta = [-0.05 + 0.6 - 0.5, 0 + 0.8 - 0.6, 1.1 - 0.8] = [0.05, 0.2, 0.3]
    #   A_2 = 0.3;  A_1 = 0.2 + 0.95 * 0.3 = 0.485;  A_0 = 0.05 + 0.95 * 0.485 = 0.51075
    # row 1: delta = [0 + 0.1 - 0.2, -0.1 - 0.1] = [-0.1, -0.2]: A_1 = -0.2;  A_0 = -0.1 + 0.95 * (-0.2) = -0.29
    adv, returns = grpo.gae(r, values, mask, gamma=1.0, lam=0.95)
    assert torch.allclose(adv, torch.tensor([[0.51075, 0.485, 0.3], [-0.29, -0.2, 0.0]], dtype=F64), atol=1e-12)
    # R = A + V = [[1.01075, 1.085, 1.1], [-0.09, -0.1]]
    assert torch.allclose(returns, torch.tensor([[1.01075, 1.085, 1.1], [-0.09, -0.1, 0.0]], dtype=F64), atol=1e-12)
    # the critic after an update, V = V_old + [[0.3, -0.1, 0.5], [0, -0.5]], clipped to V_old +- 0.2:
    # (0,0) V 0.8, V_clip 0.7: max(0.21075^2, 0.31075^2) = 0.0965655625;  (0,1) V = V_clip = 0.5: 0.585^2 = 0.342225
    # (0,2) V 1.3, V_clip 1.0: max(0.2^2, 0.1^2) = 0.04;  (1,0) 0.29^2 = 0.0841;  (1,1) V -0.4, V_clip -0.1:
    # max(0.3^2, 0) = 0.09.   L_V = 0.5 * (sum 0.6528905625) / 5 tokens = 0.06528905625
    new_values = values + torch.tensor([[0.3, -0.1, 0.5], [0.0, -0.5, 3.0]], dtype=F64)
    assert grpo.value_loss(new_values, values, returns, mask, clip_eps=0.2).item() == pytest.approx(0.06528905625,
                                                                                                   abs=1e-12)
    # explained variance of V_old: Var(R) = 0.6853881125 - 0.60115^2 = 0.32400679,
    # Var(R - V) = Var(A) = 0.1420381125 - 0.16115^2 = 0.11606879;  EV = 1 - 0.11606879 / 0.32400679
    ev = grpo.explained_variance(values, returns, mask)
    assert ev == pytest.approx(1 - 0.11606879 / 0.32400679, abs=1e-12) and ev == pytest.approx(0.641771, abs=1e-6)


def test_explained_variance_is_1_for_a_perfect_critic_0_for_the_mean_and_nan_for_equal_returns():
    returns = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 99.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert grpo.explained_variance(returns, returns, mask) == 1.0
    assert grpo.explained_variance(torch.full_like(returns, 3.0), returns, mask) == pytest.approx(0.0)  # mean(R) = 3
    assert math.isnan(grpo.explained_variance(torch.zeros(2, 3), torch.ones(2, 3), mask))  # nothing to explain


def test_gae_with_gamma_and_lambda_1_is_the_return_minus_the_value_on_a_hand_example():
    rewards = torch.tensor([[0.0, -0.1, 1.0], [0.5, 0.25, 0.0]], dtype=F64)
    values = torch.tensor([[0.4, 0.5, 0.9], [0.3, 0.2, 5.0]], dtype=F64)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    # returns G_t = sum_{l >= t} r_l: row 0 [0.9, 0.9, 1.0], row 1 [0.75, 0.25];  A = G - V
    adv, returns = grpo.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(returns, torch.tensor([[0.9, 0.9, 1.0], [0.75, 0.25, 0.0]], dtype=F64), atol=1e-12)
    assert torch.allclose(adv, torch.tensor([[0.5, 0.4, 0.1], [0.45, 0.05, 0.0]], dtype=F64), atol=1e-12)


# ----------------------------------------------------------------------------- the critic


def critic_with_random_head(policy, seed=0) -> Critic:
    critic = Critic.from_policy(policy)
    torch.manual_seed(seed)
    torch.nn.init.normal_(critic.value_head.weight, std=0.5)  # nonzero values, so that alignment can be seen
    torch.nn.init.normal_(critic.value_head.bias, std=0.5)
    return critic


def test_critic_values_are_read_at_the_state_before_each_completion_token():
    policy = tiny()
    roll = rollout(policy, PROMPTS)
    ids, valid = left_pad(PROMPTS, PAD, "cpu")
    critic = critic_with_random_head(policy)
    values = grpo.completion_values(critic, ids, valid, roll.ids, roll.mask)  # (N, T)
    assert values.shape == roll.ids.shape and values.requires_grad and (values[~roll.mask] == 0).all()
    for i, prompt in enumerate(PROMPTS):
        completion = roll.ids[i].tolist()
        for t in range(int(roll.mask[i].sum())):  # V(s_t), s_t = prompt + o_<t, alone and unpadded
            state = torch.tensor([prompt + completion[:t]])
            assert values[i, t].item() == pytest.approx(critic(state)[0, -1].item(), abs=1e-12)


def test_critic_values_do_not_depend_on_padding_or_on_the_tokens_after_eos():
    policy = tiny()
    roll = rollout(policy, PROMPTS)
    ids, valid = left_pad(PROMPTS, PAD, "cpu")
    critic = critic_with_random_head(policy)
    batch = grpo.completion_values(critic, ids, valid, roll.ids, roll.mask)
    n = len(PROMPTS)
    ids2 = torch.cat([torch.full((n, 3), PAD), ids], 1)  # 3 more left pads
    valid2 = torch.cat([torch.zeros(n, 3, dtype=torch.bool), valid], 1)
    mask2 = torch.cat([roll.mask, torch.zeros(n, 2, dtype=torch.bool)], 1)  # 2 more right pads, junk under them
    comp2 = torch.where(mask2, torch.cat([roll.ids, torch.full((n, 2), PAD)], 1), 17)
    padded = grpo.completion_values(critic, ids2, valid2, comp2, mask2)
    assert torch.allclose(padded[:, :-2], batch, atol=1e-12, rtol=0) and (padded[:, -2:] == 0).all()


def test_the_critic_starts_from_the_policys_weights_with_a_zero_head_and_shares_nothing_with_it():
    policy = tiny()
    critic = Critic.from_policy(policy)
    policy_state = policy.state_dict()
    assert all(torch.equal(v, policy_state[k]) for k, v in critic.trunk.state_dict().items())
    assert critic.value_head.weight.dtype == F64 and critic.num_params() == policy.num_params() + 32 + 1
    x = torch.tensor([[5, 6, 7, 8]])
    assert torch.equal(critic.trunk.hidden(x), policy.hidden(x))  # the SFT trunk's final hidden states
    assert (critic(x) == 0).all()  # a zero value head: V = 0 in every state at the start
    with torch.no_grad():
        policy.tok_emb.weight.add_(1.0)
    assert not torch.equal(critic.trunk.tok_emb.weight, policy.tok_emb.weight)  # a copy, not shared


def test_the_rl_stage_holds_a_critic_copied_from_the_sft_policy_only_with_ppo():
    policy = tiny()
    ppo = train.make_rl_models(policy, config.TrainConfig(rl="ppo", critic_lr=1e-3))
    assert torch.equal(ppo.critic.trunk.tok_emb.weight, policy.tok_emb.weight)
    assert (ppo.critic.value_head.weight == 0).all() and (ppo.critic.value_head.bias == 0).all()
    assert ppo.critic_optimizer.param_groups[0]["lr"] == 1e-3 and ppo.ref is not policy
    assert not any(p.requires_grad for p in ppo.ref.parameters())
    grpo_models = train.make_rl_models(policy, config.TrainConfig(rl="grpo"))
    assert grpo_models.critic is None and grpo_models.critic_optimizer is None


def test_a_saved_critic_loads_with_the_same_values_and_is_not_mistaken_for_a_policy(tmp_path):
    critic = critic_with_random_head(tiny())
    save_checkpoint(str(tmp_path), critic, None, {"stage": "ppo_critic"})
    loaded, meta = load_critic(str(tmp_path))
    x = torch.tensor([[5, 6, 7, 8]])
    assert meta["stage"] == "ppo_critic" and torch.allclose(loaded(x).double(), critic(x), atol=1e-6)
    with pytest.raises(ValueError, match="value_head"):  # a critic is no policy checkpoint
        load_checkpoint(str(tmp_path))


# ----------------------------------------------------------------------------- the PPO update


def ppo_rollouts(policy, scores: list[float]) -> rollouts.Rollouts:
    """policy's samples for test_grpo's PROMPTS (3 questions x G = 2, rows interleaved), with the given scores."""
    roll = rollout(policy, PROMPTS)
    n = len(PROMPTS)
    return rollouts.Rollouts(problems=[None] * 3, prompts=PROMPTS, ids=roll.ids, mask=roll.mask, truncated=roll.truncated,
                          texts=[""] * n, rewards=torch.tensor(scores, dtype=F64).view(3, 2),
                          correct=torch.zeros(3, 2))


def test_with_a_constant_value_and_one_update_the_ppo_gradient_is_reinforce_with_a_baseline():
    beta, b = 0.1, 0.3
    scores = [1.0, 0.0, 0.5, 2.0, 0.0, 1.0]
    policy, ref = tiny(seed=0), tiny(seed=1)  # a different reference, so that the KL rewards are not 0
    roll = ppo_rollouts(policy, scores)
    critic = Critic.from_policy(policy)
    torch.nn.init.constant_(critic.value_head.bias, b)  # zero weight: V(s) = b in every state
    cfg = config.TrainConfig(rl="ppo", mu=1, minibatches=1, kl_coef=beta, gamma=1.0, lam=1.0, whiten_adv=False,
                            grad_clip=0.0, max_new_tokens=8)
    # SGD with lr 1: the policy's parameters move by exactly minus the gradient of the PPO policy loss
    models = train.RLModels(policy, ref, torch.optim.SGD(policy.parameters(), lr=1.0), critic,
                            torch.optim.SGD(critic.parameters(), lr=0.0))
    params = list(policy.parameters())
    before = [p.detach().clone() for p in params]

    # REINFORCE with baseline b, by hand: r_t = -beta (log pi(o_t) - log pi_ref(o_t)) (+ score on the last token),
    # G_t = sum_{l >= t} r_l, and grad J = 1/N sum_i 1/|o_i| sum_t (G_t - b) grad log pi(o_t)
    ids, valid = left_pad(PROMPTS, PAD, "cpu")
    logp = grpo.completion_logprobs(policy, ids, valid, roll.ids, roll.mask)
    with torch.no_grad():
        ref_logp = grpo.completion_logprobs(ref, ids, valid, roll.ids, roll.mask)
    objective = 0.0
    for i in range(len(PROMPTS)):
        L = int(roll.mask[i].sum())
        r = [-beta * (logp[i, t].item() - ref_logp[i, t].item()) for t in range(L)]
        r[-1] += scores[i]
        G = [sum(r[t:]) for t in range(L)]
        objective = objective + sum((G[t] - b) * logp[i, t] for t in range(L)) / L
    expected = torch.autograd.grad(objective / len(PROMPTS), params)  # grad J; the loss is -J

    stats = train.ppo_update(models, roll, cfg, "cpu", torch.Generator().manual_seed(0))
    assert stats["ratio_mean"] == 1.0 and stats["ratio_min"] == 1.0 and stats["clip_frac"] == 0.0  # pi = pi_old
    assert stats["kl"] > 0 and stats["value_mean"] == pytest.approx(b)
    for p0, p, g in zip(before, params, expected):  # p = p0 - lr * grad(loss) = p0 + grad J
        assert torch.allclose(p - p0, g, atol=1e-12, rtol=1e-9)
    assert max(g.abs().max().item() for g in expected) > 1e-3  # the gradient is not trivially 0


def test_one_ppo_update_raises_the_right_answer_against_the_wrong_one_and_lowers_the_value_loss(tok):
    roll = rollouts_of(tok, [RIGHT, WRONG], "20", G=2)  # rewards: right 2 (accuracy + format), wrong 1
    policy = tiny_model(tok.get_vocab_size())
    cfg = config.TrainConfig(rl="ppo", rl_lr=1e-2, critic_lr=1e-2)
    models = train.make_rl_models(policy, cfg)
    ids, valid = left_pad(roll.prompts, 0, "cpu")
    seq_logp = lambda: grpo.masked_sum(grpo.completion_logprobs(policy, ids, valid, roll.ids, roll.mask).detach(),
                                       roll.mask, dim=-1)
    # pi = pi_ref, so the KL rewards are 0 and (gamma = lambda = 1) every token's return is its completion's score
    returns = torch.where(roll.mask, roll.rewards.view(2, 1), 0.0)
    v_loss = lambda: 0.5 * grpo.masked_mean(
        (grpo.completion_values(models.critic, ids, valid, roll.ids, roll.mask).detach() - returns) ** 2, roll.mask)
    before, v_before = seq_logp(), v_loss()
    stats = train.ppo_update(models, roll, cfg, "cpu", torch.Generator().manual_seed(0))
    n_right, n_wrong = roll.mask.sum(-1).tolist()
    # the critic starts at V = 0: L_V = 1/2 (2^2 n_right + 1^2 n_wrong) / (n_right + n_wrong), and it explains nothing
    assert stats["value_loss"] == pytest.approx(0.5 * (4 * n_right + n_wrong) / (n_right + n_wrong), rel=1e-6)
    assert v_before.item() == pytest.approx(stats["value_loss"], rel=1e-6)
    assert stats["explained_var"] == pytest.approx(0.0, abs=1e-6) and stats["kl"] == 0.0
    assert stats["return_mean"] == pytest.approx((2 * n_right + n_wrong) / (n_right + n_wrong), rel=1e-6)
    after = seq_logp()
    assert after[0] - after[1] > before[0] - before[1] + 0.5  # the right answer gained on the wrong one
    assert v_loss() < v_before  # the critic moved towards the returns
    assert stats["critic_grad_norm"] > 0 and stats["grad_norm"] > 0


# ----------------------------------------------------------------------------- flags and the whole pipeline


@pytest.mark.parametrize("argv, flag, words", [
    (["--gamma", "1.5"], "--gamma", "must be in [0, 1]"),
    (["--lam", "-0.1"], "--lam", "must be in [0, 1]"),
    (["--vf_coef", "0"], "--vf_coef", "must be > 0"),
    (["--critic_lr", "0"], "--critic_lr", "must be > 0"),
    (["--value_clip", "-0.2"], "--value_clip", "must be >= 0"),
    (["--whiten_adv", "maybe"], "--whiten_adv", "not a boolean"),
    (["--rl", "ppo", "--dynamic_sampling", "true"], "--dynamic_sampling", "no effect here: it acts only with --rl grpo"),
    (["--rl", "ppo", "--supervision", "process"], "--supervision", "no effect here: it acts only with --rl grpo"),
    (["--rl", "ppo", "--std_ddof", "1"], "--std_ddof", "no effect here: it acts only with --rl grpo"),
    (["--rl", "ppo", "--adv_scale", "none"], "--adv_scale", "no effect here: it acts only with --rl grpo"),
    (["--gamma", "0.9"], "--gamma", "no effect here: it acts only with --rl ppo"),
    (["--rl", "grpo", "--whiten_adv", "false"], "--whiten_adv", "no effect here: it acts only with --rl ppo")])
def test_bad_ppo_flags_are_errors_that_name_the_flag_and_the_allowed_values(argv, flag, words, capsys):
    with pytest.raises(SystemExit):
        config.parse_config(argv)
    err = capsys.readouterr().err
    assert flag in err and words in err


def test_ppo_flags_parse_and_grpo_only_flags_pass_with_grpo():
    cfg = config.parse_config(["--rl", "ppo", "--gamma", "0.99", "--lam", "0.95", "--whiten_adv", "false",
                              "--value_clip", "0", "--critic_lr", "1e-3"])
    assert (cfg.gamma, cfg.lam, cfg.whiten_adv, cfg.value_clip, cfg.critic_lr) == (0.99, 0.95, False, 0.0, 1e-3)
    assert config.parse_config(["--rl", "grpo", "--dynamic_sampling", "true"]).dynamic_sampling


PPO_FIELDS = ("reward", "accuracy", "reward_std", "zero_std_frac", "length", "truncated_frac", "kl", "kl_k1",
              "clip_frac", "ratio_mean", "entropy", "grad_norm", "loss", "objective", "value_loss", "value_mean",
              "return_mean", "return_std", "critic_grad_norm", "rollout_tok_s")
TIME_SPLIT = ("rollout_s", "reward_s", "logprob_s", "adv_s", "critic_s", "update_s")


def test_smoke_pipeline_with_ppo_logs_every_field_the_time_split_and_the_memory(tmp_path, capsys):
    out = str(tmp_path / "run")
    result = train.main(["--preset", "smoke", "--rl", "ppo", "--out_dir", out, "--mu", "2", "--minibatches", "2"])
    assert set(os.listdir(os.path.join(out, "ppo"))) >= {"model.safetensors", "tokenizer.json", "critic"}
    critic, meta = load_critic(os.path.join(out, "ppo", "critic"))
    assert meta["stage"] == "ppo_critic" and meta["step"] == 4
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    steps = [r for r in records if r["stage"] == "ppo" and "reward" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    for r in steps:
        for key in PPO_FIELDS + TIME_SPLIT + ("step_s",):
            assert math.isfinite(r[key]), key
        assert sum(r[k] for k in TIME_SPLIT) <= r["step_s"] + 0.02  # the parts are disjoint pieces of the step
        # explained variance is NaN only when every return is equal (design: Explained variance)
        assert math.isfinite(r["explained_var"]) or r["return_std"] == 0
    assert any(math.isfinite(r["explained_var"]) for r in steps)
    evals = [r for r in records if r["stage"] == "ppo" and "eval_pass_at_1" in r]
    assert [r["step"] for r in evals] == [0, 2, 4]
    # the models held in memory: policy, reference and critic (the policy's size + a value head), a rule reward
    models = {r["model"]: r["params"] for r in result["models"]}
    n = models["policy"]
    assert models == {"policy": n, "reference": n, "critic": n + 32 + 1, "reward": 0}
    assert [r for r in records if r.get("models") == result["models"]]  # logged when the stage starts, and at the end
    memory = result["memory"]
    for key in ("rss_before_mib", "peak_rss_before_mib", "peak_rss_mib"):
        assert math.isfinite(memory[key]) and memory[key] > 100, key  # Python and torch alone take ~230 MiB
    # the stage's own peak (or the process's) is at least the RSS it began with, to within the rounding to 0.1 MiB
    assert memory["rss_increase_mib"] == pytest.approx(memory["peak_rss_mib"] - memory["rss_before_mib"], abs=0.11)
    # (Linux updates a process's RSS and peak counters lazily, per thread, so the two readings can disagree by a
    # few hundred KiB: seen as -0.3 MiB on a loaded machine)
    assert memory["rss_increase_mib"] >= -1.0 and memory["peak_rss_reset"] in (True, False)
    assert records[-1]["stage"] == "final" and records[-1]["memory"] == memory and "ppo" in records[-1]
    printed = capsys.readouterr().out
    assert "|    SFT |    PPO |  change |" in printed
    assert "ppo    4 |" in printed and "vloss" in printed and "| critic    |" in printed
