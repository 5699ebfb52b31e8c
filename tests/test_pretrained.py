"""Pretrained weights: our Transformer reproduces what transformers computes from a Llama and a Qwen2 checkpoint,
every setting model.py does not implement is refused by name, and the chat prompts are the families' own.

The reference is tests/fixtures/pretrained/{llama,qwen2}/, written once by tools/make_pretrained_fixtures.py with
transformers (never imported here): tiny random checkpoints in bfloat16, and in reference.safetensors the logits
and greedy tokens transformers computed from them in float32, and the chat strings its template rendered.
"""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from model import KVCache, ModelConfig, Transformer, generate, load_checkpoint, save_checkpoint
from pretrained import chat_prompt, load_pretrained

FIXTURES = Path(__file__).parent / "fixtures" / "pretrained"
NAMES = ("llama", "qwen2")
ATOL = 1e-5
DELETE = object()  # a config change that removes the key


def reference(name: str) -> tuple[dict[str, torch.Tensor], dict]:
    path = str(FIXTURES / name / "reference.safetensors")
    with safe_open(path, framework="pt") as f:
        meta = json.loads(f.metadata()["reference"])
    return load_file(path), meta


def with_config(tmp_path, name: str, **changes):
    """A copy of the fixture `name` in tmp_path with config.json changed (a DELETE value removes the key)."""
    folder = tmp_path / name
    shutil.copytree(FIXTURES / name, folder)
    config = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is DELETE:
            config.pop(key, None)
        else:
            config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def max_diff(model, ref) -> tuple[float, float]:
    """max |logit difference| to the reference: one row, and the real tokens of the left-padded batch."""
    with torch.no_grad():
        single = (model(ref["single_ids"]) - ref["single_logits"]).abs().max().item()
        valid = ref["batch_mask"].bool()
        batch = (model(ref["batch_ids"], valid=valid) - ref["batch_logits"])[valid].abs().max().item()
    return single, batch


# ---------------------------------------------------------------------------------------------
# The numbers: logits and greedy tokens against transformers
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_logits_equal_transformers_on_one_row_and_on_a_left_padded_batch(name):
    model, _, _ = load_pretrained(str(FIXTURES / name))
    ref, _ = reference(name)
    assert model.tok_emb.weight.dtype == torch.float32  # the bf16 checkpoint converted
    assert max(max_diff(model, ref)) <= ATOL
    # the hand-written reference attention too, not only sdpa
    manual = Transformer(dataclasses.replace(model.cfg, attn_impl="manual")).eval()
    manual.load_state_dict(model.state_dict())
    assert max(max_diff(manual, ref)) <= ATOL


@pytest.mark.parametrize("name", NAMES)
def test_kv_cached_greedy_generate_gives_the_tokens_of_transformers_generate(name):
    model, _, _ = load_pretrained(str(FIXTURES / name))
    ref, meta = reference(name)
    prompts = [ids[mask.bool()].tolist() for ids, mask in zip(ref["gen_ids"], ref["gen_mask"])]
    out = generate(model, prompts, meta["max_new_tokens"], eos_id=meta["stop_id"], pad_id=meta["pad_id"],
                   temperature=0)
    expected = ref["gen_tokens"][:, :out.ids.size(1)]
    assert out.ids.tolist() == expected.tolist()
    assert out.truncated.tolist() == [meta["stop_id"] not in row for row in expected.tolist()]
    assert not out.truncated.all()  # the fixture has a row that stops, so stopping is compared too


def test_the_fixture_would_catch_dropped_qwen2_biases_and_gqa_heads_in_the_wrong_order():
    ref, _ = reference("qwen2")
    model, _, _ = load_pretrained(str(FIXTURES / "qwen2"))
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.bias.zero_()
    assert min(max_diff(model, ref)) > 0.1
    # key/value head 0 serves query heads 0 and 1, head 1 serves 2 and 3; tiling [0, 1, 0, 1] instead is a bug
    model, _, _ = load_pretrained(str(FIXTURES / "llama"))
    ref, _ = reference("llama")
    D, Dh = model.cfg.n_embd, model.cfg.head_dim
    with torch.no_grad():
        for block in model.blocks:  # swap query heads 1 and 2 (their q rows, their o_proj columns): the same
            w, o = block.attn.qkv.weight, block.attn.proj.weight  # function as tiling the key/value heads
            rows = torch.arange(D + 2 * model.cfg.kv_heads * Dh)
            rows[Dh:2 * Dh], rows[2 * Dh:3 * Dh] = torch.arange(2 * Dh, 3 * Dh), torch.arange(Dh, 2 * Dh)
            w.copy_(w[rows])
            o.copy_(o[:, rows[:D]])
    assert min(max_diff(model, ref)) > 0.1


