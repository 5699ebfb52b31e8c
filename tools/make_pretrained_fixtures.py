"""Write tests/fixtures/pretrained/{llama,qwen2}/: two tiny random Hugging Face checkpoints and what
transformers computes with them, the reference that tests/test_pretrained.py holds pretrained.py to.

Run once, in a throwaway environment (the project itself never imports transformers):

    python3 -m venv /tmp/hf && /tmp/hf/bin/pip install torch==2.13.0 transformers
    /tmp/hf/bin/python tools/make_pretrained_fixtures.py

(torch is pinned to the CPU build the project is tested with; an unpinned torch may download a CUDA build of
several GB.) The committed fixture was made with transformers 5.24.0 and torch 2.13.0; the versions are written
into each reference file.

Each folder is laid out as Hugging Face ships a model:
  config.json, generation_config.json     written by save_pretrained
  model.safetensors                       the weights, in bfloat16 as real checkpoints are
  tokenizer.json, tokenizer_config.json   a tiny byte-level BPE with the family's special tokens
                                          (and chat_template.jinja, where transformers writes the template apart)
  reference.safetensors                   inputs and what transformers computed from them, all float32/int64:
      single_ids (1, T), single_logits (1, T, V)                  one unpadded row
      batch_ids, batch_mask (B, T), batch_logits (B, T, V)        left-padded rows: attention_mask, and
                                                                  position_ids = cumsum(mask) - 1 clamped at 0,
                                                                  the positions model.py derives from `valid`
      gen_ids, gen_mask (B, P), gen_tokens (B, N)                 HF's greedy generate() on left-padded prompts,
                                                                  the N new tokens (pad_id after a row's stop id)
    and as JSON in the metadata key "reference": stop_id, pad_id (for the generation), max_new_tokens, the chat
    strings that transformers' apply_chat_template renders from the template (chat_user, chat_system: the
    question and system text in chat_question / chat_system_text), and the versions.
At the end, each model is loaded with pretrained.py and its largest logit difference printed (--no-compare skips
this, for a fixture made before pretrained.py works).

The two models:
  llama   LlamaForCausalLM: 4 query heads, 2 key/value heads (grouped-query attention), width 64, 2 layers,
          SwiGLU width 160, untied LM head, rope_theta 50000, Llama 3's special tokens.
  qwen2   Qwen2ForCausalLM: the same shape with width 48 and SwiGLU width 96, q/k/v biases, the LM head tied
          to the embedding, rope_theta 1e6, a model vocabulary larger than the tokenizer's (as Qwen2's), ChatML.
The weights are drawn wider than transformers' default init (std 0.02 gives near-uniform logits, where a greedy
token could flip on rounding), every RMSNorm gain and q/k/v bias is random and non-zero, so that a swapped norm or
a dropped bias changes the logits. The script checks that the greedy choices win by a clear margin.
"""

from __future__ import annotations

import json
import os
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

try:  # only here: the project and its tests never import transformers
    import transformers
    from transformers import (LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config,
                              Qwen2ForCausalLM)
except ImportError:
    raise SystemExit("this script needs transformers: see its docstring for the one-off environment") from None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "pretrained")

TEXT = [  # what the tiny tokenizers are trained on
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "How many clips did Natalia sell altogether in April and May?",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting.",
    "What is 347*6+125-89? Think step by step, then give the answer.",
    "The answer is 72. <think> 48/2 = 24, 48+24 = 72 </think>",
    "System: You are a helpful assistant.\n\nUser: What is 12+3?\nAssistant: 15",  # a newline, as chats have
]
QUESTION = "What is 12+3?"
SYSTEM = "Answer with a number."

