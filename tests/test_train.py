"""Cold-start SFT: the loss sees completion tokens only, the schedule is warm-up then cosine, bad flags
are named, and a smoke run of train.py then sample.py works end to end."""

import json
import math
import os

import dataclasses
import inspect
from dataclasses import asdict

import pytest
import torch
from tokenizers import Tokenizer

import sample
import sft
import optim
import config
import tasks
import train


def test_sft_batch_masks_exactly_the_completion_tokens_and_eos():
    examples = [([10, 11, 12], [20, 21, tasks.EOS_ID]), ([13], [22, tasks.EOS_ID])]
    x, y, mask = sft.sft_batch(examples, [0, 1], "cpu")
    assert x.tolist() == [[10, 11, 12, 20, 21], [13, 22, 0, 0, 0]]
    assert y.tolist() == [[11, 12, 20, 21, 1], [22, 1, 0, 0, 0]]
    # targets that are completion tokens: 20, 21, EOS in row 0; 22, EOS in row 1
    assert mask.tolist() == [[False, False, True, True, True], [True, True, False, False, False]]


def test_length_grouped_batches_cover_random_examples_in_batches_of_similar_length():
    lengths = list(range(2, 402))  # example i has length i + 2
    drawn = [sft.sft_batch_indices(lengths, 8, step, seed=0, group=16) for step in range(50)]
    assert all(len(b) == 8 and len(set(b)) == 8 for b in drawn)
    spread = sum(max(b) - min(b) for b in drawn) / len(drawn)
    assert spread < 100  # a random batch of 8 out of 400 spreads over ~310 lengths on average
    assert len({i for b in drawn for i in b}) > 250  # yet the examples seen are spread over the whole set
    plain = [sft.sft_batch_indices(lengths, 8, step, seed=0) for step in range(50)]
    assert sum(max(b) - min(b) for b in plain) / 50 > 200  # group=1: plain random batches
    with pytest.raises(ValueError, match="batch_size"):
        sft.sft_batch_indices(lengths[:4], 8, 0, seed=0, group=16)


def test_the_batch_of_an_sft_step_depends_on_the_seed_and_the_step_only():
    lengths = list(range(2, 402))
    first = [sft.sft_batch_indices(lengths, 8, step, seed=0, group=4) for step in range(12)]
    again = [sft.sft_batch_indices(lengths, 8, step, seed=0, group=4) for step in reversed(range(12))][::-1]
    assert first == again  # drawn in any order, e.g. from step 7 on after a resume
    assert first != [sft.sft_batch_indices(lengths, 8, step, seed=1, group=4) for step in range(12)]
    assert len({tuple(b) for b in first}) == 12  # every step its own batch


def test_completion_loss_ignores_masked_positions():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 100.0  # position 0 is masked: its (wrong) prediction must not count
    targets = torch.tensor([[1, 3, 3]])
    mask = torch.tensor([[False, True, True]])
    # uniform logits at the two counted positions: loss = log 4 exactly
    assert math.isclose(sft.completion_loss(logits, targets, mask).item(), math.log(4), rel_tol=1e-6)


def test_lr_warms_up_linearly_then_decays_by_cosine_to_the_floor():
    cfg = config.TrainConfig(lr=1.0, warmup_steps=10, sft_steps=110, min_lr_ratio=0.1, sft_minutes=0)
    lr = lambda step: optim.lr_at(step, optim.sft_progress(step, 0.0, cfg.sft_steps), cfg.lr, cfg.warmup_steps, cfg.sft_steps,
                                  cfg.min_lr_ratio)
    assert math.isclose(lr(0), 0.1)
    assert math.isclose(lr(9), 1.0)
    assert math.isclose(lr(10), 1.0)
    assert math.isclose(lr(60), 0.55)  # half-way through the decay: 0.1 + 0.9 * 0.5
    assert math.isclose(lr(110), 0.1)


