"""Benchmarks: speed claims live here, not in timed tests.

    python bench.py sampling      # KV-cached batched sampling vs recomputing the whole prefix each step
    python bench.py grpo          # seconds per GRPO step, where they go, and rollout tokens/s by batch size

Each benchmark runs the compared variants side by side in one process, on the same inputs, and
reports medians over repeats, so a noisy machine shifts both numbers alike.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

import grpo
import tasks
import train
from model import ModelConfig, Transformer, generate, left_pad


@torch.no_grad()
def generate_uncached(model: Transformer, prompts: list[list[int]], max_new_tokens: int, pad_id: int) -> torch.Tensor:
    """Greedy decoding the slow way: a full forward pass over prompt + everything so far, every step."""
    ids, valid = left_pad(prompts, pad_id, model.tok_emb.weight.device)
    for _ in range(max_new_tokens):
        tok = model(ids, valid=valid)[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        ids = torch.cat([ids, tok], dim=1)
        valid = torch.cat([valid, torch.ones_like(tok, dtype=torch.bool)], dim=1)
    return ids[:, -max_new_tokens:]


def timed(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_sampling(args):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=args.vocab, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                      max_seq_len=args.prompt_len + args.new_tokens)
    model = Transformer(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(args.prompt_len // 2, args.prompt_len + 1, (args.batch,), generator=gen).tolist()
    prompts = [torch.randint(2, args.vocab, (n,), generator=gen).tolist() for n in lengths]
    no_eos = args.vocab  # an id the model can never emit, so every row decodes all new_tokens
    cached = generate(model, prompts, args.new_tokens, eos_id=no_eos, pad_id=0, temperature=0)
    uncached = generate_uncached(model, prompts, args.new_tokens, pad_id=0)
    same = torch.equal(cached.ids, uncached)
    t_cached = timed(lambda: generate(model, prompts, args.new_tokens, no_eos, 0, temperature=0), args.repeats)
    t_uncached = timed(lambda: generate_uncached(model, prompts, args.new_tokens, 0), args.repeats)
    n_tok = args.batch * args.new_tokens
    print(f"model {model.num_params():,} params (L{args.n_layer} H{args.n_head} D{args.n_embd}), "
          f"{args.batch} prompts of {min(lengths)}-{max(lengths)} tokens, {args.new_tokens} new tokens each, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"same greedy tokens: {same}")
    print(f"KV cache : {t_cached:7.3f} s  {n_tok / t_cached:9.0f} tokens/s")
    print(f"no cache : {t_uncached:7.3f} s  {n_tok / t_uncached:9.0f} tokens/s")
    print(f"speed-up : {t_uncached / t_cached:.1f}x")



def matmul_gflops(n: int = 1024, repeats: int = 5) -> float:
    """The machine's fp32 matmul rate, the ceiling for everything else here."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    return 2 * n ** 3 / timed(lambda: a @ b, repeats) / 1e9