# ---------------------------------------------------------------------------------------------
# Config, ids, formats
# ---------------------------------------------------------------------------------------------
def test_the_config_and_the_info_of_both_fixtures():
    llama, tok, info = load_pretrained(str(FIXTURES / "llama"))
    ids = tok.token_to_id
    assert (llama.cfg.n_head, llama.cfg.n_kv_head, llama.cfg.n_embd, llama.cfg.mlp_hidden) == (4, 2, 64, 160)
    assert (llama.cfg.tied_head, llama.cfg.qkv_bias, llama.cfg.rope_theta) == (False, False, 5e4)
    assert llama.cfg.norm_eps == 1e-5
    assert llama.cfg.max_seq_len == 256  # min(max_position_embeddings, 4096)
    assert info == {"model_type": "llama", "eos_ids": [ids("<|end_of_text|>"), ids("<|eot_id|>")],
                    "eos_id": ids("<|eot_id|>"),  # the end of a turn, one of generation_config.json's eos ids
                    "pad_id": ids("<|eot_id|>"), "bos_id": ids("<|begin_of_text|>"), "chat_format": "llama3",
                    "default_system": None}
    qwen, tok, info = load_pretrained(str(FIXTURES / "qwen2"), max_seq_len=64)
    ids = tok.token_to_id
    assert (qwen.cfg.tied_head, qwen.cfg.qkv_bias, qwen.cfg.n_kv_head, qwen.cfg.max_seq_len) == (True, True, 2, 64)
    assert qwen.lm_head is None and "lm_head.weight" not in qwen.state_dict()
    assert qwen.cfg.vocab_size > tok.get_vocab_size()  # Qwen2's embedding has more rows than the tokenizer
    assert info == {"model_type": "qwen2", "eos_ids": [ids("<|im_end|>"), ids("<|endoftext|>")],
                    "eos_id": ids("<|im_end|>"), "pad_id": ids("<|endoftext|>"), "bos_id": ids("<|endoftext|>"),
                    "chat_format": "chatml", "default_system": "You are a helpful assistant."}


def test_without_generation_config_the_ids_come_from_config_json(tmp_path):
    folder = with_config(tmp_path, "llama")
    (folder / "generation_config.json").unlink()
    _, tok, info = load_pretrained(str(folder))
    eos = tok.token_to_id("<|end_of_text|>")  # config.json's eos_token_id, an int: <|eot_id|> is not among them
    assert (info["eos_ids"], info["eos_id"], info["pad_id"]) == ([eos], eos, eos)


def test_the_older_config_layout_loads_the_same_model(tmp_path):
    """rope_theta at the top, rope_scaling null, no head_dim or layer_types: config.json before transformers 5."""
    ref, _ = reference("qwen2")
    old = json.loads((FIXTURES / "qwen2" / "config.json").read_text())
    folder = with_config(tmp_path, "qwen2", rope_parameters=DELETE, layer_types=DELETE, rope_scaling=None,
                         rope_theta=old["rope_parameters"]["rope_theta"], sliding_window=32768)
    model, _, _ = load_pretrained(str(folder))
    assert model.cfg.rope_theta == 1e6 and max(max_diff(model, ref)) <= ATOL


