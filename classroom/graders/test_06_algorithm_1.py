"""Grader of assignment 6, the loop of DeepSeekMath's Algorithm 1: the reference reset, the minibatches of mu
epochs and pi_old (train.reset_reference, train.rl_step, rollouts.minibatches, train.minibatch_updates)."""

import pytest
import torch

import checkpoint
import config
import optim
import rollouts
import tasks
import train
from model import ModelConfig, Transformer

V = 40


def tiny(seed: int) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(ModelConfig(vocab_size=V, n_layer=1, n_head=2, n_embd=16, max_seq_len=32)).double()


def hand_made_rollouts(B: int = 2, G: int = 4) -> rollouts.Rollouts:
    """B groups of G completions of random tokens, of lengths 3 to 6, with rewards that differ in each group."""
    gen = torch.Generator().manual_seed(0)
    N, T = B * G, 6
    lengths = [3 + i % 4 for i in range(N)]
    mask = torch.tensor([[t < n for t in range(T)] for n in lengths])
    ids = torch.randint(3, V, (N, T), generator=gen).masked_fill(~mask, 0)
    prompts = [torch.randint(3, V, (4 + b,), generator=gen).tolist() for b in range(B) for _ in range(G)]
    r = torch.tensor([[float(i % 2) for i in range(G)]] * B)
    problem = tasks.Problem("What is 1+1?", "1+1 = <<1+1=2>>2", "2")  # (the completions do not answer it)
    return rollouts.Rollouts(problems=[problem] * B, prompts=prompts, ids=ids, mask=mask,
                             truncated=torch.zeros(N, dtype=torch.bool), texts=[""] * N, rewards=r, correct=r)


def due(**kw) -> list[int]:
    return [s for s in range(12) if train.reset_reference(s, config.TrainConfig(**{"rl_steps": 12, **kw}))]


@pytest.mark.points(2)
def test_the_reference_is_due_at_the_start_of_each_outer_iteration():
    """reset_reference: iterations I split rl_steps into I outer iterations, the last maybe shorter"""
    assert due() == [] and due(iterations=3) == [4, 8] and due(iterations=12) == list(range(1, 12))
    assert [s for s in range(10) if train.reset_reference(s, config.TrainConfig(rl_steps=10, iterations=3))] == [4, 8]


@pytest.mark.points(1)
def test_the_reference_is_also_due_every_n_steps_and_never_at_step_0():
    """reset_reference: ref_reset_every N resets every N steps (R1), alone or together with the iterations"""
    assert due(ref_reset_every=5) == [5, 10] and due(iterations=2, ref_reset_every=4) == [4, 6, 8]
    assert due(ref_reset_every=1) == list(range(1, 12))


@pytest.mark.points(2)
def test_minibatches_are_exactly_k_parts_of_sizes_within_one_each_row_once():
    """minibatches: min(k, n) parts, sizes differing by at most one (larger first), every row exactly once"""
    for rows, k, sizes in [(120, 16, [8] * 8 + [7] * 8), (128, 100, [2] * 28 + [1] * 72), (6, 6, [1] * 6),
                           (5, 8, [1] * 5)]:
        parts = rollouts.minibatches(rows, k, torch.Generator().manual_seed(0))
        assert [len(p) for p in parts] == sizes, (rows, k)
        assert sorted(torch.cat(parts).tolist()) == list(range(rows)) and torch.cat(parts).dtype == torch.long