def test_a_time_budget_moves_progress_ahead_of_the_step_count():
    assert optim.sft_progress(10, 30.0, sft_steps=100, sft_minutes=2.0) == 0.25  # a quarter of the time, a tenth of the steps
    assert optim.sft_progress(50, 30.0, sft_steps=100, sft_minutes=2.0) == 0.5  # the steps are further along
    assert optim.sft_progress(60, 500.0, sft_steps=100, sft_minutes=2.0) == 1.0
    assert optim.sft_progress(10, 1e6, sft_steps=100, sft_minutes=0) == 0.1  # 0: no budget


def test_sft_stops_at_the_time_budget_and_still_evaluates_and_checkpoints(tmp_path):
    out = str(tmp_path / "run")
    train.main(["--preset", "smoke", "--out_dir", out, "--sft_steps", "100000", "--sft_minutes", "0.05", "--rl", "none"])
    records = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    evals = [r for r in records if r.get("stage") == "sft" and "eval_pass_at_1" in r]
    steps = [r for r in records if r.get("stage") == "sft" and "loss" in r]
    assert evals and evals[-1]["step"] < 100000 and steps[-1]["time"] < 60
    assert os.path.exists(os.path.join(out, "sft", "model.safetensors"))


def test_weight_decay_applies_to_matrices_only():
    from model import ModelConfig, Transformer
    model = Transformer(ModelConfig(vocab_size=16, n_layer=1, n_head=2, n_embd=8, max_seq_len=8))
    decay, no_decay = optim.make_optimizer(model, 1e-3, weight_decay=0.1).param_groups
    assert decay["weight_decay"] > 0 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0 and all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


@pytest.mark.parametrize("flag, value, words", [("--task", "chess", "allowed values are arithmetic"),
                                               ("--template", "chatml", "allowed values are r1"),
                                               ("--sft_steps", "0", "must be >= 1"),
                                               ("--length_grouping", "0", "must be >= 1"),
                                               ("--sft_minutes", "-1", "must be >= 0")])
def test_bad_flags_are_errors_that_name_the_flag(flag, value, words, capsys):
    with pytest.raises(SystemExit):
        config.parse_config([flag, value])
    err = capsys.readouterr().err
    assert flag in err and words in err


def test_presets_set_defaults_and_flags_override_them():
    cfg = config.parse_config(["--preset", "smoke", "--n_embd", "48"])
    assert cfg.n_layer == config.PRESETS["smoke"]["n_layer"] and cfg.n_embd == 48


