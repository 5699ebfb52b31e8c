"""explain.py: what it prints is what grpo.py and rewards.py compute, recomputed here on the same tensors, and
the gradient it prints is autograd's, beside DeepSeekMath's gradient coefficient and the chain rule by hand.

Run: python -m pytest -q tests/test_explain.py
"""

import copy
import math
import re
import shlex
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import config
import explain
import grpo
from model import save_checkpoint

BETA, EPS = 0.04, 0.2


@pytest.fixture(scope="module")
def demo():
    """The seeded tiny policy and tokenizer of `python explain.py`, built once."""
    return explain.demo_policy(seed=0)


@pytest.fixture(scope="module")
def step(demo):
    """Every number of `python explain.py`: the built-in group, the second of mu = 2 updates."""
    return explain.explain(*demo, explain.DEFAULT_QUESTION, "40", texts=list(explain.BUILT_IN))


@pytest.fixture(scope="module")
def ppo_step(demo):
    return explain.explain(*demo, explain.DEFAULT_QUESTION, "40", texts=list(explain.BUILT_IN), rl="ppo")


def run_main(argv, capsys) -> str:
    explain.main(argv)
    return capsys.readouterr().out


# ----------------------------------------------------------------------------- rewards and advantages


def test_the_built_in_rewards_and_advantages_are_the_hand_computed_ones(step):
    # by R1's rules (rewards.py): right with work: accuracy 1, format 1 -> 2; right without work (an empty
    # <think> is still the format) -> 2; wrong answer 36 in the format -> 0 + 1 = 1; no tags: no answer to
    # extract, no format -> 0.
    assert [p["accuracy"] for p in step["parts"]] == [1.0, 1.0, 0.0, 0.0]
    assert [p["format"] for p in step["parts"]] == [1.0, 1.0, 1.0, 0.0]
    assert step["r"].tolist() == [2.0, 2.0, 1.0, 0.0]
    # mean 5/4; population variance ((3/4)^2 * 2 + (1/4)^2 + (5/4)^2) / 4 = 2.75 / 4 = 0.6875
    mean, std = 1.25, math.sqrt(0.6875)
    hand = [(r - mean) / (std + 1e-6) for r in (2.0, 2.0, 1.0, 0.0)]  # [0.9045, 0.9045, -0.3015, -1.5076]
    assert step["mean"] == mean and step["std"] == pytest.approx(std, abs=1e-12)
    assert step["adv"].tolist() == pytest.approx(hand, abs=1e-12)
    assert [round(a, 4) for a in hand] == [0.9045, 0.9045, -0.3015, -1.5076]


# ----------------------------------------------------------------------------- the GRPO update


def test_pi_theta_is_the_policy_after_one_sgd_step_and_pi_old_pi_ref_the_policy_that_sampled(demo, step):
    policy, _ = demo
    group = step["group"]
    model = copy.deepcopy(policy).double()
    logp0 = explain.logprobs(model, group)
    assert torch.equal(logp0.detach(), step["old"]) and torch.equal(step["old"], step["ref"])
    loss, _ = grpo.grpo_loss(logp0, logp0.detach(), logp0.detach(), step["adv"], group.mask, BETA, EPS)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= explain.LR * p.grad  # plain SGD
        logp1 = explain.logprobs(model, group)
    assert torch.allclose(logp1, step["logp"], atol=1e-12, rtol=0)