def test_a_chat_template_in_tokenizer_config_json_gives_the_same_default_system_line(tmp_path):
    folder = with_config(tmp_path, "qwen2")
    template = (folder / "chat_template.jinja").read_text()
    (folder / "chat_template.jinja").unlink()
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    for value in (template, [{"name": "tool_use", "template": "x"}, {"name": "default", "template": template}]):
        (folder / "tokenizer_config.json").write_text(json.dumps({**tok_config, "chat_template": value}))
        assert load_pretrained(str(folder))[2]["default_system"] == "You are a helpful assistant."
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))  # no template at all: no system turn
    info = load_pretrained(str(folder))[2]
    assert info["default_system"] is None
    assert chat_prompt(info, "Hi?") == "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"


def test_sharded_weights_load_the_same_model(tmp_path):
    ref, _ = reference("llama")
    folder = with_config(tmp_path, "llama")
    tensors = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[:8], "model-00002-of-00002.safetensors": names[8:]}
    for file, part in shards.items():
        save_file({n: tensors[n] for n in part}, folder / file)
    index = {"metadata": {}, "weight_map": {n: f for f, part in shards.items() for n in part}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    model, _, _ = load_pretrained(str(folder))
    assert max(max_diff(model, ref)) <= ATOL
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00002.safetensors, which .*index.json lists"):
        load_pretrained(str(folder))


def test_bfloat16_on_request_keeps_the_checkpoints_values():
    model, _, _ = load_pretrained(str(FIXTURES / "llama"), dtype=torch.bfloat16)
    stored = load_file(FIXTURES / "llama" / "model.safetensors")["model.embed_tokens.weight"]
    assert model.tok_emb.weight.dtype == torch.bfloat16 and torch.equal(model.tok_emb.weight, stored)


# ---------------------------------------------------------------------------------------------
# Refusals: each names the file and the key (or the tensor)
# ---------------------------------------------------------------------------------------------
REFUSED = [
    ("llama", dict(model_type="mistral"),
     "config.json: model_type='mistral' is not supported; allowed: 'llama', 'qwen2'"),
    ("llama", dict(rope_scaling={"rope_type": "llama3", "factor": 8.0}), "config.json: rope_scaling=.* allowed: null"),
    ("qwen2", dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6}),
     "config.json: rope_parameters=.*'yarn'.* is not supported"),
    ("llama", dict(head_dim=32), "config.json: head_dim=32 is not supported; allowed: null or .* = 16"),
    ("llama", dict(hidden_act="gelu"), "config.json: hidden_act='gelu' is not supported; allowed: 'silu'"),
    ("llama", dict(attention_bias=True), "config.json: attention_bias=True is not supported"),
    ("llama", dict(mlp_bias=True), "config.json: mlp_bias=True is not supported"),
    ("qwen2", dict(use_sliding_window=True), "config.json: use_sliding_window=True is not supported"),
    ("qwen2", dict(layer_types=["full_attention", "sliding_attention"]),
     "config.json: layer_types=.* is not supported"),
    ("llama", dict(num_key_value_heads=3), "config.json: n_kv_head=3: n_head=4 must be a whole multiple of it"),
    ("llama", dict(hidden_size=DELETE), "config.json: no 'hidden_size'"),
    ("llama", dict(num_hidden_layers="2"), "config.json: num_hidden_layers='2' should be a whole number"),
    ("llama", dict(intermediate_size=128),
     r"model.safetensors: tensor model.layers.0.mlp.gate_proj.weight has shape \(160, 64\), "
     r"config.json needs \(128, 64\)"),
    ("qwen2", dict(tie_word_embeddings=False),
     "model.safetensors: missing tensor lm_head.weight that config.json needs"),
    ("qwen2", dict(model_type="llama"),  # Qwen2's weights under a Llama config: the biases have no place
     r"model.safetensors: unexpected tensor model.layers.0.self_attn.k_proj.bias \(and 5 more\)"),
    ("llama", dict(model_type="qwen2"),  # and the other way round: Qwen2's biases missing
     r"model.safetensors: missing tensor model.layers.0.self_attn.k_proj.bias \(and 5 more\)"),
    ("llama", dict(vocab_size=100), "tokenizer.json: 125 tokens, more than the 100 rows"),
]


