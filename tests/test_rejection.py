"""Stage 3 of the R1 pipeline (rejection.py): the readability rule, the verdicts, deduplication, the candidates
file that a killed run resumes from, rejection sampling from a scripted policy whose completions are known, the
non-reasoning data, the SFT mix, where stage 3 starts, and the whole pipeline at a tiny size with a kill."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

import checkpoint
import config
import rejection
import tasks
import train
from model import ModelConfig, Transformer
from scripted import NoEOS, scripted_policy

CHARS = rejection.alphabet([tasks.Problem("What is 12+30*4?", "30*4 = <<30*4=120>>120\n12+120 = <<12+120=132>>132",
                                          "132")])
GOOD = " <think> 30*4 = <<30*4=120>>120\n12+120 = <<12+120=132>>132 </think> <answer> 132 </answer>"


@pytest.mark.parametrize("text, why", [
    (GOOD, ""),
    (" <think> </think> <answer> 132 </answer>", "no steps"),
    (" <think> 30*4 = <<30*4=121>>120\n12+120 = <<12+120=132>>132 </think> <answer> 132 </answer>", "wrong step"),
    (" <think> 30*4 = <<30*4=120>>120\n30*4 = <<30*4=120>>120\n12+120 = <<12+120=132>>132 </think> "
     "<answer> 132 </answer>", "repeated step"),
    (" <think> 30*4 = <<30*4=120>>120\n12+120 = <<12+120=132>>132 so </think> <answer> 132 </answer>",
     "foreign character 'o'"),  # 's' is in "answer": the first character no worked solution uses is 'o'
])
def test_the_readability_rule(text, why):
    assert rejection.readable(text, CHARS) == why


@pytest.mark.parametrize("text, gold, truncated, expected", [
    (GOOD, "132", False, "kept"),
    (GOOD, "132", True, "truncated"),  # cut at max_new_tokens: refused first, whatever it holds
    (GOOD.replace("</answer>", ""), "132", False, "format"),
    (GOOD, "133", False, "wrong"),
    (GOOD.replace("<<30*4=120>>", "<<30*4=12>>"), "132", False, "unreadable"),  # right answer, wrong step
])
def test_a_verdict_checks_truncation_then_format_then_the_answer_then_readability(text, gold, truncated, expected):
    assert rejection.verdict(text, gold, truncated, CHARS) == expected


def test_dedupe_keeps_the_first_of_each_question_and_completion_with_spaces_normalised():
    p, q = tasks.Problem("What is 1+2?", "", "3"), tasks.Problem("What is 2+1?", "", "3")
    pairs = [(p, " a  b"), (p, "a b "), (q, " a b"), (p, " a c")]
    assert rejection.dedupe(pairs) == [(p, " a  b"), (q, " a b"), (p, " a c")]


def test_read_candidates_returns_whole_batches_and_cuts_off_a_partial_one(tmp_path):
    path = tmp_path / "c.jsonl"
    whole = '{"question": "a"}\n{"done": 0}\n{"question": "b"}\n{"question": "c"}\n{"done": 1}\n'
    path.write_text(whole + '{"question": "d"}\n{"quest')  # batch 2 killed mid-write
    assert rejection.read_candidates(str(path)) == [[{"question": "a"}], [{"question": "b"}, {"question": "c"}]]
    assert path.read_text() == whole
    assert rejection.read_candidates(str(tmp_path / "none.jsonl")) == []


# tok: the a+b tokenizer of tests/conftest.py
def scripted_sampling(tok):
    """Three questions, two samples each, with known verdicts: q0 right twice (the same text: one after
    dedupe), q1 right once and wrong once, q2 truncated once and unformatted once."""
    qs = [tasks.Problem(f"What is {a}+{b}?", f"{a}+{b} = <<{a}+{b}={a + b}>>{a + b}", str(a + b))
          for a, b in ((1, 2), (3, 4), (5, 1))]
    right = [tasks.format_completion(p) for p in qs]
    scripts = {qs[0].question: [right[0], right[0]], qs[1].question: [right[1], right[1].replace("7 </answer>", "8 </answer>")],
               qs[2].question: [NoEOS(right[2] + " 6 6 6 6 6 6 6 6 6 6 6 6"), " 6"]}
    return qs, scripted_policy(tok, scripts), right


def test_rejection_sampling_from_a_scripted_policy_counts_and_keeps_what_it_should(tok, tmp_path):
    qs, policy, right = scripted_sampling(tok)
    cfg = config.TrainConfig(rs_samples=2, rs_batch=2, max_new_tokens=24)
    path = str(tmp_path / "candidates.jsonl")
    kept, stats = rejection.rejection_sample(policy, tok, qs, cfg, rejection.alphabet(qs), path)
    assert [(p.question, t) for p, t in kept] == [(qs[0].question, right[0]), (qs[1].question, right[1])]
    assert stats == dict(questions=3, samples=6, kept=3, wrong=1, format=1, truncated=1, unreadable=0,
                         kept_unique=2, acceptance_rate=0.5, questions_with_kept=2 / 3)
    records = [json.loads(line) for line in open(path)]
    assert [r.get("done") for r in records if "done" in r] == [0, 1]  # 2 questions, then 1: two whole batches
    assert [r["verdict"] for r in records if "verdict" in r] == ["kept", "kept", "kept", "wrong", "truncated", "format"]


def test_rejection_sampling_resumes_after_the_last_whole_batch_and_gives_the_same_result(tok, tmp_path, monkeypatch):
    qs, policy, _ = scripted_sampling(tok)
    cfg = config.TrainConfig(rs_samples=2, rs_batch=2, max_new_tokens=24)
    path = str(tmp_path / "candidates.jsonl")
    whole = rejection.rejection_sample(policy, tok, qs, cfg, rejection.alphabet(qs), path)
    lines = open(path).read().splitlines(keepends=True)
    open(path, "w").write("".join(lines[:5]) + lines[5][:10])  # batch 0 whole, batch 1 cut by a kill
    sampled = []
    real = rejection.sample_batch
    monkeypatch.setattr(rejection, "sample_batch", lambda *a: sampled.append(a[2]) or real(*a))
    assert rejection.rejection_sample(policy, tok, qs, cfg, rejection.alphabet(qs), path) == whole
    assert sampled == [qs[2:]]  # only the batch that was cut
    assert rejection.rejection_sample(None, tok, qs, cfg, rejection.alphabet(qs), path) == whole  # all read back


def test_non_reasoning_questions_take_one_operation_avoid_the_excluded_and_are_answered_directly():
    exclude = {tasks.normalise_question(f"What is {a}+{b}?") for a in range(100) for b in range(10)}
    problems = rejection.non_reasoning(50, 0, 2, exclude)
    assert len(problems) == 50 == len({p.question for p in problems})
    assert all(p.reasoning.count("<<") == 1 and tasks.normalise_question(p.question) not in exclude for p in problems)
    assert problems == rejection.non_reasoning(50, 0, 2, exclude) != rejection.non_reasoning(50, 1, 2, exclude)
    assert rejection.non_reasoning(0, 0, 2, exclude) == []


def test_the_sft_mix_is_the_kept_completions_as_sampled_then_the_direct_answers(tok):
    p, d = tasks.Problem("What is 1+2?", "", "3"), tasks.Problem("What is 4+4?", "4+4 = <<4+4=8>>8", "8")
    kept = [(p, " <think> 1+2 = <<1+2=3>>3 </think> <answer> 3 </answer>")]
    examples = rejection.stage_examples(kept, [d], tok, "compact", 200)
    enc = lambda text: tasks.encode(tok, text)
    assert examples == [(enc("User: What is 1+2?\nAssistant:"), enc(kept[0][1]) + [tasks.EOS_ID]),
                        (enc("User: What is 4+4?\nAssistant:"), enc(" <think> </think> <answer> 8 </answer>")
                         + [tasks.EOS_ID])]
    longest = max(len(a) + len(b) for a, b in examples)
    assert len(rejection.stage_examples(kept, [d], tok, "compact", longest - 1)) == 1  # too long: dropped


def test_stage_3_starts_from_the_seeded_initial_weights_the_stage_1_model_or_a_copy_of_the_rl_policy(tmp_path):
    cfg = config.TrainConfig(seed=3, out_dir=str(tmp_path), rs_init="base")
    mcfg = ModelConfig(vocab_size=300, n_layer=1, n_head=2, n_embd=16, max_seq_len=32)
    torch.manual_seed(3)
    initial = Transformer(mcfg)
    policy = Transformer(mcfg)  # another draw: a trained policy stands in
    base = train.stage3_start(policy, cfg, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), initial.state_dict().values()))
    cfg.rs_init = "rl"
    copy = train.stage3_start(policy, cfg, "cpu")
    assert copy is not policy and all(torch.equal(a, b) for a, b in zip(copy.state_dict().values(),
                                                                         policy.state_dict().values()))
    from model import save_checkpoint
    save_checkpoint(str(tmp_path / "sft"), initial)
    cfg.rs_init = "sft"
    loaded = train.stage3_start(policy, cfg, "cpu")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), initial.state_dict().values()))
    # with --init_from, the stage-1 model of that run: the folder itself if it is an sft/, else the sft/ beside it
    save_checkpoint(str(tmp_path / "grpo"), policy)
    for init in ("grpo", "sft", "grpo/"):
        cfg.init_from, cfg.out_dir = str(tmp_path / init), str(tmp_path / "elsewhere")
        assert config.stage1_folder(cfg) == str(tmp_path / "sft")
        loaded = train.stage3_start(policy, cfg, "cpu")
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), initial.state_dict().values()))


def test_stages_3_4_from_a_folder_without_its_stage_1_model_are_refused_by_name(tmp_path):
    (tmp_path / "grpo").mkdir()
    cfg = config.TrainConfig(pipeline="r1", task="mix", rs_init="sft", init_from=str(tmp_path / "grpo"), rl_steps=0)
    with pytest.raises(ValueError, match=f"--rs_init sft .* is {tmp_path / 'sft'}: no such folder"):
        config.check_config(cfg)
    config.check_config(dataclasses.replace(cfg, rs_init="base"))  # the seeded initial weights need no folder
    for bad in (dict(init_from=""), dict(pipeline="cold_start", rs_init="base")):  # skipping stage 2 needs both
        with pytest.raises(ValueError, match="--rl_steps must be >= 1, got 0"):
            config.check_config(dataclasses.replace(cfg, **bad))


def test_the_stage_3_flags_act_only_in_the_r1_pipeline_which_needs_rl():
    with pytest.raises(SystemExit):
        config.parse_config(["--rs_samples", "8"])
    with pytest.raises(ValueError, match="--rs_samples 8 has no effect here: it acts only with --pipeline r1"):
        config.check_config(config.TrainConfig(rs_samples=8))
    with pytest.raises(ValueError, match="--pipeline r1 samples stage 3's data from the RL model"):
        config.check_config(config.TrainConfig(pipeline="r1", rl="none"))
    assert config.parse_config(["--preset", "r1"]).pipeline == "r1"


# ---------------------------------------------------------------------------------------------
# The pipeline, stages 1-4, at a tiny size
# ---------------------------------------------------------------------------------------------
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--preset", "smoke", "--pipeline", "r1", "--n_train", "300", "--sft_steps", "8", "--eval_every", "4",
        "--eval_n", "4", "--rl_steps", "2", "--rl_eval_every", "2", "--rl_eval_n", "4", "--threads", "1",
        "--rs_questions", "12", "--rs_samples", "2", "--rs_batch", "4", "--rs_sft_steps", "8", "--task", "mix",
        "--rl_mix", "arithmetic:1", "--stage4_steps", "4", "--rm_pairs", "40", "--rm_steps", "4", "--rs_lr", "0.01"]
# The tiny model answers nothing right, so the sampler of stage 3 is scripted: for each question, its worked
# solution (kept) and " 0" (no format). The rest of the pipeline is the real one.
SCRIPTED_SAMPLER = """
import rejection, tasks
rejection.sample_batch = lambda policy, tok, problems, cfg, generator: (
    [t for p in problems for t in (tasks.format_completion(p), " 0")], [False] * 2 * len(problems))
