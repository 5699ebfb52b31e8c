"""A scripted policy for tests: a `model.Transformer` whose completions are KNOWN in advance.

Why: a test of the training loop that recomputes its expected values from the loop's own outputs (the decoded
text, the mask) passes even when the loop decoded the wrong row, kept the EOS, or scored the wrong completion.
With a scripted policy the test writes the completions itself, so every expected text, reward and metric can be
written down by hand.

The script: for each prompt (a tuple of prompt token ids, or the prompt's text with `tok` given), a list of
completions (token-id lists). In one batch, the row that holds the o-th occurrence of a prompt (o = 0, 1, ...,
counted from the top of the batch) follows completion number o % len(completions). So the G identical prompts of
a GRPO group produce G different, known completions, and a prompt asked once (greedy evaluation) produces its
completion 0. A completion that ends with `tasks.EOS_ID` stops there; one without runs into max_new_tokens (it
must then have at least max_new_tokens tokens: running past the end of a script raises ValueError).

How the forward pass knows where each row is (the approach):
  * The logits are exactly `margin` (default +40) on the scripted next token and 0 elsewhere, plus 0 times the
    real (tiny) network's logits. So sampling at temperature 1 picks the scripted token with probability
    1 / (1 + (V - 1) e^-40), about 1 - 1e-15 per token, greedy decoding always does, and log pi(scripted token)
    is about -(V - 1) * 4e-18, i.e. 0. The real network still runs (n_layer=1, n_embd=8): it keeps the KV cache
    bookkeeping of model.py exact (cache.length, shape checks on `valid` and `positions`), and its parameters
    receive (zero) gradients, so optimizers and loss.backward() work on it.
  * The scripted next token is a pure function of (the row's prompt, which completion the row follows, the
    row's valid tokens so far): the next prompt token inside the prompt (never used), then completion[n] after
    n completion tokens, then EOS once the row has emitted EOS (generate() ignores those rows).
  * With a KV cache (`generate()`): the prefill call (cache.length == 0) sees each row's whole left-padded
    prompt; the valid tokens (by `valid`) must equal a scripted prompt exactly, and the row's completion number
    is fixed there from its occurrence index. Both, and the valid tokens seen so far, are kept ON THE CACHE
    OBJECT (`cache.scripted_rows`), which generate() creates afresh for every call (and every max_batch chunk,
    so with max_batch the occurrence index counts within the chunk). Each decode call appends the new token of
    every row (its `valid` column is True) and reads the next scripted token. No state lives on the model.
  * Without a cache (a full forward pass over prompt + completion, as `grpo.completion_logprobs` does): each
    row's valid tokens are split into the longest scripted prompt they start with and the completion after it;
    the row follows the first of that prompt's completions that agrees with its completion tokens (one is a
    prefix of the other), else, if none agrees, completion number (occurrence index % count). So a scripted
    completion gets log-probs of about 0 at every token, and a token that departs from the script about -40
    (the script goes on after it). In this mode the stub is an oracle, not a causal model: the choice of
    completion looks at the whole row.

`scripted_policy(tok, {question: [completion text, ...]})` builds one from texts, as train.py formats them.
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import rollouts
import tasks  # noqa: E402
from model import ModelConfig, Transformer  # noqa: E402

MARGIN = 40.0


class NoEOS(str):
    """A completion text that the scripted policy writes WITHOUT an EOS: the row runs into max_new_tokens."""


class ScriptedPolicy(Transformer):
    """A Transformer whose next token is scripted (module docstring). scripts: {prompt: [completion, ...]},
    prompt a tuple of token ids or, with tok given, a prompt text (encoded with tasks.encode); a completion a
    list of token ids (end it with tasks.EOS_ID to stop there)."""

    def __init__(self, vocab_size: int, scripts: dict, tok=None, margin: float = MARGIN, max_seq_len: int = 256,
                 eos_id: int = tasks.EOS_ID, seed: int = 0):
        torch.manual_seed(seed)
        super().__init__(ModelConfig(vocab_size=vocab_size, n_layer=1, n_head=2, n_embd=8, max_seq_len=max_seq_len))
        self.margin, self.eos_id = margin, eos_id
        self.scripts: dict[tuple[int, ...], list[list[int]]] = {}
        for prompt, completions in scripts.items():
            if isinstance(prompt, str):
                if tok is None:
                    raise ValueError(f"prompt {prompt!r} is text: give tok to encode it")
                prompt = tasks.encode(tok, prompt)
            key = tuple(int(t) for t in prompt)
            if not key or not completions:
                raise ValueError(f"prompt {key} needs at least one token and at least one completion")
            rows = [[int(t) for t in c] for c in completions]
            for c in rows:
                if not c or any(not 0 <= t < vocab_size for t in c):
                    raise ValueError(f"completion {c} of prompt {key}: empty or a token outside the vocabulary")
            self.scripts[key] = rows

    # ---- the script -------------------------------------------------------------------------------------------
    def _prompt_of(self, tokens: list[int], exact: bool) -> tuple[int, ...]:
        if exact:
            if tuple(tokens) not in self.scripts:
                raise KeyError(f"no script for the prompt {tokens}; scripted prompts: {list(self.scripts)}")
            return tuple(tokens)
        starts = [k for k in self.scripts if tuple(tokens[:len(k)]) == k]
        if not starts:
            raise KeyError(f"the row {tokens} starts with no scripted prompt; scripted prompts: {list(self.scripts)}")
        return max(starts, key=len)

    def _next_token(self, key: tuple[int, ...], j: int, seen: list[int], strict: bool) -> int:
        """The scripted token after the valid tokens `seen` of a row with prompt `key` following completion j."""
        if len(seen) < len(key):
            return key[len(seen)]  # inside the prompt: predict the prompt (never sampled)
        done = seen[len(key):]
        if self.eos_id in done:
            return self.eos_id  # the row has ended; generate() ignores it
        script = self.scripts[key][j]
        if len(done) < len(script):
            return script[len(done)]
        if strict:
            raise ValueError(f"the scripted completion {script} of prompt {list(key)} has no EOS and ran out after "
                             f"{len(script)} tokens: give it at least max_new_tokens tokens, or end it with EOS")
        return self.eos_id

    def _scripted_logits(self, targets: list[list[int]], like: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(like)
        index = torch.tensor(targets, dtype=torch.long, device=like.device)[..., None]  # (B, T, 1)
        return out.scatter(-1, index, self.margin)

    # ---- the forward pass -------------------------------------------------------------------------------------
    def forward(self, idx, valid=None, positions=None, cache=None):
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        real = super().forward(idx, valid, positions, cache)  # (B, T, V); updates the cache as model.py does
        new_valid = (torch.ones(B, T, dtype=torch.bool) if valid is None else valid[:, past:past + T].cpu()).tolist()
        ids = idx.tolist()
        if cache is None:
            targets = self._full_pass_targets(ids, new_valid)
        else:
            targets = self._cached_targets(ids, new_valid, cache, past)
        return real * 0.0 + self._scripted_logits(targets, real)

    def _cached_targets(self, ids, new_valid, cache, past) -> list[list[int]]:
        if past == 0:  # prefill: fix each row's prompt and completion number
            rows, count = [], {}
            for row, ok in zip(ids, new_valid):
                key = self._prompt_of([t for t, v in zip(row, ok) if v], exact=True)
                o = count.get(key, 0)
                count[key] = o + 1
                rows.append({"key": key, "j": o % len(self.scripts[key]), "seen": []})
            cache.scripted_rows = rows
        rows = getattr(cache, "scripted_rows", None)
        if rows is None or len(rows) != len(ids):
            raise RuntimeError("ScriptedPolicy: a cached call without its prefill (cache.scripted_rows missing)")
        targets = []
        for row, ok, state in zip(ids, new_valid, rows):
            out = []
            for t, v in zip(row, ok):
                if v:
                    state["seen"].append(t)
                out.append(self._next_token(state["key"], state["j"], state["seen"], strict=past > 0))
            targets.append(out)
        return targets

    def _full_pass_targets(self, ids, new_valid) -> list[list[int]]:
        targets, count = [], {}
        for row, ok in zip(ids, new_valid):
            tokens = [t for t, v in zip(row, ok) if v]
            key = self._prompt_of(tokens, exact=False)
            done = tokens[len(key):]
            o = count.get(key, 0)
            count[key] = o + 1
            scripts = self.scripts[key]
            agrees = [j for j, s in enumerate(scripts) if s[:len(done)] == done[:len(s)]]
            j = agrees[0] if agrees else o % len(scripts)
            seen, out = [], []
            for t, v in zip(row, ok):
                if v:
                    seen.append(t)
                out.append(self._next_token(key, j, seen, strict=False))
            targets.append(out)
        return targets


def completion_ids(tok, completion, eos: bool = True) -> list[int]:
    """Token ids of one scripted completion: a text (+ EOS unless eos=False or it is a NoEOS), or ids as given."""
    if isinstance(completion, str):
        ids = tasks.encode(tok, completion)
        return ids + [tasks.EOS_ID] if eos and not isinstance(completion, NoEOS) else ids
    return [int(t) for t in completion]


def scripted_policy(tok, scripts: dict[str, list], template: str = "compact", eos: bool = True,
                    margin: float = MARGIN, max_seq_len: int = 256) -> ScriptedPolicy:
    """A ScriptedPolicy from texts: {question: [completion, ...]}. Each question's prompt is
    tasks.encode(tok, tasks.format_prompt(question, template)), as rollouts.sample_groups and sample.complete build
    it; each completion is tasks.encode(tok, text) + [EOS] (no EOS for a NoEOS text, or for all with eos=False;
    a list of ids is used as given)."""
    return ScriptedPolicy(
        tok.get_vocab_size(),
        {tuple(tasks.encode(tok, tasks.format_prompt(q, template))): [completion_ids(tok, c, eos) for c in cs]
         for q, cs in scripts.items()},
        margin=margin, max_seq_len=max_seq_len)