@pytest.mark.parametrize("name, changes, message", REFUSED, ids=[str(c) for _, c, _ in REFUSED])
def test_every_setting_model_py_does_not_implement_is_refused_by_name(tmp_path, name, changes, message):
    folder = with_config(tmp_path, name, **changes)
    with pytest.raises(ValueError, match=message):
        load_pretrained(str(folder))


def test_max_seq_len_beyond_the_trained_positions_is_refused():
    with pytest.raises(ValueError, match=r"max_seq_len=257: .*config.json has max_position_embeddings=256"):
        load_pretrained(str(FIXTURES / "llama"), max_seq_len=257)


def test_missing_and_broken_files_are_named(tmp_path):
    folder = with_config(tmp_path, "llama")
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [124, 999]}))
    with pytest.raises(ValueError, match=r"generation_config.json: eos_token_id=\[124, 999\]: 999 is outside"):
        load_pretrained(str(folder))
    (folder / "generation_config.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "eos_token_id": None}))
    with pytest.raises(ValueError, match="config.json: no eos_token_id"):
        load_pretrained(str(folder))
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        load_pretrained(str(folder))
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json at .*config.json"):
        load_pretrained(str(folder))
    folder = with_config(tmp_path / "b", "llama")
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(ValueError, match="model.safetensors: not a readable safetensors file"):
        load_pretrained(str(folder))
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors or model.safetensors.index.json in"):
        load_pretrained(str(folder))
    (folder / "tokenizer.json").write_text("{not a tokenizer")
    with pytest.raises(ValueError, match="tokenizer.json: not a readable tokenizer"):
        load_pretrained(str(folder))
    (folder / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json at .*tokenizer.json"):
        load_pretrained(str(folder))


# ---------------------------------------------------------------------------------------------
# Chat prompts and the tokenizer
# ---------------------------------------------------------------------------------------------
def test_chat_prompts_of_the_three_formats_written_out():
    chatml = {"chat_format": "chatml", "default_system": "You are a helpful assistant."}
    assert chat_prompt(chatml, "What is 2+3?") == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                                                  "<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n")
    assert chat_prompt(chatml, "What is 2+3?", system="Be brief.") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n<|im_start|>assistant\n")
    llama3 = {"chat_format": "llama3", "default_system": None}
    assert chat_prompt(llama3, "What is 2+3?") == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhat is 2+3?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert chat_prompt(llama3, " What is 2+3?\n", system="Be brief.") == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+3?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    none = {"chat_format": "none", "default_system": None}
    assert chat_prompt(none, "What is 2+3?") == "What is 2+3?"
    assert chat_prompt(none, "What is 2+3?", system="Be brief.") == "Be brief.\n\nWhat is 2+3?"
    with pytest.raises(ValueError, match="chat_format='alpaca': allowed values are 'chatml', 'llama3', 'none'"):
        chat_prompt({"chat_format": "alpaca"}, "What is 2+3?")


@pytest.mark.parametrize("name", NAMES)
def test_chat_prompts_equal_what_the_checkpoints_template_renders(name):
    _, _, info = load_pretrained(str(FIXTURES / name))
    _, meta = reference(name)  # rendered by transformers' apply_chat_template when the fixture was made
    assert chat_prompt(info, meta["chat_question"]) == meta["chat_user"]
    assert chat_prompt(info, meta["chat_question"], system=meta["chat_system_text"]) == meta["chat_system"]


def test_a_base_model_without_chat_tokens_gets_plain_text(tmp_path):
    folder = with_config(tmp_path, "qwen2")
    tok = json.loads((folder / "tokenizer.json").read_text())
    tok["added_tokens"] = [t for t in tok["added_tokens"] if t["content"] == "<|endoftext|>"]
    (folder / "tokenizer.json").write_text(json.dumps(tok))
    _, _, info = load_pretrained(str(folder))
    assert info["chat_format"] == "none" and info["default_system"] is None
    assert chat_prompt(info, "What is 2+3?") == "What is 2+3?"


@pytest.mark.parametrize("name", NAMES)
def test_the_tokenizer_round_trips_and_reads_special_tokens_as_one_token(name):
    _, tok, info = load_pretrained(str(FIXTURES / name))
    ref, _ = reference(name)
    ids = ref["single_ids"][0].tolist()
    text = tok.decode(ids, skip_special_tokens=False)
    assert tok.encode(text, add_special_tokens=False).ids == ids
    prompt = chat_prompt(info, "What is 12+3?")
    enc = tok.encode(prompt, add_special_tokens=False).ids
    assert tok.decode(enc, skip_special_tokens=False) == prompt
    end = tok.token_to_id("<|im_end|>" if name == "qwen2" else "<|eot_id|>")
    assert end in enc and end == info["eos_id"]
    if name == "llama":  # the prompt holds its <|begin_of_text|>: encoding it without special tokens adds no second
        bos = info["bos_id"]
        assert enc.count(bos) == 1 and enc[0] == bos
        assert tok.encode(prompt).ids.count(bos) == 2  # (what chat_prompt's docstring warns about)


# ---------------------------------------------------------------------------------------------
# model.py's new config fields
# ---------------------------------------------------------------------------------------------
def small(**kw):
    torch.manual_seed(0)
    return Transformer(ModelConfig(vocab_size=40, n_layer=2, n_head=4, n_embd=32, max_seq_len=64, **kw)).eval()


def test_an_older_config_without_the_new_fields_loads_the_same_model(tmp_path):
    model = small()
    save_checkpoint(str(tmp_path), model)
    path = tmp_path / "model.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    old = {k: v for k, v in json.loads(meta["model_config"]).items()
           if k not in ("n_kv_head", "qkv_bias", "mlp_hidden", "tied_head")}
    save_file(tensors, str(path), metadata={"model_config": json.dumps(old)})
    loaded, _ = load_checkpoint(str(tmp_path))
    cfg = loaded.cfg
    assert (cfg.n_kv_head, cfg.qkv_bias, cfg.mlp_hidden, cfg.tied_head) == (None, False, 0, True)
    assert loaded.blocks[0].attn.qkv.weight.shape == (3 * 32, 32) and loaded.blocks[0].mlp.gate.weight.shape == (96, 32)
    ids = torch.randint(0, 40, (2, 9))
    assert torch.equal(loaded(ids), model(ids))


