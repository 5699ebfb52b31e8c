"""Cold-start SFT: the loss sees completion tokens only, the schedule is warm-up then cosine, bad flags
are named, and a smoke run of train.py then sample.py works end to end."""

import json
import math
import os

import pytest
import torch

import sample
import tasks
import train


def test_sft_batch_masks_exactly_the_completion_tokens_and_eos():
    examples = [([10, 11, 12], [20, 21, tasks.EOS_ID]), ([13], [22, tasks.EOS_ID])]
    x, y, mask = train.sft_batch(examples, [0, 1], "cpu")
    assert x.tolist() == [[10, 11, 12, 20, 21], [13, 22, 0, 0, 0]]
    assert y.tolist() == [[11, 12, 20, 21, 1], [22, 1, 0, 0, 0]]
    # targets that are completion tokens: 20, 21, EOS in row 0; 22, EOS in row 1
    assert mask.tolist() == [[False, False, True, True, True], [True, True, False, False, False]]


def test_length_grouped_batches_cover_random_examples_in_batches_of_similar_length():
    import random
    examples = [([1] * n, [2]) for n in range(1, 401)]  # lengths 2..401
    batches = train.length_grouped_batches(examples, 8, random.Random(0), group=16)
    drawn = [next(batches) for _ in range(50)]
    assert all(len(b) == 8 and len(set(b)) == 8 for b in drawn)
    spread = sum(max(b) - min(b) for b in drawn) / len(drawn)
    assert spread < 100  # a random batch of 8 out of 400 spreads over ~310 lengths on average
    assert len({i for b in drawn for i in b}) > 250  # yet the examples seen are spread over the whole set
    with pytest.raises(ValueError, match="batch_size"):
        next(train.length_grouped_batches(examples[:4], 8, random.Random(0), group=16))


def test_completion_loss_ignores_masked_positions():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 100.0  # position 0 is masked: its (wrong) prediction must not count
    targets = torch.tensor([[1, 3, 3]])
    mask = torch.tensor([[False, True, True]])
    # uniform logits at the two counted positions: loss = log 4 exactly
    assert math.isclose(train.completion_loss(logits, targets, mask).item(), math.log(4), rel_tol=1e-6)


def test_lr_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    cfg = train.TrainConfig(lr=1.0, warmup_steps=10, sft_steps=110, min_lr_ratio=0.1)
    assert math.isclose(train.lr_at(0, cfg), 0.1)
    assert math.isclose(train.lr_at(9, cfg), 1.0)
    assert math.isclose(train.lr_at(10, cfg), 1.0)
    assert math.isclose(train.lr_at(60, cfg), 0.55)  # half-way: 0.1 + 0.9 * 0.5
    assert math.isclose(train.lr_at(110, cfg), 0.1)


def test_weight_decay_applies_to_matrices_only():
    from model import ModelConfig, Transformer
    model = Transformer(ModelConfig(vocab_size=16, n_layer=1, n_head=2, n_embd=8, max_seq_len=8))
    decay, no_decay = train.make_optimizer(model, train.TrainConfig(), 1e-3).param_groups
    assert decay["weight_decay"] > 0 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0 and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("flag, value, words", [("--task", "chess", "allowed values are arithmetic"),
                                               ("--template", "chatml", "allowed values are r1"),
                                               ("--sft_steps", "0", "must be >= 1")])
def test_bad_flags_are_errors_that_name_the_flag(flag, value, words, capsys):
    with pytest.raises(SystemExit):
        train.parse_config([flag, value])
    err = capsys.readouterr().err
    assert flag in err and words in err


def test_presets_set_defaults_and_flags_override_them():
    cfg = train.parse_config(["--preset", "smoke", "--n_embd", "48"])
    assert cfg.n_layer == train.PRESETS["smoke"]["n_layer"] and cfg.n_embd == 48


def test_smoke_run_trains_checkpoints_and_samples(tmp_path, capsys):
    out = str(tmp_path / "run")
    result = train.main(["--preset", "smoke", "--out_dir", out, "--threads", "2"])
    assert set(os.listdir(out)) >= {"model.safetensors", "tokenizer.json", "metrics.jsonl"}
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0]  # it learns something
    assert records[-1]["stage"] == "final" and records[-1]["eval_n"] == result["n_test"]
    assert 0.0 <= result["pass_at_1"] <= 1.0
    # the checkpoint stores the config, and sample.py rebuilds the very same held-out split from it
    sample.main([out, "--question", "What is 12*3+4?", "--n", "10"])
    printed = capsys.readouterr().out
    assert "reasoning:" in printed and "answer:" in printed and "greedy pass@1 on 10 held-out" in printed
    cfg = train.parse_config(["--preset", "smoke", "--out_dir", out])
    stored = json.loads(json.dumps(train.asdict(cfg)))  # as the checkpoint stores it
    assert sample.held_out_problems(stored, 10) == train.load_problems(cfg)[1][:10]


def test_split_completion_separates_reasoning_and_answer():
    text = " <think> 2+3 = <<2+3=5>>5 </think> <answer> 5 </answer>"
    assert sample.split_completion(text) == ("2+3 = <<2+3=5>>5", "5")
    assert sample.split_completion("no tags") == ("", "")