QWEN2_TEMPLATE = (  # Qwen2-Instruct's chat template: a default system line when the messages bring none
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
LLAMA3_TEMPLATE = (  # Llama 3 Instruct's chat template
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")


def tiny_tokenizer(n_merged: int, specials: list[str], bos: str | None) -> Tokenizer:
    """A byte-level BPE of n_merged tokens trained on TEXT (only the bytes TEXT uses, to stay small), then the
    special tokens appended after them, as Llama 3 and Qwen2 number theirs; Llama 3's prepends its BOS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=n_merged, show_progress=False))
    tok.add_special_tokens(specials)
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    return tok


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights N(0, 0.2^2), RMSNorm gains 1 + N(0, 0.2^2), biases N(0, 0.5^2): logits with clear winners."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.5 * noise)
            else:
                p.copy_(0.2 * noise)


def left_padded(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(map(len, rows))
    ids = torch.tensor([[pad_id] * (T - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)  # model.positions_from_valid


def margin(logits: torch.Tensor) -> float:
    """The smallest gap between the best and the second-best logit, over the rows of (B, V)."""
    top = logits.topk(2, dim=-1).values
    return float((top[..., 0] - top[..., 1]).min())


def make(name: str, model_cls, config, tok: Tokenizer, tok_kwargs: dict, generation: dict, seed: int) -> None:
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed)
    model = model_cls(config)
    randomise(model, seed)
    model.generation_config.update(**generation)
    model.to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)  # real checkpoints ship bf16
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, **tok_kwargs)
    hf_tok.save_pretrained(folder)

    # the reference: the saved checkpoint read back by transformers itself, in float32
    model = model_cls.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    enc = lambda text: tok.encode(text, add_special_tokens=False).ids
    pad = generation.get("pad_token_id", config.eos_token_id if isinstance(config.eos_token_id, int) else
                         config.eos_token_id[0])
    ref, meta = {}, {}
    with torch.no_grad():
        single = torch.tensor([enc(TEXT[0])[:40]])  # 40 positions, so RoPE turns far
        ref["single_ids"], ref["single_logits"] = single, model(single).logits
        batch_ids, batch_mask = left_padded([enc(TEXT[1])[:12], enc(TEXT[2])[:5], enc(TEXT[3])[:9]], pad)
        out = model(batch_ids, attention_mask=batch_mask, position_ids=positions(batch_mask)).logits
        ref["batch_ids"], ref["batch_mask"], ref["batch_logits"] = batch_ids, batch_mask, out

        # greedy decoding written out (a full forward pass per token, no cache): the first row's tokens give a
        # stop id, one it emits on the way and not before; then transformers' own generate(), KV-cached, stops there
        gen_ids, gen_mask = left_padded([enc(QUESTION), enc(TEXT[4])[:6], enc("Weng earns")], pad)
        n_new, seqs, seq_mask, gap = 12, gen_ids, gen_mask, float("inf")
        for _ in range(n_new):
            last = model(seqs, attention_mask=seq_mask, position_ids=positions(seq_mask)).logits[:, -1]
            gap = min(gap, margin(last))  # every greedy choice must win clearly, or rounding could flip it
            seqs = torch.cat([seqs, last.argmax(-1, keepdim=True)], 1)
            seq_mask = torch.cat([seq_mask, torch.ones_like(seq_mask[:, :1])], 1)
        assert gap > 1e-3, f"{name}: a greedy choice wins by only {gap:.2g}; pick another seed"
        row0 = seqs[0, gen_ids.size(1):].tolist()
        stop = next(t for i, t in enumerate(row0) if i >= 3 and t not in row0[:i])
        tokens = model.generate(gen_ids, attention_mask=gen_mask, do_sample=False, max_new_tokens=n_new,
                                eos_token_id=stop, pad_token_id=pad)[:, gen_ids.size(1):]
        tokens = torch.nn.functional.pad(tokens, (0, n_new - tokens.size(1)), value=pad)
        for row, free in zip(tokens.tolist(), seqs[:, gen_ids.size(1):].tolist()):  # the same, up to the stop
            n = row.index(stop) + 1 if stop in row else n_new
            assert row[:n] == free[:n], f"{name}: generate() {row} differs from greedy decoding {free}"
        ref["gen_ids"], ref["gen_mask"], ref["gen_tokens"] = gen_ids, gen_mask, tokens

    chat = lambda msgs: hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    meta.update(stop_id=stop, pad_id=pad, max_new_tokens=n_new, chat_question=QUESTION, chat_system_text=SYSTEM,
                chat_user=chat([{"role": "user", "content": QUESTION}]),
                chat_system=chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]),
                versions={"transformers": transformers.__version__, "torch": torch.__version__})
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(folder, "reference.safetensors"),
              metadata={"reference": json.dumps(meta, sort_keys=True)})  # one key: safetensors keeps no key order
    print(f"{name}: {folder}, {sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)):,} bytes, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters, smallest greedy margin {gap:.3f}, "
          f"stop id {stop}, generated {tokens.tolist()}")
    if "--no-compare" not in sys.argv:
        compare_with_ours(folder, ref, stop, pad)


def compare_with_ours(folder: str, ref: dict, stop: int, pad: int) -> None:
    """Print how far pretrained.py's model is from the reference (the tests hold it to 1e-5)."""
    sys.path.insert(0, ROOT)
    from model import generate
    from pretrained import load_pretrained
    ours, _, _ = load_pretrained(folder)
    with torch.no_grad():
        d1 = (ours(ref["single_ids"]) - ref["single_logits"]).abs().max()
        valid = ref["batch_mask"].bool()
        d2 = (ours(ref["batch_ids"], valid=valid) - ref["batch_logits"])[valid].abs().max()
    prompts = [row[m.bool()].tolist() for row, m in zip(ref["gen_ids"], ref["gen_mask"])]
    got = generate(ours, prompts, ref["gen_tokens"].size(1), stop, pad, temperature=0)
    same = all(got.ids[i][got.mask[i]].tolist() == ref["gen_tokens"][i][:int(got.mask[i].sum())].tolist()
               for i in range(len(prompts)))
    print(f"  ours: max |logit difference| {float(d1):.2e} (one row), {float(d2):.2e} (padded batch); "
          f"greedy tokens {'the same' if same else 'DIFFERENT'}")


def main() -> None:
    llama_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                      "<|eot_id|>"]
    tok = tiny_tokenizer(120, llama_specials, bos="<|begin_of_text|>")
    sid = {s: tok.token_to_id(s) for s in llama_specials}
    config = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_theta=50000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         bos_token_id=sid["<|begin_of_text|>"], eos_token_id=sid["<|end_of_text|>"])
    make("llama", LlamaForCausalLM, config, tok,
         dict(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", chat_template=LLAMA3_TEMPLATE),
         dict(eos_token_id=[sid["<|end_of_text|>"], sid["<|eot_id|>"]], bos_token_id=sid["<|begin_of_text|>"]),
         seed=0)

    qwen_specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = tiny_tokenizer(100, qwen_specials, bos=None)
    sid = {s: tok.token_to_id(s) for s in qwen_specials}
    config = Qwen2Config(vocab_size=tok.get_vocab_size() + 8, hidden_size=48, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         use_sliding_window=False, bos_token_id=sid["<|endoftext|>"], eos_token_id=sid["<|im_end|>"])
    make("qwen2", Qwen2ForCausalLM, config, tok,
         dict(eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=QWEN2_TEMPLATE),
         dict(eos_token_id=[sid["<|im_end|>"], sid["<|endoftext|>"]], pad_token_id=sid["<|endoftext|>"],
              bos_token_id=sid["<|endoftext|>"]),
         seed=1)


if __name__ == "__main__":
    main()