def test_smoke_sft_run_trains_checkpoints_and_samples(tmp_path, capsys, monkeypatch):
    run = str(tmp_path / "run")
    result = train.main(["--preset", "smoke", "--out_dir", run, "--threads", "2", "--rl", "none"])
    out = os.path.join(run, "sft")
    assert set(os.listdir(out)) >= {"model.safetensors", "tokenizer.json"}
    records = [json.loads(line) for line in open(os.path.join(run, "metrics.jsonl"))]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0]  # it learns something
    assert records[-1] == result and result["stage"] == "final" and result["eval_n"] == 50  # the whole test split
    assert 0.0 <= result["eval_pass_at_1"] <= 1.0
    # the checkpoint stores the config, and sample.py rebuilds the very same held-out split from it
    sample.main([run, "--question", "What is 12*3+4?", "--n", "10"])  # a run directory: its sft/ checkpoint
    printed = capsys.readouterr().out
    assert "reasoning:" in printed and "answer:" in printed and "greedy pass@1 on 10 held-out" in printed
    # a completion outside the format is also shown as written, since its reasoning and answer parse as empty
    texts = [" <think> 12*3 = <<12*3=36>>36 </think> <answer> 40 </answer>", "12*3 = 36\n#### 40"]
    monkeypatch.setattr(sample, "complete", lambda *a, **k: texts)
    sample.main([run, "--question", "What is 12*3+4?", "--samples", "2"])
    printed = capsys.readouterr().out
    assert printed.count("as written") == 1 and "as written: '12*3 = 36\\n#### 40'" in printed
    cfg = config.parse_config(["--preset", "smoke", "--out_dir", run])
    stored = json.loads(json.dumps(asdict(cfg)))  # as the checkpoint stores it
    assert sample.held_out_problems(stored, 10) == train.load_problems(cfg)[1][:10]
    # --n on problems with other arithmetic knobs: harder ones than it trained on, none of its training questions
    harder = sample.held_out_problems(stored, 30, {"min_ops": 3, "max_ops": 3, "digits": None})
    assert all(sum(map(p.question.count, "+-*")) == 3 for p in harder)
    # one-digit sums trained on; two-digit operands asked, a quarter of them one-digit: some were trained on
    stored_1 = {**stored, "digits": 1, "max_ops": 1, "min_ops": 1, "n_train": 60, "n_test": 100}
    seen = {p.question for p in sample.rebuild_splits(stored_1, 60)[0]}
    assert seen & {p.question for p in sample.rebuild_splits({**stored_1, "digits": 2})[1]}  # drawn, they overlap
    other = sample.held_out_problems(stored_1, 90, {"digits": 2})
    assert len(other) == 90 and not seen & {p.question for p in other}  # scored, they do not
    sample.main([run, "--n", "5", "--min_ops", "3", "--max_ops", "3"])
    printed = capsys.readouterr()
    assert "greedy pass@1 on 5 held-out problems" in printed.out
    # a prompt longer than any it trained on answers within the positions left, and says so
    assert sample.budget_left(100, 96, 210, "the longest prompt") == 96 and "note" not in capsys.readouterr().err
    assert sample.budget_left(120, 96, 210, "the longest prompt") == 90
    assert "the longest prompt has 120 tokens, so at most 90 new tokens fit" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sample.main([run, "--question", "What is 1+1?", "--max_ops", "3"])
    assert "--max_ops sets the problems that --n scores: give --n N too" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--max_ops: the checkpoint was trained on --task word"):
        sample.held_out_problems({**stored, "task": "word"}, 5, {"max_ops": 3})


def test_a_checkpoints_training_problems_are_rebuilt_as_the_run_made_them(tmp_path):
    cfg = config.TrainConfig(n_train=300, n_test=20, seed=4)
    made = train.load_problems(cfg)
    assert sample.rebuild_splits(asdict(cfg), 50) == (made[0][:50], made[1])  # the first 50: a prefix of 300
    row = lambda q, n: json.dumps({"question": q, "answer": f"{n}+1 = <<{n}+1={n + 1}>>{n + 1}\n#### {n + 1}"}) + "\n"
    (tmp_path / "train.jsonl").write_text(row("Q 1?", 1) + row("Shared q?", 2) + row("Q 3?", 3))
    (tmp_path / "test.jsonl").write_text(row("shared  Q?", 2))
    gsm = asdict(config.TrainConfig(task="gsm8k", gsm8k_dir=str(tmp_path)))
    train_part, test = sample.rebuild_splits(gsm, 5)
    assert [p.question for p in train_part] == ["Q 1?", "Q 3?"] and [p.question for p in test] == ["shared  Q?"]
    assert sample.rebuild_splits(gsm)[0] == []  # no training problems asked for: train.jsonl is not read


def test_split_completion_separates_reasoning_and_answer():
    text = " <think> 2+3 = <<2+3=5>>5 </think> <answer> 5 </answer>"
    assert sample.split_completion(text) == ("2+3 = <<2+3=5>>5", "5")
    assert sample.split_completion("no tags") == ("", "")


