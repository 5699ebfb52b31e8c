"""R1-Zero's base model (pretrain.py) and --pipeline r1_zero: the documents, the examples, the flags, the
pipeline at a tiny size, and a kill during pretraining."""

import os

import pytest
import torch
from tokenizers import Tokenizer

import checkpoint
import config
import pretrain
import sft
import tasks
import train
from test_resume import metrics, run_process, weights

P = tasks.Problem("What is 12+3*4?", "3*4 = <<3*4=12>>12\n12+12 = <<12+12=24>>24", "24")
TAGS = ("<think>", "</think>", "<answer>", "</answer>")


# ---------------------------------------------------------------------------------------------
# The documents
# ---------------------------------------------------------------------------------------------
def test_each_style_writes_the_problem_as_plain_text_without_template_or_tags():
    assert pretrain.document(P, "gsm8k") == ("What is 12+3*4?\n3*4 = <<3*4=12>>12\n12+12 = <<12+12=24>>24\n"
                                             "#### 24")
    assert pretrain.document(P, "prose") == ("Question: What is 12+3*4?\nSolution: 3*4 = <<3*4=12>>12\n"
                                             "12+12 = <<12+12=24>>24\nThe answer is 24.")
    assert pretrain.document(P, "answer") == "Q: What is 12+3*4?\nA: 24"
    for style in pretrain.STYLES:
        text = pretrain.document(P, style)
        assert not any(tag in text for tag in TAGS) and "Assistant" not in text
    with pytest.raises(ValueError, match="unknown document style 'latex'; allowed: gsm8k, prose, answer"):
        pretrain.document(P, "latex")


def test_a_transcript_is_the_r1_zero_prompt_then_the_worked_completion_in_its_tags():
    text = pretrain.transcript(P)
    assert text == (tasks.R1_ZERO_TEMPLATE.format(prompt="What is 12+3*4?")
                    + " <think> 3*4 = <<3*4=12>>12\n12+12 = <<12+12=24>>24 </think> <answer> 24 </answer>")


def test_the_corpus_is_seeded_and_holds_transcripts_only_in_the_share_asked():
    problems = tasks.make_splits("arithmetic", 2000, 10, seed=0)[0]
    plain = pretrain.pretrain_documents(problems, seed=0)
    assert plain == pretrain.pretrain_documents(problems, seed=0) != pretrain.pretrain_documents(problems, seed=1)
    assert len(plain) == 2000 and not any(tag in d for d in plain for tag in TAGS)
    for style, head in (("gsm8k", "What is"), ("prose", "Question:"), ("answer", "Q:")):  # about a third each
        assert 600 <= sum(d.startswith(head) for d in plain) <= 730, style
    # each document states its own problem: the i-th is about problems[i]
    assert all(p.question in d for p, d in zip(problems, plain))
    mixed = pretrain.pretrain_documents(problems, seed=0, format_frac=0.1)
    transcripts = [i for i, d in enumerate(mixed) if "<think>" in d]
    assert 160 <= len(transcripts) <= 240  # 10% of 2,000, within 3 standard deviations
    assert all(mixed[i] == pretrain.transcript(problems[i]) for i in transcripts)
    assert all(mixed[i] == plain[i] for i in set(range(2000)) - set(transcripts))  # the same style draws otherwise
    assert all("<think>" in d for d in pretrain.pretrain_documents(problems[:50], seed=0, format_frac=1.0))
    with pytest.raises(ValueError, match="format_frac=1.5: a share"):
        pretrain.pretrain_documents(problems, seed=0, format_frac=1.5)


def test_an_example_is_eos_then_the_document_and_the_loss_covers_every_document_token():
    tok = tasks.train_tokenizer([pretrain.document(P, s) for s in pretrain.STYLES] * 20, vocab_size=300)
    docs = [pretrain.document(P, "gsm8k"), pretrain.document(P, "answer")]
    examples = pretrain.pretrain_examples(docs, tok, max_len=64)
    for (prompt, completion), doc in zip(examples, docs):
        assert prompt == [tasks.EOS_ID] and completion == tasks.encode(tok, doc) + [tasks.EOS_ID]
    x, y, mask = sft.sft_batch(examples, [0, 1], "cpu")
    for row, (_, completion) in enumerate(examples):  # the targets under the mask: the document and its EOS
        assert y[row][mask[row]].tolist() == completion
    n_answer = len(examples[1][1]) + 1  # "Q: ...\nA: 24" fits in 12 positions, the worked one does not
    assert len(pretrain.pretrain_examples(docs, tok, max_len=n_answer)) == 1
    with pytest.raises(ValueError, match="every document is longer than --max_seq_len 5"):
        pretrain.pretrain_examples(docs, tok, max_len=5)


