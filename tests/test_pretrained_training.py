"""GRPO from a pretrained checkpoint: the end token read from the tokenizer, the chat templates, --init_from a
Hugging Face folder, the gsm8k_pretrained preset.

Everything runs on the tiny random fixtures of tests/fixtures/pretrained/ (a Qwen2 and a Llama model of a few
thousand parameters, their tokenizers of about a hundred tokens); nothing larger is loaded, nothing downloaded.
A random model earns no reward, so the training runs here score completions by a scripted language reward (the
length of the text, odd or even): the groups' rewards differ and the updates change the weights.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models

import checkpoint
import config
import explain
import inference
import pretrain
import rejection
import rewards
import rollouts
import sample
import sft
import tasks
import train
import verifier
from model import generate, load_checkpoint
from pretrained import CHAT_TOKENS, chat_prompt, load_pretrained
from scripted import ScriptedPolicy

FIXTURES = Path(__file__).parent / "fixtures" / "pretrained"
CHAT = {"qwen2": "r1_chatml", "llama": "r1_llama3"}  # each fixture's chat template
# Short questions written with the fixtures' few characters (a character outside a tokenizer's vocabulary is dropped)
TRAIN = [("What is 12+3?", "12+3 = <<12+3=15>>15", "15"), ("What is 24+48?", "24+48 = <<24+48=72>>72", "72"),
         ("What is 7*2?", "7*2 = <<7*2=14>>14", "14"), ("What is 9+9?", "9+9 = <<9+9=18>>18", "18")]
TEST = [("What is 48-24?", "48-24 = <<48-24=24>>24", "24"), ("What is 12*2?", "12*2 = <<12*2=24>>24", "24")]
TIMING = {"time", "step_s", "rollout_s", "reward_s", "logprob_s", "update_s", "adv_s", "critic_s", "rollout_tok_s",
          "minutes", "memory", "peak_rss_before_mib", "peak_rss_reset", "rss_before_mib"}
COMPLETION = "<think> 12+3 = <<12+3=15>>15 </think> <answer> 15 </answer>"


def fixture(name: str):
    """(model, tokenizer, info) of a fixture, loaded as pretrained.py loads it."""
    return load_pretrained(str(FIXTURES / name))


def write_gsm8k(folder: Path, long_question: bool = False) -> Path:
    """train.jsonl and test.jsonl in GSM8K's format; with long_question a test question of ~600 characters."""
    folder.mkdir(parents=True, exist_ok=True)
    test = TEST + ([("What is 12+3? " * 40, "12+3 = <<12+3=15>>15", "15")] if long_question else [])
    for split, rows in (("train", TRAIN), ("test", test)):
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for q, steps, answer in rows:
                f.write(json.dumps({"question": q, "answer": f"{steps}\n#### {answer}"}) + "\n")
    return folder


def tokenizer_with(*special: str) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.add_special_tokens(list(special))
    return tok


# ---------------------------------------------------------------------------------------------
# The end token, from the tokenizer
# ---------------------------------------------------------------------------------------------
def test_eos_id_of_each_kind_of_tokenizer(tok):
    assert tasks.eos_id(tok) == tasks.EOS_ID == 1  # the project's own: <eos>
    for name in ("qwen2", "llama"):  # the same token load_pretrained stops generation at
        _, ftok, info = fixture(name)
        assert tasks.eos_id(ftok) == info["eos_id"] == ftok.token_to_id(pretrained_end(name))
    # the order of tasks.END_TOKENS: <eos> first, then the end of a turn before the end of a document
    assert tasks.eos_id(tokenizer_with("<|endoftext|>", "<|im_end|>")) == 1
    assert tasks.eos_id(tokenizer_with("<|end_of_text|>", "<|eot_id|>")) == 1
    assert tasks.eos_id(tokenizer_with("</s>", "<|end_of_text|>")) == 1
    assert tasks.eos_id(tokenizer_with("<s>", "</s>")) == 1
    assert tasks.eos_id(tokenizer_with("<|im_end|>", "<eos>")) == 1
    with pytest.raises(ValueError, match=r"no end-of-sequence token: none of <eos>, <\|im_end\|>, .*</s> is in its "
                                         "vocabulary of 2"):
        tasks.eos_id(tokenizer_with("<s>", "<unk>"))


