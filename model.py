"""A small decoder-only Transformer, written by hand, with KV-cache batched sampling.

What is here, top to bottom:
  1. `ModelConfig`, the architecture as a dataclass (stored as JSON in every checkpoint).
  2. The pieces of a Llama/DeepSeek-style block: `RMSNorm`, rotary position embeddings (`rope_tables`,
     `apply_rope`), causal multi-head self-attention (`SelfAttention`; the hand-written `attention` with
     `attention_mask` and `positions_from_valid` is the reference for the sdpa fast path; grouped-query
     attention when there are fewer key/value heads than query heads), a `SwiGLU` MLP; pre-norm residual
     blocks (`Block`); a final norm and an LM head, tied to the embedding unless the config says otherwise
     (`Transformer`). pretrained.py fills this model with Llama and Qwen2 weights.
  3. `KVCache` and `generate()`: one call samples completions for a batch of prompts of different
     lengths (`left_pad`, `filter_logits`) and returns the completion ids, the mask of valid completion
     tokens and whether each row was truncated (GRPO needs all three), plus the log-prob of every sampled
     token (`Completions`).
  4. `save_checkpoint` / `load_checkpoint` / `read_checkpoint`: safetensors weights with the config as JSON
     metadata, the tokenizer's `tokenizer.json` beside them. Nothing is pickled, so loading never runs code.
     `load_critic` reads a `Critic` saved the same way; `load_scorer` one that will score a policy's completions
     (a reward model, a verifier), frozen and checked against the policy.
  5. `Critic`: PPO's value model, the same Transformer as a trunk (`Transformer.hidden`, the final-normed
     hidden state before the LM head) plus a linear value head.

Shape letters used in comments: B batch rows, T tokens, H heads, Hkv key/value heads (H unless grouped-query
attention), D model width, Dh = D / H head width, V vocabulary size.

The equations (RMSNorm, RoPE, attention, SwiGLU) are written out in docs/equations.md; why the model is
built this way (left padding, SwiGLU width, the critic's zero value head, ...) is in docs/design.md ("Model",
"PPO baseline", "Pretrained weights"). Tests: python -m pytest -q tests/test_model.py (the fields for pretrained
weights: tests/test_pretrained.py)
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file


# ---------------------------------------------------------------------------------------------
# 1. Configuration
# ---------------------------------------------------------------------------------------------
@dataclass
class ModelConfig:
    vocab_size: int = 512  # tokens in the vocabulary (set from the tokenizer)
    n_layer: int = 4  # Transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # model width D
    max_seq_len: int = 256  # longest prompt + completion the RoPE tables cover
    rope_theta: float = 10000.0  # RoPE base frequency (Llama's value)
    norm_eps: float = 1e-5  # RMSNorm epsilon
    attn_impl: str = "sdpa"  # "sdpa" (fast path) or "manual" (the reference written out below)
    # Added for pretrained weights (pretrained.py); the defaults are the model above, so an older config loads as is.
    n_kv_head: int | None = None  # key/value heads Hkv (grouped-query attention); None or 0: n_head
    qkv_bias: bool = False  # biases on the q, k, v projections (Qwen2 has them)
    mlp_hidden: int = 0  # SwiGLU hidden width; 0: 8/3 D rounded up to a multiple of 32 (design: SwiGLU width)
    tied_head: bool = True  # LM head = the embedding matrix; False: a separate `lm_head` matrix

    def __post_init__(self):
        if self.n_embd % self.n_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(f"n_embd={self.n_embd} must split into n_head={self.n_head} heads of even width")
        if self.attn_impl not in ("sdpa", "manual"):
            raise ValueError(f"attn_impl={self.attn_impl!r}: allowed values are 'sdpa', 'manual'")
        if self.n_kv_head is not None and (self.n_kv_head < 0 or (self.n_kv_head and self.n_head % self.n_kv_head)):
            raise ValueError(f"n_kv_head={self.n_kv_head}: n_head={self.n_head} must be a whole multiple of it "
                             "(None or 0: one key/value head per query head)")
        if self.mlp_hidden < 0:
            raise ValueError(f"mlp_hidden={self.mlp_hidden} must be >= 0 (0: the 8/3 D rule)")

    @property
    def head_dim(self) -> int:  # Dh
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:  # Hkv: n_kv_head, or n_head when it is None or 0
        return self.n_kv_head or self.n_head

    @property
    def mlp_width(self) -> int:  # the SwiGLU hidden width: mlp_hidden, or 8/3 D rounded up to a multiple of 32
        return self.mlp_hidden or 32 * math.ceil(8 * self.n_embd / 3 / 32)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}; known keys are {sorted(known)}")
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# 2. The layers
# ---------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * g   (Zhang & Sennrich 2019; used by Llama and DeepSeek)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # normalise in fp32 even under bf16 autocast: the mean of squares loses precision in bf16
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return y.type_as(x) * self.weight


def rope_tables(head_dim: int, max_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, each (max_len, head_dim/2).

    RoPE (Su et al. 2021, "RoFormer", arXiv 2104.09864), as used by Llama and DeepSeek: the pair
    (x_i, x_{i+Dh/2}) of a query or key at position p is rotated by the angle p * theta^(-2i/Dh),
    so the dot product q.k depends only on the distance between the two positions.
    """
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (Dh/2,)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (max_len, Dh/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (B, H, T, Dh) by per-row angles cos, sin (B, 1, T, Dh/2). Half-split layout."""
    x1, x2 = x.float().chunk(2, dim=-1)  # (B, H, T, Dh/2) each
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.type_as(x)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(Dh) + mask) v, written out. The reference for the sdpa fast path.

    q (B, H, Tq, Dh); k, v (B, H, Tk, Dh); mask (B, 1, Tq, Tk) bool, True where a query may look.
    """
    # BEGIN SOLUTION kv-cache: scores q k^T / sqrt(Dh), -inf where the mask is False, softmax in fp32, times v
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
    scores = scores.masked_fill(~mask, float("-inf"))  # -inf so masked keys get exactly 0 weight
    weights = F.softmax(scores.float(), dim=-1).type_as(q)
    return weights @ v  # (B, H, Tq, Dh)
    # END SOLUTION kv-cache


def attention_mask(valid: torch.Tensor, n_query: int) -> torch.Tensor:
    """(B, 1, Tq, Tk) bool: query i (the last Tq of the Tk positions) may see key j iff
    j <= i (causal) and key j is a real token, or j == i (design: Pad queries see themselves)."""
    n_key = valid.size(1)
    q_pos = torch.arange(n_key - n_query, n_key, device=valid.device)[:, None]  # (Tq, 1)
    k_pos = torch.arange(n_key, device=valid.device)[None, :]  # (1, Tk)
    causal = k_pos <= q_pos  # (Tq, Tk)
    allowed = (causal & valid[:, None, :]) | (k_pos == q_pos)  # (B, Tq, Tk)
    return allowed[:, None]


def positions_from_valid(valid: torch.Tensor) -> torch.Tensor:
    """Per-row positions: the number of valid tokens before each token (pads get 0).

    valid [[0, 0, 1, 1, 1]] -> [[0, 0, 0, 1, 2]]: a left-padded row gets the positions it would
    have had without padding (design: Left padding).
    """
    return (valid.long().cumsum(-1) - 1).clamp(min=0)


class KVCache:
    """Keys and values of every layer for a batch of B rows, preallocated for max_len positions.

    All rows share one write column (`self.length`), since prompts are left-padded to one length and
    every row then gains exactly one token per decode step.
    """

    def __init__(self, cfg: ModelConfig, batch: int, max_len: int, device, dtype):
        shape = (batch, cfg.kv_heads, max_len, cfg.head_dim)  # (B, Hkv, T, Dh): only the key/value heads are kept
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.length = 0  # positions written so far

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new keys/values (B, Hkv, Tnew, Dh) and return all of them so far."""
        # BEGIN SOLUTION kv-cache: write k, v at columns length .. length + Tnew of this layer; return columns 0 .. end
        start, end = self.length, self.length + k.size(2)
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]
        # END SOLUTION kv-cache

    def select(self, rows: torch.Tensor) -> "KVCache":
        """The cache with row rows[i] of this one as its row i (a copy): a prompt prefilled once, for every row
        that shares it (generate's prompt_once)."""
        out = copy.copy(self)
        out.k, out.v = [t[rows] for t in self.k], [t[rows] for t in self.v]
        return out


class PrefixCache:
    """The keys and values of a batch's prompts, computed once per distinct prompt and then repeated for every row
    that shares it (`repeat`), so that a pass over [prompt | completion] need not run the prompt G times.
    Unlike KVCache it never writes in place: `update` concatenates, so gradients flow through it (the policy's
    update) as well as not (pi_ref, pi_old). Used by `hidden_prompt_once`."""

    def __init__(self, n_layer: int):
        self.k, self.v = [None] * n_layer, [None] * n_layer  # per layer (rows, Hkv, positions, Dh)
        self.length = 0  # positions held

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The past keys/values of this layer followed by the new ones (B, Hkv, Tnew, Dh), kept for the next call."""
        if self.k[layer] is not None:
            k, v = torch.cat([self.k[layer], k], dim=2), torch.cat([self.v[layer], v], dim=2)
        self.k[layer], self.v[layer] = k, v
        return k, v

    def select(self, rows: torch.Tensor) -> None:
        """Keep the keys and values of `rows` (N,) of the distinct prompts, in that order: one row per completion
        (a differentiable copy: the gradients of the rows that share a prompt add up in it)."""
        self.k = [t[rows] for t in self.k]
        self.v = [t[rows] for t in self.v]


class SelfAttention(nn.Module):
    """Causal self-attention with H query heads and Hkv key/value heads (grouped-query attention, Ainslie et al.
    2023, arXiv 2305.13245): each key/value head serves H / Hkv consecutive query heads. Hkv = H is plain
    multi-head attention. One fused projection makes q (D wide), k and v (Hkv Dh wide each)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim, self.impl = cfg.n_head, cfg.kv_heads, cfg.head_dim, cfg.attn_impl
        kv_width = self.n_kv_head * self.head_dim  # Hkv Dh (= D without grouped-query attention)
        self.qkv = nn.Linear(cfg.n_embd, cfg.n_embd + 2 * kv_width, bias=cfg.qkv_bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, mask, cache: KVCache | None, layer: int):
        B, T, D = x.shape
        H, Hkv, Dh = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.qkv(x).split([D, Hkv * Dh, Hkv * Dh], dim=-1)  # (B, T, D), (B, T, Hkv Dh), (B, T, Hkv Dh)
        q = q.view(B, T, H, Dh).transpose(1, 2)  # (B, H, T, Dh)
        k, v = (t.view(B, T, Hkv, Dh).transpose(1, 2) for t in (k, v))  # (B, Hkv, T, Dh)
        q, k = apply_rope(torch.cat([q, k], dim=1), cos, sin).split([H, Hkv], dim=1)  # one rotation for both
        if cache is not None:
            k, v = cache.update(layer, k, v)  # (B, Hkv, Tk, Dh): the past and the new positions
        if Hkv != H:  # query head h reads key/value head h // (H / Hkv): repeat each one H / Hkv times in place
            k, v = (t.repeat_interleave(H // Hkv, dim=1) for t in (k, v))  # (B, H, Tk, Dh)
        if self.impl == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            y = attention(q, k, v, mask)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D): heads side by side again
        return self.proj(y)


class SwiGLU(nn.Module):
    """MLP(x) = W_down( silu(W_gate x) * W_up x )   (Shazeer 2020, "GLU Variants Improve Transformer")."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = cfg.mlp_width  # 8/3 D rounded up to a multiple of 32, unless the config sets it (design: SwiGLU width)
        self.gate = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.up = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.down = nn.Linear(hidden, cfg.n_embd, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """Pre-norm residual block: x = x + Attn(Norm(x)); x = x + MLP(Norm(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2 = RMSNorm(cfg.n_embd, cfg.norm_eps), RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attn, self.mlp = SelfAttention(cfg), SwiGLU(cfg)

    def forward(self, x, cos, sin, mask, cache, layer):
        x = x + self.attn(self.norm1(x), cos, sin, mask, cache, layer)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        # the LM head: the embedding matrix itself (tied, no parameters of its own), or a matrix of its own (V, D)
        self.lm_head = None if cfg.tied_head else nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # derived, so not saved
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale the residual writes by depth
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:  # only the q, k, v biases of a qkv_bias model
            nn.init.zeros_(m.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, valid=None, positions=None, cache: KVCache | None = None):
        """Logits (B, T, V) for tokens idx (B, T): the LM head on `hidden`. Arguments as `hidden`."""
        return self.head(self.hidden(idx, valid, positions, cache))  # (B, T, V)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The LM head: logits (..., V) of hidden states h (..., D), tied to the embedding or a matrix of its own."""
        return F.linear(h, self.tok_emb.weight if self.lm_head is None else self.lm_head.weight)

    def hidden(self, idx, valid=None, positions=None, cache: KVCache | None = None):
        """The final-normed hidden states (B, T, D) for tokens idx (B, T), the LM head's input (a critic reads them).

        valid: (B, Tk) bool, which keys are real tokens (Tk = cached + T); None means all.
        positions: (B, T) RoPE positions of idx; None means derive them from `valid`.
        cache: a KVCache to read the past from and append these T positions to.
        """
        B, T = idx.shape
        past = cache.length if cache is not None else 0
        if valid is None:
            valid = torch.ones(B, past + T, dtype=torch.bool, device=idx.device)
        if positions is None:
            positions = positions_from_valid(valid)[:, past:]
        if cache is None and T > self.cfg.max_seq_len:  # generate() checks the cached case up front
            raise ValueError(f"sequence of {T} tokens exceeds max_seq_len={self.cfg.max_seq_len}")
        cos, sin = self.rope_cos[positions][:, None], self.rope_sin[positions][:, None]  # (B, 1, T, Dh/2)
        mask = attention_mask(valid, T)  # (B, 1, T, Tk)
        x = self.tok_emb(idx)  # (B, T, D)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, mask, cache, layer)
        if cache is not None:
            # BEGIN SOLUTION kv-cache: every layer has written these T positions: move the cache's write column on
            cache.length += T
            # END SOLUTION kv-cache
        return self.norm(x)  # (B, T, D)


class Critic(nn.Module):
    """V_psi(s_t): PPO's value model, a Transformer of the policy's size with a scalar value head (design: The critic).

    value(s) = w . h(s) + b, where h(s) is the trunk's final-normed hidden state (`Transformer.hidden`) at the
    last token of s. The trunk's embedding only embeds here: the LM head is never used.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg  # save_checkpoint stores it, as for the policy
        self.trunk = Transformer(cfg)
        self.value_head = nn.Linear(cfg.n_embd, 1)
        nn.init.zeros_(self.value_head.weight)  # V = 0 everywhere at the start (design: The critic)
        nn.init.zeros_(self.value_head.bias)

    @classmethod
    def from_policy(cls, policy: Transformer) -> "Critic":
        """A critic whose trunk is a copy of the policy's weights (InstructGPT, DeepSeekMath: the value model
        starts from the model RL starts from), on the policy's device and in its dtype; a zero value head."""
        weight = policy.tok_emb.weight
        critic = cls(policy.cfg).to(device=weight.device, dtype=weight.dtype)
        critic.trunk.load_state_dict(policy.state_dict())
        return critic

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, valid=None):
        """Values (B, T): V at every position of idx (B, T), i.e. of the state ending with that token."""
        return self.head(self.trunk.hidden(idx, valid))

    def hidden(self, idx, valid=None, positions=None, cache=None):
        """The trunk's final-normed hidden states (B, T, D), as Transformer.hidden."""
        return self.trunk.hidden(idx, valid, positions, cache)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """The value head: values (...) of hidden states h (..., D)."""
        return self.value_head(h).squeeze(-1)  # (..., 1) -> (...)


def distinct_rows(ids: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, row_of) of a batch of left-padded prompts (B, P): `first` (U,) one row of each of the U distinct
    prompts (ids and padding alike), `row_of` (B,) the distinct prompt of each row, so that ids[first][row_of]
    equals ids. [[5, 6], [7, 8], [5, 6]] -> U = 2, ids[first] = [[5, 6], [7, 8]], row_of = [0, 1, 0]."""
    key = torch.cat([ids, valid.long()], dim=1)  # a prompt is its tokens and its padding
    distinct, row_of = torch.unique(key, dim=0, return_inverse=True)  # sorted distinct rows
    first = torch.empty(len(distinct), dtype=torch.long, device=ids.device)
    first[row_of] = torch.arange(len(row_of), device=ids.device)  # any row of each: they are equal
    return first, row_of


def hidden_prompt_once(model, prompt_ids: torch.Tensor, prompt_valid: torch.Tensor, completion_ids: torch.Tensor,
                       completion_mask: torch.Tensor) -> torch.Tensor:
    """model.hidden at the state before each completion token, (N, T, D), as one pass over [prompt | completion]
    gives it (positions P-1 .. P+T-2), but with each distinct prompt run once: a GRPO group's G rows share their
    prompt, so its keys and values are computed for one row and copied to the G (PrefixCache), then the completions
    run on them (design: A group's prompt once). The same numbers up to the order of float sums; for G samples of
    each question, the prompt's share of the FLOPs falls G-fold. Rows may come in any order.
    model: a Transformer or a Critic (anything with .hidden(idx, valid, positions, cache) and .cfg)."""
    P, T = prompt_ids.size(1), completion_ids.size(1)
    first, row_of = distinct_rows(prompt_ids, prompt_valid)
    cache = PrefixCache(model.cfg.n_layer)
    h_prompt = model.hidden(prompt_ids[first], prompt_valid[first], cache=cache)  # (U, P, D)
    last = h_prompt[row_of, -1:]  # (N, 1, D): position P-1, whose output predicts completion token 0
    if T == 1:
        return last
    cache.select(row_of)
    valid = torch.cat([prompt_valid, completion_mask], dim=1)[:, :P + T - 1]  # the keys up to position P+T-2
    h_completion = model.hidden(completion_ids[:, :-1], valid, cache=cache)  # (N, T-1, D): positions P .. P+T-2
    return torch.cat([last, h_completion], dim=1)  # (N, T, D)


# ---------------------------------------------------------------------------------------------
# 3. Sampling with a KV cache
# ---------------------------------------------------------------------------------------------
class Completions(NamedTuple):
    """What `generate` returns: the sampled completions of a batch of prompts. T is the longest completion.
    (rollouts.Rollouts adds what RL needs: the questions, the texts, the rewards.)"""

    ids: torch.Tensor  # (B, T) completion tokens, pad_id after a row ended
    mask: torch.Tensor  # (B, T) bool, True on real completion tokens (the EOS included)
    truncated: torch.Tensor  # (B,) bool, True if the row hit max_new_tokens without an EOS
    logprobs: torch.Tensor  # (B, T) log pi(token) at the sampling temperature, before top-k/top-p; 0 on pads


def left_pad(prompts: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists of different lengths -> ids (B, P) left-padded, valid (B, P) bool."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt must have at least one token")
    P = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), P), pad_id, dtype=torch.long)
    valid = torch.zeros(len(prompts), P, dtype=torch.bool)
    for i, p in enumerate(prompts):
        ids[i, P - len(p):] = torch.tensor(p, dtype=torch.long)
        valid[i, P - len(p):] = True
    return ids.to(device), valid.to(device)


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k, then outside the smallest set with mass >= top_p."""
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) >= top_p  # mass before this token already reaches top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


@torch.no_grad()
def generate(model: Transformer, prompts: list[list[int]], max_new_tokens: int, eos_id: int, pad_id: int,
             temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, max_batch: int | None = None,
             prompt_once: bool = False) -> Completions:
    """Sample a completion for every prompt in one batched, KV-cached loop.

    temperature 0 means greedy (argmax). Each row stops at its first EOS (kept, and masked as a real
    token, because the policy must learn to stop) or after max_new_tokens (then truncated=True).
    max_batch: sample at most this many rows at a time (the KV cache grows with the rows), one loop per
    chunk, the results right-padded to a common length; greedy rows are the same either way, sampled
    ones differ (the generator's draws are consumed chunk by chunk).
    prompt_once: prefill each distinct prompt once and copy its keys and values to the rows that share it (a GRPO
    group's G rows); the same numbers up to the order of float sums (design: A group's prompt once).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch={max_batch} must be >= 1 (None: all rows at once)")
    if max_batch is not None and len(prompts) > max_batch:
        parts = [generate(model, prompts[i:i + max_batch], max_new_tokens, eos_id, pad_id, temperature, top_k, top_p,
                          generator, prompt_once=prompt_once) for i in range(0, len(prompts), max_batch)]
        T = max(p.ids.size(1) for p in parts)
        pad = lambda x, value: F.pad(x, (0, T - x.size(1)), value=value)
        return Completions(torch.cat([pad(p.ids, pad_id) for p in parts]), torch.cat([pad(p.mask, False) for p in parts]),
                       torch.cat([p.truncated for p in parts]), torch.cat([pad(p.logprobs, 0.0) for p in parts]))
    device = model.tok_emb.weight.device
    ids, valid = left_pad(prompts, pad_id, device)
    B, P = ids.shape
    if P + max_new_tokens > model.cfg.max_seq_len:
        raise ValueError(f"longest prompt {P} + max_new_tokens {max_new_tokens} > max_seq_len {model.cfg.max_seq_len}")
    if prompt_once:  # prefill each distinct prompt once, then give every row its prompt's cache and logits
        first, row_of = distinct_rows(ids, valid)
        cache = KVCache(model.cfg, len(first), P + max_new_tokens, device, model.tok_emb.weight.dtype)
        logits = model(ids[first], valid=valid[first], cache=cache)[:, -1][row_of]  # (B, V)
        cache = cache.select(row_of)
    else:
        cache = KVCache(model.cfg, B, P + max_new_tokens, device, model.tok_emb.weight.dtype)
        logits = model(ids, valid=valid, cache=cache)[:, -1]  # prefill: (B, V)
    valid = torch.cat([valid, torch.ones(B, max_new_tokens, dtype=torch.bool, device=device)], dim=1)
    next_pos = valid[:, :P].sum(-1, keepdim=True)  # (B, 1) position of the first new token
    out = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    fdtype = torch.promote_types(model.tok_emb.weight.dtype, torch.float32)  # softmax in >= fp32
    out_logp = torch.zeros(B, max_new_tokens, device=device, dtype=fdtype)
    out_mask = torch.zeros(B, max_new_tokens, dtype=torch.bool, device=device)
    alive = torch.ones(B, dtype=torch.bool, device=device)  # rows that have not yet emitted EOS
    for t in range(max_new_tokens):
        logits = logits.to(fdtype)
        if temperature == 0:
            tok = logits.argmax(-1)
            logp = torch.log_softmax(logits, -1)
        else:
            scaled = logits / temperature if temperature != 1 else logits  # (x / 1 is x: one kernel saved)
            logp = torch.log_softmax(scaled, -1)
            probs = filter_logits(scaled, top_k, top_p).softmax(-1)
            tok = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        out[:, t] = torch.where(alive, tok, pad_id)
        out_logp[:, t] = torch.where(alive, logp.gather(1, tok[:, None]).squeeze(1), 0.0)
        out_mask[:, t] = alive
        alive = alive & (tok != eos_id)
        if not alive.any() or t == max_new_tokens - 1:
            break
        logits = model(out[:, t:t + 1], valid=valid[:, :P + t + 1], positions=next_pos + t, cache=cache)[:, -1]
    T = t + 1
    return Completions(out[:, :T], out_mask[:, :T], alive, out_logp[:, :T])


# ---------------------------------------------------------------------------------------------
# 4. Checkpoints
# ---------------------------------------------------------------------------------------------
WEIGHTS_FILE, TOKENIZER_FILE = "model.safetensors", "tokenizer.json"


def save_checkpoint(directory: str, model: Transformer, tokenizer=None, meta: dict | None = None) -> str:
    """Write directory/model.safetensors (config and `meta` as JSON metadata) and tokenizer.json.

    Each file is written to a temporary name and renamed, so a crash mid-write never leaves a half file.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, WEIGHTS_FILE)
    metadata = {"model_config": json.dumps(asdict(model.cfg))}
    for key, value in (meta or {}).items():
        metadata[key] = json.dumps(value)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, path + ".tmp", metadata=metadata)
    os.replace(path + ".tmp", path)
    if tokenizer is not None:  # atomic too
        tokenizer.save(os.path.join(directory, TOKENIZER_FILE + ".tmp"))
        os.replace(os.path.join(directory, TOKENIZER_FILE + ".tmp"), os.path.join(directory, TOKENIZER_FILE))
    return path


def read_checkpoint(directory: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata with JSON values decoded, tensors) of directory/model.safetensors, or a clear error."""
    path = os.path.join(directory, WEIGHTS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(path, framework="pt") as f:
            raw_meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if "model_config" not in raw_meta:
        raise ValueError(f"{path}: no 'model_config' in the metadata; was it written by save_checkpoint?")
    try:
        meta = {k: json.loads(v) for k, v in raw_meta.items()}
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: metadata is not valid JSON ({e})") from None
    return meta, tensors


def load_checkpoint(directory: str, device="cpu", attn_impl: str | None = None,
                    kind: type = Transformer) -> tuple[Transformer, dict]:
    """Rebuild the model from directory/model.safetensors; returns (model in eval mode, metadata).

    kind: the class to rebuild, Transformer or Critic (`load_critic`).
    """
    meta, tensors = read_checkpoint(directory)
    cfg = ModelConfig.from_dict(meta["model_config"])
    if attn_impl is not None:
        cfg.attn_impl = attn_impl
    model = kind(cfg)
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(tensors), set(tensors) - set(expected)
    if missing or unexpected:
        raise ValueError(f"{directory}/{WEIGHTS_FILE}: tensors do not match the config: "
                         f"missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    for name, t in tensors.items():
        if t.shape != expected[name].shape:
            raise ValueError(f"{directory}/{WEIGHTS_FILE}: tensor {name} has shape {tuple(t.shape)}, "
                             f"the config needs {tuple(expected[name].shape)}")
    model.load_state_dict(tensors)
    return model.to(device).eval(), meta


def load_critic(directory: str, device="cpu") -> tuple[Critic, dict]:
    """A Critic saved by save_checkpoint (train.py writes one beside a PPO policy); (critic in eval mode, metadata)."""
    return load_checkpoint(directory, device, kind=Critic)


def load_scorer(directory: str, policy: Transformer, flag: str) -> Critic:
    """A scalar-head model saved in `directory` that will score `policy`'s completions (stage 4's reward model,
    verifier.py's verifier): frozen, in eval mode, on the policy's device; a ValueError naming `flag` if it cannot
    (another vocabulary, or fewer positions than the policy's sequences)."""
    model, _ = load_critic(directory, policy.tok_emb.weight.device)
    if model.cfg.vocab_size != policy.cfg.vocab_size or model.cfg.max_seq_len < policy.cfg.max_seq_len:
        raise ValueError(f"{flag} {directory}: vocabulary {model.cfg.vocab_size} and {model.cfg.max_seq_len} "
                         f"positions, the policy has {policy.cfg.vocab_size} and {policy.cfg.max_seq_len}: train it from "
                         "this run's checkpoint")
    return model.requires_grad_(False).eval()