# ---------------------------------------------------------------------------------------------
# The flags
# ---------------------------------------------------------------------------------------------
def test_the_r1_zero_preset_and_the_flags_that_act_only_there():
    cfg = config.parse_config(["--preset", "r1_zero"])
    assert (cfg.pipeline, cfg.template, cfg.rl, cfg.pretrain_format_frac) == ("r1_zero", "r1", "grpo", 0.0)
    with pytest.raises(ValueError, match="--pretrain_format_frac 0.1 has no effect here: it acts only with "
                                         "--pipeline r1_zero"):
        config.check_config(config.TrainConfig(pretrain_format_frac=0.1))
    with pytest.raises(ValueError, match="--sft_direct_frac 0.0 has no effect here: .*R1-Zero has no SFT"):
        config.check_config(config.TrainConfig(pipeline="r1_zero", sft_direct_frac=0.0))
    with pytest.raises(ValueError, match="--pipeline r1_zero is RL from a pretrained base: give --rl grpo or ppo"):
        config.check_config(config.TrainConfig(pipeline="r1_zero", rl="none"))
    with pytest.raises(ValueError, match=r"--pretrain_format_frac must be in \[0, 1\], got -0.1"):
        config.check_config(config.TrainConfig(pipeline="r1_zero", pretrain_format_frac=-0.1))


# ---------------------------------------------------------------------------------------------
# The pipeline at a tiny size
# ---------------------------------------------------------------------------------------------
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--preset", "smoke", "--pipeline", "r1_zero", "--template", "r1", "--n_train", "300", "--sft_steps", "8",
        "--eval_every", "4", "--eval_n", "4", "--rl_steps", "2", "--rl_eval_every", "2", "--rl_eval_n", "4",
        "--threads", "1", "--pretrain_format_frac", "0.5"]


def test_r1_zero_pretrains_on_the_documents_then_runs_grpo_from_that_base(tmp_path, monkeypatch, capsys):
    seen = {}
    run_sft = sft.run_sft

    def spy(model, examples, test, run, point=None, stage="sft", steps=None):
        seen[stage] = examples
        return run_sft(model, examples, test, run, point, stage, steps)

    monkeypatch.setattr(train.sft, "run_sft", spy)
    out = str(tmp_path / "zero")
    final = train.main(TINY + ["--out_dir", out])
    assert list(seen) == ["pretrain"]  # no cold-start SFT: stage 1 is the pretraining
    train_split = train.load_problems(config.parse_config(TINY))[0]
    docs = pretrain.pretrain_documents(train_split, seed=0, format_frac=0.5)
    tok = Tokenizer.from_file(os.path.join(out, "pretrain", "tokenizer.json"))
    learnt = [tasks.decode(tok, c[:-1]) for p, c in seen["pretrain"] if p == [tasks.EOS_ID] and c[-1] == tasks.EOS_ID]
    assert len(learnt) == len(seen["pretrain"]) >= 0.95 * len(docs)  # (a document too long is dropped, and said)
    kept = iter(docs)  # the documents, in order
    assert all(any(doc == d for d in kept) for doc in learnt)
    records = checkpoint.read_jsonl(os.path.join(out, "metrics.jsonl"))
    assert {r["stage"] for r in records} == {"pretrain", "grpo", "final"}
    steps = [r for r in records if r["stage"] == "grpo" and "reward" in r]
    assert [r["step"] for r in steps] == [1, 2] and all(0 <= r["format"] <= 1 for r in steps)
    assert set(final) >= {"pretrain", "grpo"} and "sft" not in final
    assert os.path.isfile(os.path.join(out, "pretrain", "model.safetensors"))
    printed = capsys.readouterr().out
    assert "|   BASE |   GRPO |" in printed and f"{os.path.join(out, 'pretrain')} (BASE)" in printed



def test_a_run_killed_while_pretraining_resumes_to_the_same_records_and_weights(tmp_path):
    zero = TINY[2:]  # test_resume's tiny run, made R1-Zero (a flag given later wins)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert run_process(whole, *zero).returncode == 0
    first = run_process(killed, *zero, stop_at=("pretrain", 7, "loss"))  # after the checkpoint of step 4
    assert first.returncode == -9, first.stderr[-2000:]
    second = run_process(killed, *zero)
    assert second.returncode == 0 and "from pretrain step 4" in second.stdout, second.stderr[-2000:]
    assert metrics(killed) == metrics(whole) and metrics(whole)[-1]["stage"] == "final"
    for stage in ("pretrain", "grpo"):
        a, b = weights(whole, stage), weights(killed, stage)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), stage