def pretrained_end(name: str) -> str:
    return "<|im_end|>" if name == "qwen2" else "<|eot_id|>"


def test_every_example_builder_appends_the_tokenizers_end_token_and_no_bos():
    """SFT targets, pretraining documents, stage 3's examples, a verifier's and explain.py's teacher-forced rows:
    each ends with eos_id(tok) (Llama 3's <|eot_id|>, not id 1), and none gets the tokenizer's <|begin_of_text|>."""
    _, tok, info = fixture("llama")
    eos, bos = info["eos_id"], info["bos_id"]
    assert eos != tasks.EOS_ID
    p = tasks.Problem(*TRAIN[0])
    prompts, worked = tasks.tokenize_problems(tok, [p], "r1_llama3")
    assert prompts[0] == tasks.encode(tok, tasks.format_prompt(p.question, "r1_llama3")) and prompts[0].count(bos) == 1
    assert worked[0] == tasks.encode(tok, tasks.format_completion(p, template="r1_llama3")) + [eos]
    [(_, direct)] = sft.sft_examples([p], prompts, worked, tok, 10_000, direct_frac=0.99)
    assert direct == tasks.encode(tok, tasks.format_completion(p, show_work=False)) + [eos]
    [(sep, doc)] = pretrain.pretrain_examples(["What is 12+3? 15"], tok, 100)
    assert sep == [eos] and doc == tasks.encode(tok, "What is 12+3? 15") + [eos]
    [(_, kept)] = rejection.stage_examples([(p, COMPLETION)], [], tok, "r1_llama3", 10_000)
    assert kept == tasks.encode(tok, COMPLETION) + [eos]  # no space put in front after a chat header
    [(_, kept)] = rejection.stage_examples([(p, COMPLETION)], [], tok, "compact", 10_000)
    assert kept == tasks.encode(tok, " " + COMPLETION) + [eos]  # the compact template's space, as before
    ids, valid, mask = verifier.solution_batch(tok, [p.question], [COMPLETION], "r1_llama3", 1000, "cpu")
    assert ids[0, mask[0]].tolist() == tasks.encode(tok, COMPLETION) + [eos]
    ids, mask = explain.teacher_forced(tok, [COMPLETION])
    assert ids[0, mask[0]].tolist() == tasks.encode(tok, COMPLETION) + [eos]


# ---------------------------------------------------------------------------------------------
# Chat templates
# ---------------------------------------------------------------------------------------------
INSTRUCTION = ("A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
               "assistant first thinks about the reasoning process in the mind and then provides the user with the "
               "answer. The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> "
               "tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>.")