def bench_grpo(args):
    """Real GRPO steps (train.collect_rollouts, advantages, policy_update) on a freshly initialised model.

    The untrained model never writes a correct answer, so every advantage is 0, but each step still does all
    its work: it samples prompts x G completions (rarely stopping before max_new_tokens), scores them,
    takes the reference's log-probs and a full forward and backward pass of the policy. Timings are medians
    over the steps after a warm-up step.
    """
    torch.manual_seed(0)
    problems, _ = tasks.make_splits("arithmetic", 2000, 10, 0)
    tok = tasks.train_tokenizer(tasks.corpus_texts(problems, "compact"), 384)
    cfg = train.TrainConfig(n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                            prompts_per_step=args.prompts, group_size=args.group, max_new_tokens=args.max_new_tokens,
                            kl_coef=args.kl_coef, overlong_cache=min(16, args.max_new_tokens))
    mcfg = ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
                       max_seq_len=64 + cfg.max_new_tokens)
    policy = Transformer(mcfg)
    ref = Transformer(mcfg).requires_grad_(False).eval()
    ref.load_state_dict(policy.state_dict())
    optimizer = train.make_optimizer(policy, cfg, cfg.rl_lr)
    rng, gen = random.Random(0), torch.Generator().manual_seed(0)
    rows = []
    for _ in range(args.steps + 1):  # the first step warms up and is not counted
        timer, t = {}, time.perf_counter()
        roll, _ = train.collect_rollouts(policy, tok, problems, cfg, rng, gen, timer)
        t_adv = time.perf_counter()
        adv = train.advantages(roll, tok, cfg)
        t_adv = time.perf_counter() - t_adv
        stats = train.policy_update(policy, ref, optimizer, roll, adv, cfg, "cpu", gen)
        rows.append(dict(step=time.perf_counter() - t, rollout=timer["rollout"], reward=timer["reward"] + t_adv,
                         logprobs=stats["logprob_s"], update=stats["update_s"], tokens=timer["tokens"],
                         shape=tuple(roll.ids.shape), prompts=roll.prompts, ids=roll.ids, mask=roll.mask))
    rows = rows[1:]
    med = {k: statistics.median(r[k] for r in rows) for k in ("step", "rollout", "reward", "logprobs", "update",
                                                               "tokens")}
    # the bare passes a step cannot avoid, on the last step's batch: a forward without grad (the reference),
    # and a forward + backward (the policy); an SGD-free loss so that nothing else is timed
    last = rows[-1]
    prompt_ids, prompt_valid = left_pad(last["prompts"], tasks.PAD_ID, "cpu")

    def forward():
        with torch.no_grad():
            grpo.completion_logprobs(ref, prompt_ids, prompt_valid, last["ids"], last["mask"])

    def forward_backward():
        policy.zero_grad(set_to_none=True)
        grpo.completion_logprobs(policy, prompt_ids, prompt_valid, last["ids"], last["mask"]).sum().backward()

    t_fwd, t_fb = timed(forward, 3), timed(forward_backward, 3)
    n = args.prompts * args.group
    print(f"model {policy.num_params():,} params (L{args.n_layer} H{args.n_head} D{args.n_embd}), {args.prompts} "
          f"prompts x G={args.group} = {n} completions of up to {args.max_new_tokens} tokens, beta={args.kl_coef}, "
          f"{torch.get_num_threads()} threads; median of {args.steps} steps; completion batch {last['shape']}")
    print(f"GRPO step     : {med['step']:6.3f} s")
    for k in ("rollout", "reward", "logprobs", "update"):
        print(f"  {k:<11} : {med[k]:6.3f} s  {100 * med[k] / med['step']:5.1f}%")
    print(f"rollout       : {med['tokens'] / med['rollout']:8.0f} completion tokens/s")
    print(f"bare passes   : forward {t_fwd:.3f} s (the reference's log-probs: {med['logprobs']:.3f} s), "
          f"forward + backward {t_fb:.3f} s (the update, with AdamW and the loss: {med['update']:.3f} s)")
    print(f"the update and log-probs cost {(med['update'] + med['logprobs']) / (t_fb + (t_fwd if args.kl_coef else 0)):.2f}x "
          "the bare passes they must do")
    # tokens/s of the rollout alone by batch size: overhead-bound when small, arithmetic-bound when large
    peak = matmul_gflops()
    print(f"\nrollout tokens/s by batch ({args.max_new_tokens} new tokens each, no EOS); matmul peak here "
          f"{peak:.0f} GFLOP/s")
    print(f"{'batch':>6} {'seconds':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'of peak':>8}")
    prompt = tasks.encode(tok, tasks.format_prompt(problems[0].question, "compact"))
    flops_per_token = 2 * policy.num_params()  # a forward pass: 2 FLOPs per weight per token (+ attention)
    per_step = {}
    for batch in args.batches:
        secs = timed(lambda: generate(policy, [prompt] * batch, args.max_new_tokens, eos_id=10 ** 9, pad_id=0,
                                      temperature=1.0, generator=gen), 3)
        tps = batch * args.max_new_tokens / secs
        per_step[batch] = secs / args.max_new_tokens
        print(f"{batch:6d} {secs:8.3f} {tps:9.0f} {tps * flops_per_token / 1e9:8.1f} "
              f"{100 * tps * flops_per_token / 1e9 / peak:7.1f}%")
    # a decode step costs a + b * batch: a is the fixed overhead (Python, kernel launches), b * batch the work
    lo, hi = min(per_step), max(per_step)
    b = (per_step[hi] - per_step[lo]) / (hi - lo)
    a = per_step[lo] - b * lo
    for batch in (args.prompts * args.group, hi):
        print(f"decode step at batch {batch}: {1e3 * (a + b * batch):.2f} ms = {1e3 * a:.2f} ms fixed overhead + "
              f"{1e3 * b * batch:.2f} ms that grows with the batch ({100 * b * batch / (a + b * batch):.0f}%)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="bench", required=True)
    s = sub.add_parser("sampling", help="KV-cached vs uncached batched greedy sampling")
    s.add_argument("--batch", type=int, default=128, help="sequences sampled together")
    s.add_argument("--new_tokens", type=int, default=64, help="tokens generated per sequence")
    s.add_argument("--prompt_len", type=int, default=24, help="longest prompt (shortest is half)")
    s.add_argument("--n_layer", type=int, default=4)
    s.add_argument("--n_head", type=int, default=4)
    s.add_argument("--n_embd", type=int, default=128)
    s.add_argument("--vocab", type=int, default=384)
    s.add_argument("--repeats", type=int, default=3, help="timed runs; the median is reported")
    g = sub.add_parser("grpo", help="seconds per GRPO step, split by phase, and rollout tokens/s by batch")
    g.add_argument("--n_layer", type=int, default=4)
    g.add_argument("--n_head", type=int, default=4)
    g.add_argument("--n_embd", type=int, default=128)
    g.add_argument("--prompts", type=int, default=16, help="prompts per step (B)")
    g.add_argument("--group", type=int, default=8, help="completions per prompt (G)")
    g.add_argument("--max_new_tokens", type=int, default=64)
    g.add_argument("--kl_coef", type=float, default=0.04, help="beta; 0 skips the reference's forward pass")
    g.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up step)")
    g.add_argument("--batches", type=int, nargs="+", default=[16, 32, 64, 128, 256],
                   help="batch sizes of the tokens/s table")
    args = p.parse_args(argv)
    {"sampling": bench_sampling, "grpo": bench_grpo}[args.bench](args)


if __name__ == "__main__":
    main()