@pytest.mark.points(1)
def test_minibatches_are_random_and_drawn_from_the_generator():
    """minibatches: the order comes from the generator: same seed, same parts; another seed, others"""
    cut = lambda seed: [p.tolist() for p in rollouts.minibatches(32, 4, torch.Generator().manual_seed(seed))]
    assert cut(0) == cut(0) and cut(0) != cut(1) and cut(0) != [list(range(i, i + 8)) for i in range(0, 32, 8)]
    assert sorted(torch.cat(rollouts.minibatches(7, 3, None)).tolist()) == list(range(7))  # no generator: torch's


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.points(2)
def test_rl_step_copies_the_policy_into_the_reference_when_it_is_due(monkeypatch):
    """rl_step: pi_ref <- pi_theta (a copy) before the update of a step where the reference is due"""
    policy, ref = tiny(0), tiny(1)
    initial_ref = {k: v.clone() for k, v in ref.state_dict().items()}
    models = train.RLModels(policy, ref, optim.make_optimizer(policy, 1e-3, 0.0))
    cfg = config.TrainConfig(rl_steps=4, iterations=2, prompts_per_step=2, group_size=4)
    roll = hand_made_rollouts()
    def collect(policy, tok, train, cfg, rng, generator, timer, *rest):  # the hand-made rollout; the timer it logs
        timer.update(rollout=0.0, reward=0.0, tokens=0)
        return roll, roll
    monkeypatch.setattr(rollouts, "collect_rollouts", collect)
    seen = []

    def fake_update(models, *args):  # record what the reference is, then move the policy as an update would
        seen.append((same_weights(models.ref, models.policy),
                     all(torch.equal(v, initial_ref[k]) for k, v in models.ref.state_dict().items())))
        with torch.no_grad():
            for p in models.policy.parameters():
                p.add_(0.01)
        return {}
    monkeypatch.setattr(train, "rl_update", fake_update)
    run = checkpoint.Run(cfg, None, None, "cpu")
    for step in range(4):
        train.rl_step(models, None, run, step)
    # steps 0, 1: the initial reference; step 2 (the second outer iteration): the policy; step 3: still that copy
    assert seen == [(False, True), (False, True), (True, False), (False, False)]
    assert models.ref is ref and models.policy is policy


def updates(cfg, need_old: bool):
    """Run train.minibatch_updates with a recording loss: (rows, log pi_old, log pi_theta) of every call, and
    log pi_theta of every row before any update."""
    policy, roll = tiny(0), hand_made_rollouts()
    batch = rollouts.rollout_batch(policy, tiny(1), roll, cfg, "cpu", need_old=need_old)
    with torch.no_grad():
        before = batch.logprobs(policy, torch.arange(len(roll.prompts)), cfg.temperature)
    calls = []

    def loss(logp, old, rows):
        calls.append((rows.tolist(), old.detach().clone(), logp.detach().clone()))
        return -(logp * batch.loss_mask[rows]).sum() / batch.loss_mask[rows].sum(), {"ratio_min": 1, "ratio_max": 1}
    optimizer = optim.make_optimizer(policy, 0.05, 0.0)
    train.minibatch_updates(train.RLModels(policy, policy, optimizer), batch, loss, cfg,
                            torch.Generator().manual_seed(0))
    steps = [s["step"] for s in optimizer.state.values()]
    return calls, before, batch.loss_mask, steps


@pytest.mark.points(2)
def test_with_mu_2_and_2_minibatches_pi_old_stays_the_sampling_policy_through_all_4_updates():
    """minibatch_updates: mu x minibatches AdamW steps, each epoch every row once, log pi_old frozen at rollout time"""
    cfg = config.TrainConfig(mu=2, minibatches=2, kl_coef=0.0)
    calls, before, mask, steps = updates(cfg, need_old=True)
    assert len(calls) == 4 and all(int(s) == 4 for s in steps)
    for epoch in (calls[:2], calls[2:]):
        assert sorted(r for rows, _, _ in epoch for r in rows) == list(range(8))
    for rows, old, logp in calls:
        m = mask[rows]
        assert torch.allclose(old[m], before[rows][m], atol=1e-9)  # pi_old: the policy that sampled
    last_rows, last_old, last_logp = calls[-1]
    assert not torch.allclose(last_logp[mask[last_rows]], last_old[mask[last_rows]], atol=1e-4)  # the ratio left 1


@pytest.mark.points(1)
def test_with_one_update_per_rollout_pi_old_is_the_policy_itself_and_the_ratio_is_1():
    """minibatch_updates: nothing stored (mu 1, one minibatch): log pi_old = log pi_theta, detached"""
    calls, before, mask, steps = updates(config.TrainConfig(kl_coef=0.0), need_old=False)
    (rows, old, logp), = calls
    assert torch.equal(old, logp) and torch.allclose(logp[mask[rows]], before[rows][mask[rows]], atol=1e-9)