def test_the_chat_templates_written_out():
    assert tasks.R1_ZERO_INSTRUCTION == INSTRUCTION
    assert tasks.format_prompt("What is 2+3?", "r1_chatml") == (
        f"<|im_start|>system\n{INSTRUCTION}<|im_end|>\n<|im_start|>user\nWhat is 2+3?<|im_end|>\n"
        "<|im_start|>assistant\n")
    llama3 = (f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{INSTRUCTION}<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+3?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert tasks.format_prompt("What is 2+3?", "r1_llama3") == llama3
    assert tasks.format_prompt(" What is 2+3?\n", "r1_llama3") == llama3  # trimmed, as Llama 3's template does
    assert tasks.format_prompt(" What is 2+3?", "r1_chatml").count("\n What is 2+3?<|im_end|>") == 1  # ChatML: as given
    # the tokens pretrained.py tells the formats apart by
    assert tasks.TEMPLATE_TOKENS == {"r1_chatml": CHAT_TOKENS["chatml"], "r1_llama3": CHAT_TOKENS["llama3"]}


@pytest.mark.parametrize("name", ["qwen2", "llama"])
def test_the_chat_templates_are_what_the_fixtures_chat_format_writes(name):
    """pretrained.chat_prompt, tested against transformers' rendering of the fixtures' own Jinja templates, gives
    the same text with R1-Zero's instruction as the system turn; its special tokens are single tokens."""
    _, tok, info = fixture(name)
    template = CHAT[name]
    for question in ("What is 2+3?", "Natalia sold 48 clips in April. How many?"):
        assert tasks.format_prompt(question, template) == chat_prompt(info, question, system=INSTRUCTION)
    ids = tasks.encode(tok, tasks.format_prompt("What is 2+3?", template))
    for token in tasks.TEMPLATE_TOKENS[template]:
        assert tok.token_to_id(token) in ids
    tasks.check_template(tok, template)  # accepted


def test_a_completion_starts_right_after_a_chat_header_without_a_space_and_earns_the_same_rewards():
    p = tasks.Problem("What is 2+3*4?", "3*4 = <<3*4=12>>12\n2+12 = <<2+12=14>>14", "14")
    compact = tasks.format_completion(p)
    for template in tasks.CHAT_TEMPLATES:
        chat = tasks.format_completion(p, template=template)
        assert chat == compact[1:] == "<think> 3*4 = <<3*4=12>>12\n2+12 = <<2+12=14>>14 </think> <answer> 14 </answer>"
        assert tasks.format_completion(p, False, template) == "<think> </think> <answer> 14 </answer>"
        assert list(tasks.corpus_texts([p], template)) == [tasks.format_prompt(p.question, template) + chat]
        assert tasks.format_prompt(p.question, template).endswith("\n")  # the header's newline, then the completion
        assert rewards.reward_components(chat, "14") == rewards.reward_components(compact, "14")
        assert rewards.accuracy_reward(chat, "14") == rewards.format_reward(chat) == 1.0
    assert tasks.completion_lead("compact") == tasks.completion_lead("r1") == " "


def test_a_template_whose_special_tokens_the_tokenizer_lacks_is_refused(tok, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"--template r1_chatml writes the special tokens <\|im_start\|>, <\|im_end\|>, "
                                         r"and this tokenizer lacks <\|im_start\|>, <\|im_end\|>"):
        tasks.check_template(tok, "r1_chatml")  # the project's own tokenizer would split them into bytes
    _, qwen_tok, _ = fixture("qwen2")
    with pytest.raises(ValueError, match=r"--template r1_llama3 .* lacks <\|begin_of_text\|>, <\|start_header_id\|>"):
        tasks.check_template(qwen_tok, "r1_llama3")
    tasks.check_template(tok, "compact")  # a template without special tokens needs none
    gsm8k = write_gsm8k(tmp_path / "gsm8k")
    base = ["--task", "gsm8k", "--gsm8k_dir", str(gsm8k), "--out_dir", str(tmp_path / "run"), "--device", "cpu"]
    with pytest.raises(SystemExit, match=r"error: --template r1_chatml writes .* this tokenizer lacks <\|im_start\|>"):
        train.main(base + ["--init_from", str(FIXTURES / "llama"), "--template", "r1_chatml"])
    with pytest.raises(SystemExit):  # a run that trains its own tokenizer: refused before anything runs
        config.parse_config(base + ["--template", "r1_llama3"])
    assert "--template r1_llama3 writes the special tokens <|begin_of_text|>" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# --init_from a Hugging Face folder
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flag, value", [("vocab_size", "300"), ("n_layer", "2"), ("n_head", "2"), ("n_embd", "64")])
def test_size_flags_with_a_huggingface_folder_are_refused_as_having_no_effect(flag, value, tmp_path, capsys):
    gsm8k = str(write_gsm8k(tmp_path / "gsm8k"))
    base = ["--task", "gsm8k", "--gsm8k_dir", gsm8k, "--template", "r1_chatml"]
    with pytest.raises(SystemExit):
        config.parse_config(base + ["--init_from", str(FIXTURES / "qwen2"), f"--{flag}", value])
    assert f"--{flag} {int(value)!r} has no effect here: it acts only with a run that builds its own tokenizer and " \
           "model (not --init_from a Hugging Face folder" in capsys.readouterr().err
    cfg = config.parse_config(["--init_from", str(tmp_path), f"--{flag}", value])  # a checkpoint folder: as before
    assert getattr(cfg, flag) == int(value)


def test_the_r1_pipeline_and_the_preset_without_its_folders_are_refused(tmp_path, capsys):
    gsm8k = str(write_gsm8k(tmp_path / "gsm8k"))
    with pytest.raises(SystemExit):
        config.parse_config(["--task", "gsm8k", "--gsm8k_dir", gsm8k, "--init_from", str(FIXTURES / "qwen2"),
                             "--template", "r1_chatml", "--pipeline", "r1", "--stage4_mix", "word:1"])
    assert "--pipeline r1 with --init_from a Hugging Face folder" in capsys.readouterr().err
    for given, missing in ((["--gsm8k_dir", gsm8k], "init_from"), (["--init_from", str(FIXTURES / "qwen2")], "gsm8k_dir")):
        with pytest.raises(SystemExit):
            config.parse_config(["--preset", "gsm8k_pretrained"] + given)
        assert f"--preset gsm8k_pretrained needs --{missing}: " in capsys.readouterr().err


def test_load_start_reads_a_huggingface_folder_with_the_runs_positions(tmp_path, capsys):
    gsm8k = str(write_gsm8k(tmp_path / "gsm8k"))
    args = ["--task", "gsm8k", "--gsm8k_dir", gsm8k, "--init_from", str(FIXTURES / "llama"), "--template", "r1_llama3"]
    model, tok = checkpoint.load_start(config.parse_config(args + ["--max_seq_len", "200"]), "cpu")
    assert model.cfg.max_seq_len == 200 and (model.cfg.n_kv_head, model.cfg.tied_head) == (2, False)
    assert tasks.eos_id(tok) == tok.token_to_id("<|eot_id|>") and "completions end at <|eot_id|>" in capsys.readouterr().out
    model, _ = checkpoint.load_start(config.parse_config(args), "cpu")
    assert model.cfg.max_seq_len == 256  # min(max_position_embeddings, 4096)
    with pytest.raises(SystemExit, match=r"error: --init_from .*llama: max_seq_len=300: .*max_position_embeddings=256"):
        checkpoint.load_start(config.parse_config(args + ["--max_seq_len", "300"]), "cpu")
    folder = tmp_path / "llama"  # without generation_config.json the folder's only eos id is <|end_of_text|>
    shutil.copytree(FIXTURES / "llama", folder)
    (folder / "generation_config.json").unlink()
    checkpoint.load_start(config.parse_config(args[:5] + [str(folder)] + args[6:]), "cpu")
    assert "note: <|eot_id|> (tasks.eos_id) is not among the folder's eos_token_id ['<|end_of_text|>']" in \
        capsys.readouterr().out


def test_a_prompt_longer_than_the_pretrained_positions_names_max_seq_len(tmp_path):
    gsm8k = str(write_gsm8k(tmp_path / "gsm8k", long_question=True))
    args = ["--task", "gsm8k", "--gsm8k_dir", gsm8k, "--init_from", str(FIXTURES / "llama"), "--template", "r1_llama3",
            "--out_dir", str(tmp_path / "run"), "--device", "cpu", "--max_new_tokens", "32"]
    with pytest.raises(SystemExit, match=r"error: --init_from .*llama is loaded with 256 positions, fewer than the "
                                         r"longest prompt \(\d+ tokens\) plus --max_new_tokens 32: give --max_seq_len "
                                         r"\d+ or more \(up to its config.json's max_position_embeddings\)"):
        train.main(args)


# ---------------------------------------------------------------------------------------------
# The end token in sampling: a scripted policy on the fixture's tokenizer
# ---------------------------------------------------------------------------------------------
def test_completions_stop_at_the_fixtures_end_token(tmp_path):
    """A policy scripted to write COMPLETION then Qwen2's <|im_end|> (id 102, not the project's 1), and after it
    <|im_end|> again forever: every sampler must stop there, keep it in the mask and drop it from the text."""
    _, tok, info = fixture("qwen2")
    eos, p = info["eos_id"], tasks.Problem(*TRAIN[0])
    script = tasks.encode(tok, COMPLETION) + [eos]
    prompt = tasks.encode(tok, tasks.format_prompt(p.question, "r1_chatml"))
    policy = ScriptedPolicy(tok.get_vocab_size(), {tuple(prompt): [script]}, max_seq_len=1024, eos_id=eos)
    cfg = config.TrainConfig(template="r1_chatml", group_size=2, max_new_tokens=60)
    roll = rollouts.sample_groups(policy, tok, [p], cfg, torch.Generator().manual_seed(0))
    assert roll.mask.sum(-1).tolist() == [len(script)] * 2 and not roll.truncated.any()
    assert roll.texts == [COMPLETION] * 2 and roll.rewards.tolist() == [[2.0, 2.0]]
    assert sample.complete(policy, tok, [p.question], "r1_chatml", 60) == [COMPLETION]
    [cand] = inference.sample_candidates(policy, tok, [p], 2, "r1_chatml", 60, 1.0, 1.0, torch.Generator().manual_seed(0))
    assert cand["texts"] == [COMPLETION] * 2 and cand["lengths"] == [len(script)] * 2
    texts, cut = inference.complete_with_budget(policy, tok, [p.question], "r1_chatml", 60, 4)
    assert texts == [COMPLETION] and cut == [False]
    group = explain.make_group(policy, tok, p.question, "r1_chatml", None, 2, 60, 0)
    assert group.texts == [COMPLETION] * 2 and group.mask.sum().item() == 2 * len(script)


# ---------------------------------------------------------------------------------------------
# GRPO runs from the fixtures
# ---------------------------------------------------------------------------------------------
def run_args(tmp_path: Path, name: str, out: str, *extra: str) -> list[str]:
    return ["--task", "gsm8k", "--gsm8k_dir", str(write_gsm8k(tmp_path / "gsm8k")), "--init_from", str(FIXTURES / name),
            "--template", CHAT[name], "--rl_steps", "2", "--prompts_per_step", "2", "--group_size", "2",
            "--max_new_tokens", "16", "--rl_eval_every", "1", "--rl_eval_n", "2", "--pass_k", "2", "--rl_lr", "1e-2",
            "--reward_language", "1", "--device", "cpu", "--threads", "1", "--out_dir", str(tmp_path / out), *extra]


@pytest.fixture
def scripted_rewards(monkeypatch):
    """A language reward that differs between completions (the parity of the text's length), so that a random model
    gets groups with different rewards; and a record of the stop and pad ids every generate call is given."""
    monkeypatch.setattr(rewards, "language_consistency_reward", lambda text: float(len(text) % 2))
    calls, policies = [], []

    def recording(model, prompts, max_new_tokens, eos_id, pad_id, *args, **kwargs):
        calls.append((eos_id, pad_id))
        return generate(model, prompts, max_new_tokens, eos_id, pad_id, *args, **kwargs)

    run_rl = train.run_rl
    monkeypatch.setattr(rollouts, "generate", recording)
    monkeypatch.setattr(sample, "generate", recording)
    monkeypatch.setattr(train, "run_rl", lambda policy, *a, **kw: (policies.append(policy), run_rl(policy, *a, **kw))[1])
    return calls, policies


def metrics(out_dir: Path) -> list[dict]:
    records = checkpoint.read_jsonl(os.path.join(out_dir, "metrics.jsonl"))
    return [{k: v for k, v in r.items() if k not in TIMING and not k.endswith("_mib")} for r in records]


def check_run(name: str, out_dir: Path, record: dict, calls: list, trained, folder: Path | None = None) -> None:
    """The run finished; its checkpoint is the project's format, reloads to the trained model's logits and not the
    fixture's (read from `folder`, default the fixture's); every generate call stopped at the fixture's end token."""
    fresh, tok, info = load_pretrained(str(folder or FIXTURES / name))
    assert record["stage"] == "final" and "pass_at_1" in record["grpo"]
    assert calls and set(calls) == {(info["eos_id"], tasks.PAD_ID)}
    loaded, meta = load_checkpoint(str(out_dir / "grpo"))
    assert not (out_dir / "grpo" / "config.json").exists()  # not a Hugging Face folder: --init_from reads it as ours
    assert meta["train_config"]["template"] == CHAT[name] and meta["step"] == 2
    for field in ("vocab_size", "n_kv_head", "qkv_bias", "mlp_hidden", "tied_head", "rope_theta", "norm_eps"):
        assert getattr(loaded.cfg, field) == getattr(fresh.cfg, field), field
    saved = Tokenizer.from_file(str(out_dir / "grpo" / "tokenizer.json"))
    assert saved.get_vocab(with_added_tokens=True) == tok.get_vocab(with_added_tokens=True)
    ids = torch.tensor([tasks.encode(tok, tasks.format_prompt(TEST[0][0], CHAT[name]))])
    with torch.no_grad():
        assert torch.equal(loaded(ids), trained.eval()(ids))
        assert (loaded(ids) - fresh(ids)).abs().max() > 1e-3  # the updates changed it


def test_grpo_from_the_qwen2_fixture_saves_reloads_samples_and_resumes(tmp_path, scripted_rewards, monkeypatch, capsys):
    calls, policies = scripted_rewards
    record = train.main(run_args(tmp_path, "qwen2", "run"))
    check_run("qwen2", tmp_path / "run", record, calls, policies[-1])
    assert "lengths: longest prompt" in capsys.readouterr().out
    # sample.py asks the run's checkpoint, in its chat template
    sample.main([str(tmp_path / "run"), "--question", "What is 12+3?", "--n", "2", "--device", "cpu"])
    out = capsys.readouterr()
    assert "loaded " in out.err and "answer:" in out.out and "greedy pass@1 on 2 held-out problems" in out.out
    # --init_from the run's checkpoint: the project's format, with the pretrained tokenizer
    cfg = config.parse_config(run_args(tmp_path, "qwen2", "again")[:4] + ["--init_from", str(tmp_path / "run" / "grpo"),
                                                                          "--template", "r1_chatml"])
    model, tok = checkpoint.load_start(cfg, "cpu")
    assert tasks.eos_id(tok) == 102 and model.cfg.qkv_bias
    # killed right after step 2's record, before its checkpoint: the same command resumes from step 1 and ends
    # with the same weights and records as the run above
    log = checkpoint.Metrics.log

    def killing(self, **r):
        log(self, **r)
        if r.get("stage") == "grpo" and r.get("step") == 2 and "reward" in r:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.Metrics, "log", killing)
    with pytest.raises(SystemExit) as stop:
        train.main(run_args(tmp_path, "qwen2", "killed"))
    assert stop.value.code == 130
    monkeypatch.setattr(checkpoint.Metrics, "log", log)
    train.main(run_args(tmp_path, "qwen2", "killed"))
    assert "resuming " in capsys.readouterr().out
    assert metrics(tmp_path / "killed") == metrics(tmp_path / "run")
    a, b = (load_checkpoint(str(tmp_path / d / "grpo"))[0].state_dict() for d in ("run", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_grpo_from_the_llama_fixture(tmp_path, scripted_rewards):
    """The Llama fixture has 256 positions, and R1-Zero's instruction alone takes about 300 of its 125-token
    vocabulary: the run is from a copy whose config.json allows 512 (RoPE has no weights, so the model is the same)."""
    calls, policies = scripted_rewards
    folder = tmp_path / "llama"
    shutil.copytree(FIXTURES / "llama", folder)
    config_json = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config_json, "max_position_embeddings": 512}))
    args = run_args(tmp_path, "llama", "run")
    args[args.index("--init_from") + 1] = str(folder)
    record = train.main(args)
    check_run("llama", tmp_path / "run", record, calls, policies[-1], folder)


