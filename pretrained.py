"""Pretrained weights: a Llama- or Qwen2-architecture model, as Hugging Face ships it, in model.py's Transformer.

    model = load_pretrained("path/to/Qwen2.5-0.5B-Instruct")[0]     # a folder on disk; nothing is downloaded

The folder is what a Hugging Face model repository holds: config.json, the weights (model.safetensors, or shards
model-0000x-of-0000y.safetensors listed in model.safetensors.index.json), tokenizer.json, and optionally
tokenizer_config.json, chat_template.jinja and generation_config.json. transformers is never imported.

    load_pretrained     the folder -> (Transformer in eval mode, tokenizers.Tokenizer, info): info holds
                        model_type, eos_id / eos_ids, pad_id, bos_id, chat_format and default_system
    is_huggingface_folder  a Hugging Face folder (config.json), not a checkpoint written here: what train.py's
                        --init_from tells apart (checkpoint.load_start)
    model_config        config.json -> ModelConfig, refusing (ValueError naming the file and the key) every
                        setting model.py does not implement
    read_weights        the safetensors file or shards -> {Hugging Face name: tensor}
    hf_shapes           the Hugging Face tensor names and shapes a config needs
    hf_to_ours          Hugging Face tensors -> our state dict: q, k, v (and their biases) fused into one qkv
    chat_prompt         a question (and a system text) in the model's chat format, written out by hand: ChatML
                        (Qwen2), Llama 3, or plain text for a base model without chat tokens

The name mapping, grouped-query attention, the q/k/v biases, the tied or untied head, what is refused, and why
the chat template (Jinja) is read for one line but never run: docs/design.md ("Pretrained weights").
Tests: python -m pytest -q tests/test_pretrained.py
"""

from __future__ import annotations

import json
import os
import re

import torch
from safetensors import SafetensorError, safe_open
from tokenizers import Tokenizer

from model import ModelConfig, Transformer

CONFIG_FILE, GENERATION_FILE, TOKENIZER_FILE = "config.json", "generation_config.json", "tokenizer.json"
TOKENIZER_CONFIG_FILE, TEMPLATE_FILE = "tokenizer_config.json", "chat_template.jinja"
WEIGHTS_FILE, INDEX_FILE = "model.safetensors", "model.safetensors.index.json"
MODEL_TYPES = ("llama", "qwen2")
DEFAULT_MAX_SEQ_LEN = 4096  # max_seq_len defaults to min(max_position_embeddings, this): the RoPE tables are built
                            # for that many positions, and this project's sequences are far shorter