def test_a_malformed_gsm8k_file_stops_train_py_with_file_and_line(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"question": "q?", "answer": "1+1 = <<1+1=2>>2\\n#### 2"}\n{oops\n')
    (tmp_path / "test.jsonl").write_text('{"question": "r?", "answer": "#### 3"}\n')
    with pytest.raises(SystemExit, match=r"train.jsonl:2: invalid JSON"):
        train.main(["--task", "gsm8k", "--gsm8k_dir", str(tmp_path), "--out_dir", str(tmp_path / "run")])


def test_sample_py_names_a_missing_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        sample.main([str(tmp_path / "nowhere"), "--question", "What is 1+1?"])
    assert "no checkpoint at" in capsys.readouterr().err


def test_sample_py_explains_why_a_checkpoint_without_train_config_cannot_be_scored(tmp_path, capsys):
    from model import ModelConfig, Transformer, save_checkpoint
    tok = tasks.train_tokenizer(["User: What is 1+1?\nAssistant: <think> </think> <answer> 2 </answer>"] * 4, 300)
    model = Transformer(ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=1, n_head=2, n_embd=16, max_seq_len=64))
    save_checkpoint(str(tmp_path), model, tok)  # no train_config in the metadata
    with pytest.raises(SystemExit):
        sample.main([str(tmp_path), "--n", "5", "--max_new_tokens", "4"])
    assert "no train_config" in capsys.readouterr().err


def test_sft_direct_frac_gives_that_share_of_answer_only_targets_reproducibly():
    tok = tasks.train_tokenizer([tasks.format_completion(p) for p in tasks.make_splits("arithmetic", 200, 10, 0)[0]],
                                vocab_size=128)
    problems = tasks.make_splits("arithmetic", 400, 10, seed=0)[0]
    prompts, worked = tasks.tokenize_problems(tok, problems, "compact")
    def direct_share(frac, seed=0):
        examples = sft.sft_examples(problems, prompts, worked, tok, 160, frac, seed)
        return [tasks.decode(tok, c).startswith(" <think> </think> <answer> ") for _, c in examples]
    assert sum(direct_share(0.0)) == 0  # the default cold start: every target is worked
    share = direct_share(0.5)
    assert 160 <= sum(share) <= 240  # 400 fair coin flips
    assert share == direct_share(0.5)  # fixed by the seed
    assert share != direct_share(0.5, seed=1)
    examples = sft.sft_examples(problems, prompts, worked, tok, 160, 0.5, 0)
    i = share.index(True)
    assert tasks.decode(tok, examples[i][1][:-1]) == f" <think> </think> <answer> {problems[i].answer} </answer>"
    assert examples[i][1][-1] == tasks.EOS_ID


@pytest.mark.parametrize("value", ["-0.1", "1", "1.5"])
def test_sft_direct_frac_outside_0_1_is_refused(value, capsys):
    with pytest.raises(SystemExit):
        config.parse_config(["--sft_direct_frac", value])
    assert "--sft_direct_frac must be in [0, 1)" in capsys.readouterr().err


def test_the_word_cpu_preset_runs_the_steps_of_the_readme_run_without_time_budgets():
    cfg = config.parse_config(["--preset", "word_cpu"])
    assert (cfg.task, cfg.vocab_size, cfg.max_new_tokens, cfg.batch_size) == ("word", 512, 192, 32)
    assert (cfg.sft_steps, cfg.sft_minutes, cfg.rl_steps, cfg.rl_minutes, cfg.pass_k) == (1350, 0.0, 80, 0.0, 4)
    assert cfg.rl == "grpo" and cfg.sft_direct_frac == 0.5 and cfg.n_embd == 128  # the default cold start and size