def test_the_gsm8k_pretrained_preset_runs_a_step_from_the_fixture(tmp_path, scripted_rewards):
    """The preset at its own settings, except the sizes a CPU test can afford: one step of 2 x 2 completions of 16
    tokens, 2 held-out questions, pass@2 (the preset: 16 x 8 of 400 tokens, 200 questions, pass@4)."""
    preset = config.PRESETS["gsm8k_pretrained"]
    assert (preset["task"], preset["template"], preset["rl_lr"], preset["kl_coef"]) == ("gsm8k", "r1_chatml", 1e-6, 0.04)
    args = ["--preset", "gsm8k_pretrained", "--init_from", str(FIXTURES / "qwen2"),
            "--gsm8k_dir", str(write_gsm8k(tmp_path / "gsm8k")), "--rl_steps", "1", "--prompts_per_step", "2",
            "--group_size", "2", "--max_new_tokens", "16", "--rl_eval_n", "2", "--pass_k", "2", "--device", "cpu",
            "--threads", "1", "--out_dir", str(tmp_path / "run")]
    record = train.main(args)
    assert record["stage"] == "final"
    saved = load_checkpoint(str(tmp_path / "run" / "grpo"))[1]["train_config"]
    assert {k: saved[k] for k in ("micro_batch", "forward_chunk", "rl_lr", "kl_coef", "group_size", "template")} == \
        {"micro_batch": 4, "forward_chunk": 16, "rl_lr": 1e-6, "kl_coef": 0.04, "group_size": 2, "template": "r1_chatml"}