def test_the_loss_and_every_per_token_quantity_equal_grpo_py_on_the_same_tensors(step):
    c, mask = step, step["mask"]
    logp, old, ref, adv = c["logp"], c["old"], c["ref"], c["adv"]
    loss, _ = grpo.grpo_loss(logp, old, ref, adv, mask, BETA, EPS)
    J, _ = grpo.grpo_objective(logp, old, ref, adv, mask, BETA, EPS)
    assert c["loss"] == loss.item() and c["J"] == J.item() and c["loss"] == -c["J"]
    A = adv[:, None].expand_as(logp)
    ratio = grpo.policy_ratio(logp, old)
    k3 = grpo.kl_k3(logp, ref)
    surrogate = grpo.clipped_surrogate(ratio, A, EPS)
    on = mask
    assert torch.equal(c["ratio"][on], ratio[on]) and torch.equal(c["k3"][on], k3[on])
    assert torch.equal(c["surrogate"][on], surrogate[on])
    assert torch.equal(c["per_token"][on], (surrogate - BETA * k3)[on])
    assert torch.equal(c["unclipped"][on], (ratio * A)[on])
    assert torch.equal(c["surrogate"][on], torch.minimum(c["unclipped"], c["clipped"])[on])
    lengths = mask.sum(-1)
    by_hand = [(c["per_token"][i, :n].sum() / n).item() for i, n in enumerate(lengths.tolist())]  # 1/|o_i| sum_t
    assert c["row_mean"].tolist() == pytest.approx(by_hand, abs=1e-15)
    assert sum(by_hand) / 4 == pytest.approx(c["J"], abs=1e-15)  # 1/G sum_i
    gc = grpo.grpo_gradient_coefficient(A, logp, ref, BETA)
    assert torch.equal(c["gc"][on], gc[on])
    assert torch.allclose(c["gc"][on], (A + BETA * (torch.exp(ref - logp) - 1))[on], atol=1e-15)  # Eq. 21 by hand


def test_the_printed_update_moves_ratios_out_of_the_clip_range_so_that_the_clip_acts(step):
    ratio = step["ratio"][step["mask"]]
    assert (ratio < 1 - EPS).any() and (ratio > 1 + EPS).any()
    assert 0 < int(step["is_clipped"].sum()) < int(step["mask"].sum())
    assert (step["k3"][step["mask"]] > 0).all()


def test_the_gradient_column_is_autograd_of_grpo_loss_recomputed_here(step):
    c = step
    logp = c["logp"].clone().requires_grad_(True)
    loss, _ = grpo.grpo_loss(logp, c["old"], c["ref"], c["adv"], c["mask"], BETA, EPS)
    grad, = torch.autograd.grad(loss, logp)
    assert torch.equal(c["grad"], grad)


def test_the_gradient_is_minus_the_coefficient_over_g_and_the_length_by_hand(demo, step):
    c, mask = step, step["mask"]
    G, n = 4, mask.sum(-1, keepdim=True).double()
    A = c["adv"][:, None].expand_as(c["logp"])
    kl_part = BETA * (torch.exp(c["ref"] - c["logp"]) - 1)  # beta (pi_ref / pi_theta - 1)
    # off rho = 1 (the printed update): d min/d logp = rho A where unclipped, 0 where clipped
    unclipped = mask & ~c["is_clipped"]
    assert torch.allclose(c["grad"][unclipped], (-(c["ratio"] * A + kl_part) / (G * n))[unclipped], atol=1e-15)
    assert torch.allclose(c["grad"][c["is_clipped"]], (-kl_part / (G * n))[c["is_clipped"]], atol=1e-15)
    assert torch.allclose(c["hand"][mask], c["grad"][mask], atol=1e-15)
    # at rho = 1 (mu = 1: the first update) the gradient is exactly -(1/G)(1/|o_i|) GC of Eq. 21, on every token
    first = explain.explain(*demo, explain.DEFAULT_QUESTION, "40", texts=list(explain.BUILT_IN), mu=1)
    assert (first["ratio"][mask] == 1).all() and not first["is_clipped"].any()
    assert torch.allclose(first["grad"][mask], (-first["gc"] / (G * n))[mask], atol=1e-15)
    assert step["earlier"][0]["eq21_gap"] < 1e-15 and step["earlier"][0]["ratio_max"] == 1.0


# ----------------------------------------------------------------------------- the print


ROW = re.compile(r"^ {0,3}\d+  ")


def printed_rows(text: str, completion: int) -> list[list[float]]:
    """The numbers of completion's token rows, parsed back from the print (the token cell is 10 wide)."""
    block = text.split(f"\ncompletion {completion}:")[1].split("\n\n")[0]
    rows = [line for line in block.splitlines()[2:] if ROW.match(line)]
    return [[float(x.rstrip("*")) for x in line[16:].split()] for line in rows]