"""


def run_pipeline(out_dir, extra=(), stop_at=None):
    """train.main(TINY) in a new process with the scripted stage-3 sampler; stop_at=(stage, step, key): SIGKILL
    right after the record of that stage and step that holds `key` is logged."""
    code = f"""
import os, signal, sys
sys.path.insert(0, {ROOT!r}); sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
import checkpoint, train
{SCRIPTED_SAMPLER}
log, stop_at = checkpoint.Metrics.log, {stop_at!r}
def stopping_log(self, **record):
    log(self, **record)
    if stop_at and (record.get("stage"), record.get("step")) == stop_at[:2] and stop_at[2] in record:
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.Metrics.log = stopping_log
train.main({TINY + list(extra) + ["--out_dir", str(out_dir)]!r})
"""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


TIMING = {"time", "step_s", "rollout_s", "reward_s", "logprob_s", "update_s", "adv_s", "critic_s", "rollout_tok_s",
          "minutes", "memory", "stage_minutes"}


def records(out_dir) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING and not k.endswith("_mib")}
            for r in checkpoint.read_jsonl(os.path.join(out_dir, "metrics.jsonl")) if r.get("stage") != "stage_end"]


@pytest.fixture(scope="module")
def whole_pipeline(tmp_path_factory):
    out = tmp_path_factory.mktemp("r1")
    done = run_pipeline(out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def test_the_r1_pipeline_runs_four_stages_and_prints_their_table(whole_pipeline):
    out, stdout = whole_pipeline
    recs = records(out)
    (rs,) = [r for r in recs if r["stage"] == "rejection"]
    # 12 questions x (the worked solution: kept, " 0": no format); 1/3 non-reasoning in a 0.25 mix: 4
    assert (rs["samples"], rs["kept"], rs["format"], rs["kept_unique"], rs["acceptance_rate"]) == (24, 12, 12, 12, 0.5)
    assert rs["questions_with_kept"] == 1.0 and rs["non_reasoning"] == 4 and rs["examples"] == 16
    assert [r["step"] for r in recs if r["stage"] == "rs_sft" and "loss" in r] == [0, 7]
    # stage 3's SFT warms up to its own peak --rs_lr 0.01 (5 warm-up steps: 1/5 of it at step 0), stage 1's to --lr
    first_lr = {r["stage"]: r["lr"] for r in recs if r.get("step") == 0 and "lr" in r}
    assert first_lr["rs_sft"] == pytest.approx(0.01 / 5) and first_lr["sft"] == pytest.approx(2e-3 / 5)
    final = recs[-1]
    assert final["stage"] == "final" and list(final["stages"]) == ["sft", "grpo", "rs_sft", "rl_all"]
    assert "length" in final["stages"]["rs_sft"] and "pass_at_2" in final["stages"]["rs_sft"]
    assert "pass_at_1_word" in final["stages"]["rl_all"]  # the held-out problems of a mix: pass@1 per task
    assert "| 3. rejection sampling -> SFT |" in stdout and "| 2. reasoning RL (GRPO) |" in stdout
    assert "| 4. RL for all scenarios (GRPO) |" in stdout
    # stage 4: its reward model first, then 4 RL steps on the learned reward beside the rules, no evaluation
    # before its first step (stage 3's last one is of the same model), one at steps 2 and 4
    (rm,) = [r for r in recs if r["stage"] == "reward_model"]
    assert rm["test_pairs"] == 4 and 0 <= rm["pair_accuracy"] <= 1
    steps = [r for r in recs if r["stage"] == "rl_all" and "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4] and all("rm_score" in r for r in steps)
    assert [r["step"] for r in recs if r["stage"] == "rl_all" and "eval_pass_at_1" in r] == [2, 4]
    for stage in ("sft", "grpo", "rs_sft", "rl_all", "reward_model"):
        assert os.path.isfile(os.path.join(out, stage, "model.safetensors"))


def test_stages_3_and_4_run_again_from_a_finished_runs_stage_2_model_with_no_rl_steps(whole_pipeline, tmp_path):
    whole, _ = whole_pipeline
    again = run_pipeline(tmp_path / "again", ["--init_from", str(whole / "grpo"), "--rl_steps", "0",
                                              "--rs_init", "sft"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"| 2. --init_from {whole / 'grpo'} (no RL steps here) |" in again.stdout
    assert "| 1. cold-start SFT |" not in again.stdout and "| 4. RL for all scenarios (GRPO) |" in again.stdout
    recs, first = records(tmp_path / "again"), records(whole)
    assert not [r for r in recs if r["stage"] == "grpo" and "loss" in r]  # no RL step: one evaluation, at step 0
    final = recs[-1]
    assert list(final["stages"]) == ["grpo", "rs_sft", "rl_all"]
    evals = [r for r in first if r["stage"] == "grpo" and "eval_pass_at_1" in r]
    assert final["stages"]["grpo"]["pass_at_1"] == evals[-1]["eval_pass_at_1"]  # the same model, greedy
    assert [r for r in recs if r["stage"] == "rejection"] == [r for r in first if r["stage"] == "rejection"]


@pytest.mark.parametrize("stop_at, resumed_from, stage", [
    (("rs_sft", 7, "loss"), "from rs_sft step 4", "rs_sft"),  # after the checkpoint of rs_sft step 4
    (("rl_all", 3, "loss"), "from rl_all step 2", "rl_all")])  # after the checkpoint of stage 4's step 2
def test_a_pipeline_killed_in_stage_3_or_4_resumes_to_the_same_records_and_weights(whole_pipeline, tmp_path, stop_at,
                                                                                  resumed_from, stage):
    whole, _ = whole_pipeline
    out = tmp_path / "killed"
    first = run_pipeline(out, stop_at=stop_at)
    assert first.returncode == -9, first.stderr[-2000:]
    second = run_pipeline(out)
    assert second.returncode == 0 and resumed_from in second.stdout, second.stderr[-2000:]
    assert ("reward model step" in second.stdout) == (stage == "rs_sft")  # stage 4 reads its reward model back
    assert records(out) == records(whole)
    from safetensors.torch import load_file
    a, b = (load_file(os.path.join(d, stage, "model.safetensors")) for d in (whole, out))
    assert all(torch.equal(a[k], b[k]) for k in a)
