"""Benchmarks: speed claims live here, not in timed tests.

    python bench.py sampling      # KV-cached batched sampling vs recomputing the whole prefix each step

Each benchmark runs the compared variants side by side in one process, on the same inputs, and
reports medians over repeats, so a noisy machine shifts both numbers alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

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
    args = p.parse_args(argv)
    {"sampling": bench_sampling}[args.bench](args)


if __name__ == "__main__":
    main()