def test_the_print_shows_these_numbers_with_4_decimals_and_the_gradients_with_6(step, capsys):
    out = run_main([], capsys)
    c, keys = step, [k for _, k, _ in explain.GRPO_COLUMNS]
    for i in (0, 3):
        rows = printed_rows(out, i + 1)
        assert len(rows) == int(c["mask"][i].sum())
        for t, row in enumerate(rows):
            for key, value in zip(keys, row):
                places = 6 if key in ("grad", "hand") else 4
                assert value == round(c[key][i, t].item(), places), (i, t, key)
    assert f"loss = -J = {c['loss']:.4f}" in out and f"= {c['J']:.4f}   grpo.grpo_objective" in out
    assert "A_4 = (0.0000 - 1.2500) / 0.8292 = -1.5076" in out
    assert "mean = 1.2500, std = 0.8292 (population std" in out
    assert re.search(r"^   1\s+1\.0000\s+1\.0000\s+0\.0000\s+0\.0000\s+2\.0000\s+31  ' <think> 12\*3", out, re.M)
    assert "(Eq. 21): max |difference| 0.0e+00  (rho = 1: exact)" in out
    assert "d(-J)/d logp_{i,t} = -(1/G)(1/|o_i|)" in out.splitlines()[4]  # the aggregation factor, in the header


def test_the_same_seed_gives_the_same_print_and_another_seed_another(capsys):
    first, second = run_main([], capsys), run_main([], capsys)
    assert first == second
    assert run_main(["--seed", "1"], capsys) != first


# ----------------------------------------------------------------------------- PPO


def test_ppo_numbers_equal_ppo_token_rewards_gae_whiten_and_the_ppo_loss_on_the_same_tensors(ppo_step, capsys):
    c, mask = ppo_step, ppo_step["mask"]
    token_rewards = grpo.ppo_token_rewards(c["r"], c["old"], c["ref"], mask, BETA)
    assert torch.equal(c["token_rewards"], token_rewards)
    adv, returns = grpo.gae(token_rewards, c["old_values"], mask, 1.0, 1.0)
    assert torch.equal(c["gae"], adv) and torch.equal(c["returns"], returns)
    assert torch.equal(c["A"], grpo.whiten(adv, mask))
    # by hand, gamma = lambda = 1: A_t = (the rewards from t on) - V_old(s_t); here only the last token has one
    for i, n in enumerate(mask.sum(-1).tolist()):
        future = token_rewards[i, :n].flip(0).cumsum(0).flip(0)
        assert torch.allclose(adv[i, :n], future - c["old_values"][i, :n], atol=1e-12)
        assert token_rewards[i, n - 1] == c["r"][i] - BETA * (c["old"][i, n - 1] - c["ref"][i, n - 1])
    assert c["old_values"][mask].abs().min() > 0  # the seeded head: not the zero head train.py starts with
    logp = c["logp"].clone().requires_grad_(True)
    loss, _ = grpo.ppo_loss(logp, c["old"], c["A"], mask, EPS)
    assert c["loss"] == loss.item() and torch.equal(c["grad"], torch.autograd.grad(loss, logp)[0])
    assert torch.equal(c["surrogate"][mask], grpo.clipped_surrogate(c["ratio"], c["A"], EPS)[mask])
    assert c["value_loss"] == grpo.value_loss(c["old_values"], c["old_values"], returns, mask, 0.2).item()
    out = run_main(["--rl", "ppo"], capsys)
    keys = [k for _, k, _ in explain.PPO_COLUMNS]
    for t, row in enumerate(printed_rows(out, 2)):
        assert row == [round(c[k][1, t].item(), 4) for k in keys]
    assert f"policy loss = -J = {c['loss']:.4f}" in out and "advantage, from a critic" in out