def test_grouped_query_attention_with_biases_and_an_untied_head_caches_and_saves_like_the_plain_model(tmp_path):
    model = small(n_kv_head=2, qkv_bias=True, mlp_hidden=40, tied_head=False)
    with torch.no_grad():
        for block in model.blocks:
            block.attn.qkv.bias.normal_()
    assert model.blocks[0].attn.qkv.weight.shape == (32 + 2 * 2 * 8, 32) and model.lm_head.weight.shape == (40, 32)
    cache = KVCache(model.cfg, 3, 10, "cpu", torch.float32)
    assert cache.k[0].shape == (3, 2, 10, 8)  # only the key/value heads are cached
    ids = torch.randint(0, 40, (3, 10))
    full = model(ids)
    model(ids[:, :7], cache=cache)
    step = model(ids[:, 7:], valid=torch.ones(3, 10, dtype=torch.bool), cache=cache)
    assert (full[:, 7:] - step).abs().max().item() <= 1e-5
    manual = Transformer(dataclasses.replace(model.cfg, attn_impl="manual")).eval()
    manual.load_state_dict(model.state_dict())
    assert (manual(ids) - full).abs().max().item() <= 1e-5
    save_checkpoint(str(tmp_path), model)
    loaded, _ = load_checkpoint(str(tmp_path))
    assert torch.equal(loaded(ids), full)


def test_bad_values_of_the_new_fields_are_named():
    with pytest.raises(ValueError, match="n_kv_head=3: n_head=4 must be a whole multiple of it"):
        ModelConfig(n_head=4, n_kv_head=3)
    with pytest.raises(ValueError, match="n_kv_head=-1"):
        ModelConfig(n_kv_head=-1)
    with pytest.raises(ValueError, match="mlp_hidden=-5 must be >= 0"):
        ModelConfig(mlp_hidden=-5)
    assert ModelConfig(n_head=4, n_kv_head=0).kv_heads == 4 and ModelConfig(n_head=4, n_kv_head=1).kv_heads == 1