# Per layer: Hugging Face's name after "model.layers.N." -> ours after "blocks.N." (q, k, v are fused: hf_to_ours)
LAYER_NAMES = {
    "input_layernorm.weight": "norm1.weight",
    "self_attn.o_proj.weight": "attn.proj.weight",
    "post_attention_layernorm.weight": "norm2.weight",
    "mlp.gate_proj.weight": "mlp.gate.weight",
    "mlp.up_proj.weight": "mlp.up.weight",
    "mlp.down_proj.weight": "mlp.down.weight",
}
# The chat formats, told apart by the special tokens the tokenizer has; the token that ends a turn
CHAT_TOKENS = {"chatml": ("<|im_start|>", "<|im_end|>"),
               "llama3": ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")}
END_OF_TURN = {"chatml": "<|im_end|>", "llama3": "<|eot_id|>"}


def is_huggingface_folder(directory: str) -> bool:
    """Whether `directory` is a Hugging Face model folder (it has a config.json) rather than a checkpoint written by
    model.save_checkpoint (whose model.safetensors holds its config in its metadata, beside no config.json)."""
    return bool(directory) and os.path.isfile(os.path.join(directory, CONFIG_FILE))


# ---------------------------------------------------------------------------------------------
# config.json -> ModelConfig
# ---------------------------------------------------------------------------------------------
def read_json(path: str, required: bool = True) -> dict | None:
    """The JSON object in `path`; None if it is missing and not required."""
    if not os.path.isfile(path):
        if required:
            raise FileNotFoundError(f"no {os.path.basename(path)} at {path}")
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a JSON object was expected, not {type(data).__name__}")
    return data


def model_config(config: dict, path: str, max_seq_len: int | None = None) -> ModelConfig:
    """The ModelConfig of a Hugging Face config.json (read from `path`, named in every error).

    Refused, as model.py does not implement them: a model_type other than llama / qwen2, RoPE scaling, a head
    width other than hidden_size / num_attention_heads, an activation other than silu, Llama's attention or MLP
    biases, Qwen2's sliding-window attention. max_seq_len (the positions the RoPE tables cover) defaults to
    min(max_position_embeddings, 4096) and may not exceed max_position_embeddings.
    """
    def get(key, kind=int, default=None):
        value = config.get(key, default)
        if value is None:
            raise ValueError(f"{path}: no {key!r}, which the model needs")
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            what = {int: "a whole number", bool: "true or false"}.get(kind, "a number")
            raise ValueError(f"{path}: {key}={value!r} should be {what}")
        return value

    def refuse(key, allowed):
        raise ValueError(f"{path}: {key}={config.get(key)!r} is not supported; allowed: {allowed}")

    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        refuse("model_type", ", ".join(repr(t) for t in MODEL_TYPES))
    if config.get("hidden_act", "silu") != "silu":
        refuse("hidden_act", "'silu' (SwiGLU)")
    if config.get("rope_scaling") is not None:
        refuse("rope_scaling", "null (plain RoPE)")
    rope = config.get("rope_parameters")  # newer transformers write rope_theta and the RoPE type in here
    if rope is not None and (not isinstance(rope, dict) or rope.get("rope_type", "default") != "default"
                             or set(rope) - {"rope_type", "rope_theta"}):
        refuse("rope_parameters", "{'rope_type': 'default', 'rope_theta': ...} (plain RoPE)")
    rope_theta = (rope or {}).get("rope_theta", config.get("rope_theta", 10000.0))  # 10000: transformers' default
    if not isinstance(rope_theta, (int, float)) or isinstance(rope_theta, bool) or rope_theta <= 0:
        raise ValueError(f"{path}: rope_theta={rope_theta!r} is not a positive number")

    n_embd, n_head = get("hidden_size"), get("num_attention_heads")
    if n_head < 1 or n_embd % n_head:
        raise ValueError(f"{path}: hidden_size={n_embd} does not split into num_attention_heads={n_head} heads")
    if config.get("head_dim") is not None and config["head_dim"] != n_embd // n_head:
        refuse("head_dim", f"null or hidden_size / num_attention_heads = {n_embd // n_head}")
    if model_type == "llama":
        for key in ("attention_bias", "mlp_bias"):
            if config.get(key, False):
                refuse(key, "false (Llama without biases; Qwen2's q/k/v biases come with model_type 'qwen2')")
    if model_type == "qwen2":
        if config.get("use_sliding_window", False):
            refuse("use_sliding_window", "false (full attention in every layer)")
        if any(t != "full_attention" for t in config.get("layer_types") or []):
            refuse("layer_types", "'full_attention' in every layer")

    max_positions = get("max_position_embeddings")
    if max_seq_len is None:
        max_seq_len = min(max_positions, DEFAULT_MAX_SEQ_LEN)
    elif not 1 <= max_seq_len <= max_positions:
        raise ValueError(f"max_seq_len={max_seq_len}: {path} has max_position_embeddings={max_positions}, "
                         f"so it must be between 1 and {max_positions}")
    try:
        return ModelConfig(
            vocab_size=get("vocab_size"), n_layer=get("num_hidden_layers"), n_head=n_head, n_embd=n_embd,
            max_seq_len=max_seq_len, rope_theta=float(rope_theta),
            norm_eps=float(get("rms_norm_eps", (int, float), 1e-6)),  # 1e-6: transformers' default for both
            n_kv_head=get("num_key_value_heads", int, n_head),
            qkv_bias=model_type == "qwen2",  # Qwen2 always has q, k, v biases (and none elsewhere)
            mlp_hidden=get("intermediate_size"),
            tied_head=get("tie_word_embeddings", bool, False))  # False: both families' default in transformers
    except ValueError as e:  # ModelConfig's own checks (heads of odd width, kv heads that do not divide)
        raise ValueError(f"{path}: {e}") from None


# ---------------------------------------------------------------------------------------------
# The weights
# ---------------------------------------------------------------------------------------------
def read_weights(directory: str, dtype: torch.dtype = torch.float32
                 ) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """({Hugging Face name: tensor in `dtype`}, {name: the file it came from}, the file that lists the weights)
    from model.safetensors, or from the shards that model.safetensors.index.json lists."""
    single, index = os.path.join(directory, WEIGHTS_FILE), os.path.join(directory, INDEX_FILE)
    if os.path.isfile(single):
        files, weight_map, source = [single], None, single
    elif os.path.isfile(index):
        weight_map, source = read_json(index).get("weight_map"), index
        if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
            raise ValueError(f"{index}: no 'weight_map' of tensor name -> shard file")
        files = [os.path.join(directory, f) for f in sorted(set(weight_map.values()))]
        for f in files:
            if not os.path.isfile(f):
                raise FileNotFoundError(f"no shard {f}, which {index} lists")
    else:
        raise FileNotFoundError(f"no {WEIGHTS_FILE} or {INDEX_FILE} in {directory} (only safetensors weights are "
                                "read: a pytorch_model.bin is a pickle, and loading one can run code)")
    tensors, where = {}, {}
    for path in files:
        try:
            with safe_open(path, framework="pt") as f:
                for name in f.keys():
                    if name in tensors:
                        raise ValueError(f"{path}: tensor {name} is also in {where[name]}")
                    tensors[name], where[name] = f.get_tensor(name).to(dtype), path
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{path}: not a readable safetensors file ({e})") from None
    for name, file in (weight_map or {}).items():
        if where.get(name) != os.path.join(directory, file):
            raise ValueError(f"{index}: tensor {name} is listed in {file}, but that file does not hold it")
    return tensors, where, source


def hf_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor a Hugging Face Llama/Qwen2 checkpoint of this config holds, with its shape
    (lm_head.weight only with an untied head; biases only with qkv_bias)."""
    D, V, F, kv = cfg.n_embd, cfg.vocab_size, cfg.mlp_width, cfg.kv_heads * cfg.head_dim  # kv: Hkv Dh
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    if not cfg.tied_head:
        shapes["lm_head.weight"] = (V, D)
    for i in range(cfg.n_layer):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (D,), p + "post_attention_layernorm.weight": (D,),
                       p + "self_attn.q_proj.weight": (D, D), p + "self_attn.k_proj.weight": (kv, D),
                       p + "self_attn.v_proj.weight": (kv, D), p + "self_attn.o_proj.weight": (D, D),
                       p + "mlp.gate_proj.weight": (F, D), p + "mlp.up_proj.weight": (F, D),
                       p + "mlp.down_proj.weight": (D, F)})
        if cfg.qkv_bias:
            shapes.update({p + "self_attn.q_proj.bias": (D,), p + "self_attn.k_proj.bias": (kv,),
                           p + "self_attn.v_proj.bias": (kv,)})
    return shapes


def check_tensors(tensors: dict[str, torch.Tensor], where: dict[str, str], source: str, cfg: ModelConfig):
    """A ValueError naming the first missing, unexpected or wrongly shaped tensor, and its file (`source`, the
    weights file or the shard index, for a missing one)."""
    expected = hf_shapes(cfg)
    ignored = {n for n in tensors if n.endswith("rotary_emb.inv_freq")}  # RoPE frequencies some old checkpoints
    if cfg.tied_head:                                                    # carry; model.py computes its own
        ignored.add("lm_head.weight")  # a tied checkpoint may ship a copy of the embedding; the embedding is used
    missing = sorted(set(expected) - set(tensors), key=_layer_order)
    unexpected = sorted(set(tensors) - set(expected) - ignored, key=_layer_order)
    if missing:
        raise ValueError(f"{source}: missing tensor {missing[0]}" + (f" (and {len(missing) - 1} more)"
                         if len(missing) > 1 else "") + " that config.json needs")
    if unexpected:
        raise ValueError(f"{where[unexpected[0]]}: unexpected tensor {unexpected[0]}" +
                         (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else "") +
                         ": model.py has no place for it (a bias, a layer or a head config.json does not describe)")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"{where[name]}: tensor {name} has shape {tuple(tensors[name].shape)}, "
                             f"config.json needs {shape}")


def _layer_order(name: str):
    """Sort key: model.layers.2.x before model.layers.10.x."""
    return [int(part) if part.isdigit() else part for part in name.split(".")]


def hf_to_ours(tensors: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Our Transformer's state dict from Hugging Face's tensors (checked by check_tensors first).

    One rename per tensor (LAYER_NAMES), except attention's q, k, v projections: ours is one fused matrix, rows
    [q (D) | k (Hkv Dh) | v (Hkv Dh)], so the three are stacked in that order (and their biases likewise). Rows
    keep their order: head h is rows h Dh .. (h+1) Dh - 1 in both, and both rotate the pair (i, i + Dh/2).
    """
    ours = {"tok_emb.weight": tensors["model.embed_tokens.weight"], "norm.weight": tensors["model.norm.weight"]}
    if not cfg.tied_head:
        ours["lm_head.weight"] = tensors["lm_head.weight"]
    for i in range(cfg.n_layer):
        hf, me = f"model.layers.{i}.", f"blocks.{i}."
        for theirs, mine in LAYER_NAMES.items():
            ours[me + mine] = tensors[hf + theirs]
        ours[me + "attn.qkv.weight"] = torch.cat([tensors[hf + f"self_attn.{x}_proj.weight"] for x in "qkv"])
        if cfg.qkv_bias:
            ours[me + "attn.qkv.bias"] = torch.cat([tensors[hf + f"self_attn.{x}_proj.bias"] for x in "qkv"])
    return ours


# ---------------------------------------------------------------------------------------------
# The tokenizer, the special ids, the chat format
# ---------------------------------------------------------------------------------------------
def token_ids(value, path: str, key: str, vocab_size: int) -> list[int]:
    """An id or a list of ids from a config file (eos_token_id may be either), checked against the vocabulary."""
    ids = [value] if isinstance(value, int) else value
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError(f"{path}: {key}={value!r} is not a token id or a list of token ids")
    bad = [i for i in ids if not 0 <= i < vocab_size]
    if bad:
        raise ValueError(f"{path}: {key}={value!r}: {bad[0]} is outside the vocabulary of {vocab_size}")
    return ids


def special_ids(key: str, configs: list[tuple[str, dict]], vocab_size: int) -> list[int]:
    """The ids of `key` in the first of the (path, config) files that sets it; [] if none does."""
    for path, config in configs:
        if config.get(key) is not None:
            return token_ids(config[key], path, key, vocab_size)
    return []


def chat_template(directory: str) -> str | None:
    """The chat template's text: tokenizer_config.json's chat_template (a string, or a list of named templates:
    the 'default' one), else chat_template.jinja (where newer transformers write it); None if there is none."""
    tok_config = read_json(os.path.join(directory, TOKENIZER_CONFIG_FILE), required=False) or {}
    template = tok_config.get("chat_template")
    if isinstance(template, list):
        template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"),
                        None)
    if isinstance(template, str):
        return template
    path = os.path.join(directory, TEMPLATE_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return f.read()
    return None


def default_system(template: str | None) -> str | None:
    """The system line a ChatML template writes when the messages bring none: the literal text between
    `<|im_start|>system\\n` and `<|im_end|>` in the template ('You are a helpful assistant.' in Qwen2's), or None.
    Only a literal line counts: a template that writes the caller's text there (a variable, no quotes) has none.

    >>> default_system("{{ '<|im_start|>system\\\\nYou are a helpful assistant.<|im_end|>\\\\n' }}")
    'You are a helpful assistant.'
    >>> default_system("{{ '<|im_start|>system\\\\n' + messages[0]['content'] + '<|im_end|>' }}") is None
    True
    """
    if template is None:
        return None
    # the newline is written \\n inside the template's string literal (or, rarely, as a real newline)
    match = re.search(r"<\|im_start\|>system(?:\\n|\n)([^<>{}'\"\\]+)<\|im_end\|>", template)
    return match.group(1) if match else None


def chat_format(tokenizer: Tokenizer) -> str:
    """'chatml' (Qwen2), 'llama3', or 'none' (a base model): from the special tokens the tokenizer has."""
    for name, tokens in CHAT_TOKENS.items():
        if all(tokenizer.token_to_id(t) is not None for t in tokens):
            return name
    return "none"


def chat_prompt(info: dict, question: str, system: str | None = None) -> str:
    """The text that asks `question` in the chat format of info["chat_format"] and opens the model's answer.

    Encode it with tokenizer.encode(text, add_special_tokens=False): it already holds the special tokens (Llama 3's
    tokenizer would otherwise add a second <|begin_of_text|>). system: the system text; None gives ChatML the
    template's default line (info["default_system"]; no system turn if there is none) and Llama 3 no system turn.
    The three formats, each one string ([...] only with a system text; the line breaks below are not in it):
    - chatml: [<|im_start|>system\\n{system}<|im_end|>\\n]<|im_start|>user\\n{question}<|im_end|>\\n
              <|im_start|>assistant\\n
    - llama3: <|begin_of_text|>[<|start_header_id|>system<|end_header_id|>\\n\\n{system}<|eot_id|>]
              <|start_header_id|>user<|end_header_id|>\\n\\n{question}<|eot_id|>
              <|start_header_id|>assistant<|end_header_id|>\\n\\n
              (the texts stripped, as Llama 3's template does; Llama 3.1's date lines are not written)
    - none:   the question as it is, after the system text and a blank line if one is given (a base model trained
              with a BOS token in front, as Llama 2, wants info["bos_id"] before the ids)
    These are what Qwen2-Instruct's and Llama 3 Instruct's templates render for one user turn (tested against
    transformers' rendering in tests/test_pretrained.py); the template itself is never run
    (design: Chat prompts written by hand).
    """
    kind = info.get("chat_format")
    if kind == "chatml":
        system = info.get("default_system") if system is None else system
        head = "" if system is None else f"<|im_start|>system\n{system}<|im_end|>\n"
        return f"{head}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    if kind == "llama3":
        turn = lambda role, text: f"<|start_header_id|>{role}<|end_header_id|>\n\n{text.strip()}<|eot_id|>"
        head = "" if system is None else turn("system", system)
        return f"<|begin_of_text|>{head}{turn('user', question)}<|start_header_id|>assistant<|end_header_id|>\n\n"
    if kind == "none":
        return question if system is None else f"{system}\n\n{question}"
    raise ValueError(f"chat_format={kind!r}: allowed values are 'chatml', 'llama3', 'none'")


# ---------------------------------------------------------------------------------------------
# Everything together
# ---------------------------------------------------------------------------------------------
def load_pretrained(directory: str, device="cpu", max_seq_len: int | None = None,
                    dtype: torch.dtype = torch.float32) -> tuple[Transformer, Tokenizer, dict]:
    """(model in eval mode, tokenizer, info) from a Hugging Face Llama or Qwen2 folder on disk.

    max_seq_len: the positions the model covers (prompt + completion); None: min(max_position_embeddings, 4096).
    dtype: the weights' dtype here, float32 by default (a bfloat16 checkpoint is converted).
    info: model_type; eos_ids (generation_config.json's eos_token_id, else config.json's; an int or a list there)
    and eos_id, the one to stop generate() at (the chat format's end-of-turn token if it is one of them, else the
    first); pad_id (pad_token_id, else eos_id); bos_id (or None); chat_format ('chatml', 'llama3' or 'none') and
    default_system (ChatML's default system line, or None), for chat_prompt.
    """
    config_path = os.path.join(directory, CONFIG_FILE)
    config = read_json(config_path)
    cfg = model_config(config, config_path, max_seq_len)

    tok_path = os.path.join(directory, TOKENIZER_FILE)  # the tokenizer before the weights: a mistake here is cheap
    if not os.path.isfile(tok_path):
        raise FileNotFoundError(f"no {TOKENIZER_FILE} at {tok_path}")
    try:
        tokenizer = Tokenizer.from_file(tok_path)
    except Exception as e:  # the tokenizers library raises its own exception type for a malformed file
        raise ValueError(f"{tok_path}: not a readable tokenizer ({e})") from None
    if tokenizer.get_vocab_size() > cfg.vocab_size:
        raise ValueError(f"{tok_path}: {tokenizer.get_vocab_size()} tokens, more than the {cfg.vocab_size} rows of the "
                         f"embedding ({config_path}: vocab_size)")

    tensors, where, source = read_weights(directory, dtype)
    check_tensors(tensors, where, source, cfg)
    model = Transformer(cfg).to(dtype)
    model.load_state_dict(hf_to_ours(tensors, cfg))
    del tensors

    kind = chat_format(tokenizer)
    generation_path = os.path.join(directory, GENERATION_FILE)
    configs = [(generation_path, read_json(generation_path, required=False) or {}), (config_path, config)]
    eos_ids = special_ids("eos_token_id", configs, cfg.vocab_size)
    if not eos_ids:
        raise ValueError(f"{config_path}: no eos_token_id (nor in {generation_path}): generation needs a stop token")
    end_of_turn = tokenizer.token_to_id(END_OF_TURN[kind]) if kind in END_OF_TURN else None
    eos_id = end_of_turn if end_of_turn in eos_ids else eos_ids[0]
    pad = special_ids("pad_token_id", configs, cfg.vocab_size)
    bos = special_ids("bos_token_id", configs, cfg.vocab_size)
    info = {"model_type": config["model_type"], "eos_id": eos_id, "eos_ids": eos_ids,
            "pad_id": pad[0] if pad else eos_id, "bos_id": bos[0] if bos else None, "chat_format": kind,
            "default_system": default_system(chat_template(directory)) if kind == "chatml" else None}
    return model.to(device).eval(), tokenizer, info