def test_with_a_reference_behind_the_sampler_every_token_pays_beta_k1_in_ppo_and_k3_in_grpo(demo):
    policy, tok = demo
    ref = copy.deepcopy(policy)  # a reference that differs from the policy that samples
    with torch.no_grad():
        ref.tok_emb.weight.add_(0.5 * torch.randn(ref.tok_emb.weight.shape, generator=torch.Generator().manual_seed(3),
                                                  dtype=torch.float64))
    c = explain.explain(policy, tok, explain.DEFAULT_QUESTION, "40", texts=list(explain.BUILT_IN), rl="ppo",
                        ref_policy=ref)
    mask, k1 = c["mask"], c["old"] - c["ref"]  # k1 = log pi_old - log pi_ref, by hand
    assert (k1[mask] != 0).all() and torch.equal(c["k1"][mask], k1[mask])
    last = mask.sum(-1) - 1
    by_hand = torch.where(mask, -BETA * k1, 0.0)
    by_hand[torch.arange(4), last] += c["r"]  # the score on the last token
    assert torch.allclose(c["token_rewards"], by_hand, atol=1e-15)
    assert torch.equal(c["token_rewards"], grpo.ppo_token_rewards(c["r"], c["old"], c["ref"], mask, BETA))
    g = explain.explain(policy, tok, explain.DEFAULT_QUESTION, "40", texts=list(explain.BUILT_IN), ref_policy=ref)
    assert torch.equal(g["k3"][mask], grpo.kl_k3(g["logp"], g["ref"])[mask]) and not torch.equal(g["ref"], g["old"])
    loss, _ = grpo.grpo_loss(g["logp"], g["old"], g["ref"], g["adv"], mask, BETA, EPS)
    assert g["loss"] == loss.item() and torch.allclose(g["hand"][mask], g["grad"][mask], atol=1e-15)


# ----------------------------------------------------------------------------- the command line


@pytest.mark.parametrize("argv, message", [
    (["--group", "1"], "--group must be >= 2"),
    (["--mu", "0"], "--mu must be >= 1"),
    (["--clip_eps", "1.5"], "--clip_eps must be in (0, 1)"),
    (["--lr", "0"], "--lr must be > 0"),
    (["--beta", "-0.1"], "--beta must be >= 0"),
    (["--max_new_tokens", "0"], "--max_new_tokens must be >= 1"),
    (["--completions", "only one"], "--completions needs at least 2"),
    (["--group", "3", "--completions", "a", "b"], "--group 3 but 2 --completions"),
    (["--question", "Who won?"], "give --answer N"),
    (["--rl", "dpo"], "invalid choice"),
    (["no/such/checkpoint"], "no checkpoint at"),
])
def test_bad_flags_give_a_one_line_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        explain.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and "error:" in err[-1] and not any("Traceback" in line for line in err)


def test_a_checkpoint_samples_its_group_at_temperature_1_and_scores_given_completions(demo, tmp_path, capsys):
    policy, tok = demo
    cfg = asdict(config.TrainConfig(max_new_tokens=6))
    save_checkpoint(str(tmp_path / "sft"), copy.deepcopy(policy).float(), tok,
                    meta={"train_config": cfg, "stage": "sft", "step": 0})
    out = run_main([str(tmp_path), "--question", "What is 7+8?", "--group", "3", "--seed", "2"], capsys)
    assert f"policy: {tmp_path / 'sft'}, stage sft" in out and "gold answer 15; G = 3" in out
    assert all(len(printed_rows(out, i)) <= 6 for i in (1, 2, 3))  # sampled, at most max_new_tokens each
    assert out == run_main([str(tmp_path), "--question", "What is 7+8?", "--group", "3", "--seed", "2"], capsys)
    out = run_main([str(tmp_path), "--completions", *explain.BUILT_IN[:2], "--rl", "ppo"], capsys)
    assert "G = 2" in out and len(printed_rows(out, 2)) == 12


# ----------------------------------------------------------------------------- docs/tutorial.md


def pasted_outputs() -> list[tuple[str, list[str]]]:
    """(command, lines) of every ```text block of docs/tutorial.md marked `<!-- output of: COMMAND -->`."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "tutorial.md").read_text(encoding="utf-8")
    blocks = re.findall(r"<!-- output of: (.+?) -->\n```text\n(.*?)\n```", text, re.S)
    return [(command, body.splitlines()) for command, body in blocks]


def test_the_tutorial_pastes_the_real_output_of_its_commands(capsys):
    blocks = pasted_outputs()
    assert len(blocks) >= 8 and {c for c, _ in blocks} == {"python explain.py", "python explain.py --mu 1",
                                                           "python explain.py --rl ppo"}
    outputs = {}
    for command, lines in blocks:
        if command not in outputs:
            outputs[command] = run_main(shlex.split(command)[2:], capsys).splitlines()
        missing = [line for line in lines if line != "..." and line not in outputs[command]]
        assert not missing, (f"docs/tutorial.md shows lines that `{command}` no longer prints (paste its output "
                             f"again, and redo the hand computations that use them): {missing[:3]}")