def test_sample_py_names_a_bad_flag_a_corrupt_tokenizer_and_a_question_too_long_for_the_checkpoint(tmp_path, capsys):
    from model import ModelConfig, Transformer, save_checkpoint
    tok = tasks.train_tokenizer(["User: What is 1+1?\nAssistant: <think> </think> <answer> 2 </answer>"] * 4, 300)
    model = Transformer(ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=1, n_head=2, n_embd=16, max_seq_len=40))
    save_checkpoint(str(tmp_path), model, tok)
    for argv, words in ((["--question", "hi", "--samples", "0"], "--samples must be >= 1"),
                        (["--question", "hi", "--top_p", "1.5"], "--top_p must be in (0, 1]"),
                        (["--question", "What is 1+1? " * 10, "--max_new_tokens", "8"],
                         "this checkpoint handles 40 positions in all")):
        with pytest.raises(SystemExit):
            sample.main([str(tmp_path), *argv])
        assert words in capsys.readouterr().err, argv
    sample.main([str(tmp_path), "--question", "What is 1+1?", "--max_new_tokens", "8"])  # fits: 8 tokens + 8
    assert "answer:" in capsys.readouterr().out
    sample.main([str(tmp_path), "--question", "What is 1+1+1+1+1+1+1+1+1+1?", "--max_new_tokens", "30"])
    printed = capsys.readouterr()  # 28 prompt tokens + 30 > 40: it answers in the 12 positions left, and says so
    assert "answer:" in printed.out and "at most 12 new tokens fit" in printed.err
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(SystemExit):
        sample.main([str(tmp_path), "--question", "hi", "--max_new_tokens", "4"])
    assert "tokenizer.json: not a readable tokenizer" in capsys.readouterr().err


def test_help_lists_the_flags_under_their_groups(capsys):
    with pytest.raises(SystemExit):
        config.parse_config(["--help"])
    out = capsys.readouterr().out
    names = [f.name for f in dataclasses.fields(config.TrainConfig)]
    # a group starts at the first field after each `# heading` comment of TrainConfig
    source = inspect.getsource(config.TrainConfig).splitlines()
    firsts = [next(line.split(":")[0].strip() for line in source[i + 1:] if not line.strip().startswith("#"))
              for i, line in enumerate(source) if line.strip().startswith("#")]
    assert list(config.HELP_GROUPS) == firsts
    headings = [out.index(f"\n{heading}:\n") for heading in config.HELP_GROUPS.values()]
    assert headings == sorted(headings)  # in TrainConfig's order
    # each flag is listed after its group's heading and before the next group's
    starts = [names.index(n) for n in config.HELP_GROUPS] + [len(names)]
    for (lo, hi), at, end in zip(zip(starts, starts[1:]), headings, headings[1:] + [len(out)]):
        assert all(at < out.index(f"  --{n} ") < end for n in names[lo:hi])


def test_sft_problems_gives_the_cold_start_the_first_n_worked_solutions_and_rl_every_question(tmp_path, monkeypatch):
    seen = {}
    run_sft, run_rl = train.sft.run_sft, train.run_rl
    monkeypatch.setattr(train.sft, "run_sft", lambda model, examples, *a, **k: seen.update(sft=examples)
                        or run_sft(model, examples, *a, **k))
    monkeypatch.setattr(train, "run_rl", lambda policy, problems, *a, **k: seen.update(rl=problems)
                        or run_rl(policy, problems, *a, **k))
    argv = ["--preset", "smoke", "--n_train", "300", "--sft_problems", "40", "--sft_steps", "2", "--rl_steps", "1",
            "--eval_every", "2", "--threads", "1", "--sft_direct_frac", "0", "--out_dir", str(tmp_path / "run")]
    train.main(argv)
    problems = train.load_problems(config.parse_config(argv))[0]
    tok = Tokenizer.from_file(str(tmp_path / "run" / "sft" / "tokenizer.json"))
    prompts, worked = tasks.tokenize_problems(tok, problems[:40], "compact")
    assert seen["sft"] == list(zip(prompts, worked))  # the first 40 problems' worked solutions, nothing else
    assert seen["rl"] == problems  # every training question
    with pytest.raises(ValueError, match="--sft_problems 301 is more than the --n_train 300 training problems"):
        config.check_config(config.TrainConfig(n_train=300, sft_problems=301))
    with pytest.raises(ValueError, match="--sft_problems 40 has no effect here: it acts only with a run that trains "
                                         "its own cold start"):
        config.check_config(config.TrainConfig(pipeline="r1_zero", sft_problems=40))
