"""Distillation (distill.py): the student FLOPs counter (compute.py) against the tokens the
loops really ran, the student at half the teacher's size, verified traces from a scripted teacher, the
equal-compute step count, bad teachers refused in one line, and the whole comparison at a tiny size: both arms in
one table at equal FLOPs, a run killed in the distill arm resumed without redoing the rest, a finished run left."""

import dataclasses
import json
import os
import random
import re
import shutil

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer

import checkpoint
import config
import distill
import rejection
import rollouts
import sample
import sft
import tasks
import train
from config import TrainConfig
from model import ModelConfig
from test_rejection import whole_pipeline  # noqa: F401  the tiny R1 run, stages 1-4: the teacher


# ---------------------------------------------------------------------------------------------
# The student's size
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("teacher, expected", [
    ((4, 4, 128), (2, 64, 4)),  # the default model: heads of 16
    ((2, 2, 32), (1, 16, 2)),  # the smoke preset
    ((8, 8, 48), (4, 24, 6)),  # 24 / 8 and 24 / 7 are no even width: 6 heads of 4
    ((3, 4, 128), (1, 64, 4)),  # half rounded down
])
def test_the_student_has_half_the_layers_and_width_and_heads_of_even_width(teacher, expected):
    t = ModelConfig(vocab_size=300, n_layer=teacher[0], n_head=teacher[1], n_embd=teacher[2], max_seq_len=77)
    s = distill.student_config(t)
    assert (s.n_layer, s.n_embd, s.n_head) == expected
    assert (s.vocab_size, s.max_seq_len, s.rope_theta) == (300, 77, t.rope_theta)
    s = distill.student_config(t, n_layer=3, n_embd=96, n_head=3)  # given: as given
    assert (s.n_layer, s.n_embd, s.n_head) == (3, 96, 3)


@pytest.mark.parametrize("teacher, given, words", [
    ((1, 2, 32), {}, "--student_layers: half of the teacher's 1 block is none"),
    ((2, 1, 34), {}, "--student_embd 17 (half the teacher's 34) splits into no heads of even width"),
    ((2, 2, 32), dict(n_head=3), "--student_embd 16 (half the teacher's 32) must split into --student_heads 3"),
])
def test_a_student_that_cannot_be_halved_is_an_error_naming_the_flag(teacher, given, words):
    t = ModelConfig(vocab_size=300, n_layer=teacher[0], n_head=teacher[1], n_embd=teacher[2])
    with pytest.raises(ValueError) as e:
        distill.student_config(t, **given)
    assert words in str(e.value)


def test_the_student_inherits_the_teachers_stage_1_2_flags_but_not_what_would_add_unseen_compute(capsys):
    teacher = {**dataclasses.asdict(TrainConfig(pipeline="r1", rs_samples=8, rl="ppo", gamma=0.9, lr=1e-3,
                                                kl_coef=0.01, batch_size=32, dynamic_sampling=True, sft_minutes=5.0)),
               "from_a_later_version": 1}
    args = distill.parse_args(["teacher", "--seed", "4", "--rl_steps", "7", "--out_dir", "d"])
    cfg = distill.run_config(teacher, args, ModelConfig(n_layer=2, n_head=4, n_embd=64, max_seq_len=90))
    config.check_config(cfg)  # a run train.py could make: no flag that changes nothing
    assert (cfg.lr, cfg.kl_coef, cfg.batch_size, cfg.sft_steps, cfg.rl_steps, cfg.seed) == (1e-3, 0.01, 32, 1500, 7, 4)
    assert (cfg.rl, cfg.pipeline, cfg.rs_samples, cfg.gamma, cfg.dynamic_sampling, cfg.sft_minutes) == \
        ("grpo", "cold_start", 4, 1.0, False, 0.0)
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.max_seq_len, cfg.teacher) == (2, 64, 4, 90, "teacher")
    assert "does not inherit the teacher's --dynamic_sampling, --sft_minutes" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# Verified traces, from a scripted teacher
# ---------------------------------------------------------------------------------------------
def test_verified_traces_are_exactly_the_right_formatted_whole_readable_ones_deduplicated(tmp_path, monkeypatch):
    problems = [tasks.Problem(f"What is {a}+{b}*2?", f"{b}*2 = <<{b}*2={2 * b}>>{2 * b}\n{a}+{2 * b} = "
                              f"<<{a}+{2 * b}={a + 2 * b}>>{a + 2 * b}", str(a + 2 * b)) for a, b in
                [(1, 2), (3, 4), (5, 6), (7, 8), (9, 1), (2, 3)]]
    right = {p.question: tasks.format_completion(p) for p in problems}

    def script(p, i):
        """Six samples: right (only for every other problem), the same with its spaces doubled (a duplicate),
        a wrong answer, a right answer through a wrong step, no format, the right text cut at max_new_tokens."""
        ok, wrong = right[p.question], right[p.question].replace(f"{p.answer} </answer>", "99 </answer>")
        wrong_step = re.sub(r"=(\d+)>>", lambda m: f"={int(m[1]) + 1}>>", ok, count=1)
        return [(ok if i % 2 == 0 else wrong, False), (ok.replace(" ", "  ") if i % 2 == 0 else wrong, False),
                (wrong, False), (wrong_step, False), (f" {p.answer}", False), (ok, True)]

    order = {p.question: i for i, p in enumerate(problems)}
    sampled = []

    def scripted(policy, tok, part, cfg, generator):
        sampled.append(len(part))
        rows = [s for p in part for s in script(p, order[p.question])]
        return [t for t, _ in rows], [c for _, c in rows]

    monkeypatch.setattr(rejection, "sample_batch", scripted)
    cfg = distill.DistillConfig(seed=3, traces_questions=5, traces_samples=6, traces_batch=2)
    path = str(tmp_path / "traces" / "candidates.jsonl")
    kept, stats = distill.verified_traces(None, None, problems, cfg, path)
    asked = [json.loads(line)["question"] for line in open(path) if "question" in line][::6]
    assert len(asked) == 5 and asked == [p.question for p in random.Random("3-distill").sample(problems, 5)]
    assert kept == [(by_q, right[q]) for q in asked for by_q in problems if by_q.question == q and order[q] % 2 == 0]
    n_right = len(kept)
    assert stats["kept"] == 2 * n_right and stats["kept_unique"] == n_right
    assert (stats["wrong"], stats["unreadable"], stats["format"], stats["truncated"]) == \
        (5 + 2 * (5 - n_right), 5, 5, 5)
    assert sampled == [2, 2, 1]  # batches of traces_batch questions
    monkeypatch.setattr(rejection, "sample_batch", None)  # all read back from the candidates file
    assert distill.verified_traces(None, None, problems, cfg, path) == (kept, stats)


# ---------------------------------------------------------------------------------------------
# Bad teachers
# ---------------------------------------------------------------------------------------------
def one_line_error(argv) -> str:
    with pytest.raises(SystemExit) as e:
        distill.main(argv)
    message = str(e.value.code)
    assert message.startswith("error: ") and "\n" not in message
    return message


def test_a_missing_unfinished_or_non_r1_teacher_or_an_impossible_student_is_one_error_line(whole_pipeline, tmp_path):
    teacher, _ = whole_pipeline
    assert "no such folder" in one_line_error([str(tmp_path / "none")])
    shutil.copytree(os.path.join(teacher, "sft"), tmp_path / "cold" / "sft")
    assert "no rs_sft/ checkpoint" in one_line_error([str(tmp_path / "cold")])  # neither rl_all/ nor rs_sft/
    unfinished = tmp_path / "unfinished"
    shutil.copytree(teacher, unfinished)
    lines = open(unfinished / "metrics.jsonl").readlines()
    open(unfinished / "metrics.jsonl", "w").writelines(line for line in lines if '"stage": "final"' not in line)
    assert "has not finished" in one_line_error([str(unfinished)])
    assert "--student_heads 3" in one_line_error([str(teacher), "--student_heads", "3", "--out_dir", str(tmp_path)])
    assert "no stage9/ checkpoint (--teacher_stage)" in one_line_error([str(teacher), "--teacher_stage", "stage9"])


def test_the_teacher_is_the_runs_final_model_stage_4s_or_in_a_run_of_stages_1_to_3_stage_3s(whole_pipeline,
                                                                                            tmp_path):
    teacher, _ = whole_pipeline
    _, _, config_ = distill.load_teacher(str(teacher), "cpu")
    weights = lambda folder, stage: load_file(os.path.join(folder, stage, "model.safetensors"))
    model, _, _ = distill.load_teacher(str(teacher), "cpu")
    final = weights(teacher, "rl_all")
    assert all(torch.equal(p, final[k]) for k, p in model.state_dict().items() if k in final)
    three = tmp_path / "three_stages"
    shutil.copytree(teacher, three, ignore=shutil.ignore_patterns("rl_all"))
    model, _, _ = distill.load_teacher(str(three), "cpu")
    stage3 = weights(teacher, "rs_sft")
    assert not all(torch.equal(final[k], stage3[k]) for k in final)  # the two stages' models differ
    assert all(torch.equal(p, stage3[k]) for k, p in model.state_dict().items() if k in stage3)
    assert config_["stage4_steps"] == 4


# ---------------------------------------------------------------------------------------------
# The comparison at a tiny size: the teacher of test_rejection's pipeline, a scripted teacher sampler
# ---------------------------------------------------------------------------------------------
ARGS = ["--threads", "1", "--traces_questions", "24", "--traces_samples", "2", "--traces_batch", "8"]
TIMING = {"time", "step_s", "rollout_s", "reward_s", "logprob_s", "update_s", "adv_s", "rollout_tok_s", "minutes",
          "memory", "peak_rss_reset"}


class Killed(Exception):
    """Stands for SIGKILL: raised right after a chosen record is written, so the files are as a kill leaves them."""


def run_distill(teacher, out, kill_at=None) -> dict:
    """distill.main on the tiny teacher, its sampler scripted (the worked solution, kept, and ' 0', no format), with
    what the loops really ran counted: 'sampled' teacher sampling calls, 'rollouts' (real prompt + completion
    tokens of each GRPO rollout), 'sft' (stage, non-pad input tokens of each SFT batch), 'starts' (stage, the
    weights each SFT stage starts from), 'rl_steps'. kill_at=(stage, step, key): Killed after that record."""
    seen = dict(sampled=0, rollouts=[], sft=[], starts=[], rl_steps=0, stage=None, evals=[])
    sample_groups, sft_batch, run_sft, rl_step, log = (rollouts.sample_groups, sft.sft_batch, sft.run_sft,
                                                       train.rl_step, checkpoint.Metrics.log)
    evaluate = sample.evaluate

    def sampler(policy, tok, problems, cfg, generator):
        seen["sampled"] += 1
        return [t for p in problems for t in (tasks.format_completion(p), " 0")], [False] * 2 * len(problems)

    def counted_groups(*a, **k):
        roll = sample_groups(*a, **k)
        seen["rollouts"].append(sum(map(len, roll.prompts)) + int(roll.mask.sum()))
        return roll

    def counted_batch(examples, idx, device):
        x, y, mask = sft_batch(examples, idx, device)
        seen["sft"].append((seen["stage"], int((x != tasks.PAD_ID).sum())))  # stage: grpo (its cold start) or distill
        return x, y, mask

    def staged_sft(model, examples, test, run, point=None, stage="sft", steps=None):
        seen["stage"] = "grpo" if stage == "sft" else stage  # the rl arm (its evaluations are GRPO's), or distill
        seen["starts"].append((stage, point is None, {k: v.clone() for k, v in model.state_dict().items()}))
        seen.setdefault("examples", {})[stage] = examples
        return run_sft(model, examples, test, run, point, stage, steps)

    def counted_step(*a):
        seen["rl_steps"] += 1
        return rl_step(*a)

    def recorded_evaluate(model, tok, problems, template, max_new_tokens, pass_k=1, temperature=0.6, top_p=0.95,
                          generator=None, *a, **k):
        seen["evals"].append((seen["stage"], [p.question for p in problems], (pass_k, temperature, top_p,
                              max_new_tokens), generator.initial_seed()))
        return evaluate(model, tok, problems, template, max_new_tokens, pass_k, temperature, top_p, generator, *a, **k)

    def killing_log(self, **record):
        log(self, **record)
        if kill_at and (record.get("stage"), record.get("step")) == kill_at[:2] and kill_at[2] in record:
            raise Killed

    with pytest.MonkeyPatch.context() as m:
        m.setattr(rejection, "sample_batch", sampler)
        m.setattr(rollouts, "sample_groups", counted_groups)
        m.setattr(sft, "sft_batch", counted_batch)
        m.setattr(sft, "run_sft", staged_sft)
        m.setattr(train, "rl_step", counted_step)
        m.setattr(train, "evaluate", recorded_evaluate)  # train.evaluate_rl's
        m.setattr(sample, "evaluate", recorded_evaluate)  # distill.evaluate_arm's
        m.setattr(checkpoint.Metrics, "log", killing_log)
        seen["final"] = distill.main([str(teacher), "--out_dir", str(out), *ARGS])
    return seen


def scrub(x):
    """A record without its timings, for comparing two runs."""
    if isinstance(x, dict):
        return {k: scrub(v) for k, v in x.items() if k not in TIMING and not k.endswith("_mib")}
    return x


def records(out) -> list[dict]:
    return [scrub(r) for r in checkpoint.read_jsonl(os.path.join(out, "metrics.jsonl"))]


@pytest.fixture(scope="module")
def distilled(whole_pipeline, tmp_path_factory):
    teacher, _ = whole_pipeline
    out = tmp_path_factory.mktemp("distill")
    return teacher, out, run_distill(teacher, out)


def test_the_comparison_runs_both_arms_from_the_same_weights_and_logs_one_table(distilled, capsys):
    teacher, out, seen = distilled
    final = seen["final"]
    assert final["stage"] == "final" and list(final["arms"]) == ["rl_cold_start", "rl", "distill"]
    for arm in final["arms"].values():
        assert {"pass_at_1", "pass_at_2", "cons_at_2", "shows_work", "student_flops", "steps"} <= set(arm)
    assert final["arms"]["rl"]["steps"] == {"sft": 8, "grpo": 2} and final["eval_n"] == 4
    (traces,) = [r for r in checkpoint.read_jsonl(os.path.join(out, "metrics.jsonl")) if r["stage"] == "traces"]
    assert (traces["samples"], traces["kept"], traces["format"], traces["kept_unique"]) == (48, 24, 24, 24)
    # the distill arm learns from the kept traces and nothing else: 24 worked solutions, none of the " 0" samples
    tok = Tokenizer.from_file(os.path.join(out, "distill", "tokenizer.json"))
    taught = [tasks.decode(tok, c[:-1]) for _, c in seen["examples"]["distill"]]
    assert len(taught) == 24 and all("<think>" in t and "<answer>" in t for t in taught)
    tok = Tokenizer.from_file(os.path.join(teacher, "rs_sft", "tokenizer.json"))
    enc = lambda text: len(tasks.encode(tok, text))
    samples = [r for b in rejection.read_candidates(os.path.join(out, "traces", "candidates.jsonl")) for r in b]
    assert len(samples) == 48 and {r["completion"] for r in samples[1::2]} == {" 0"}  # each question: worked, " 0"
    assert traces["teacher_tokens"] == sum(2 * enc(tasks.format_prompt(r["question"])) + enc(r["completion"]) + 1
                                           + enc(" 0") + 1 for r in samples[::2])  # the prompt twice, texts, EOS
    assert traces["teacher_flops"] == 2 * traces["teacher_params"] * traces["teacher_tokens"]
    for stage in ("sft", "grpo", "distill"):
        assert os.path.isfile(os.path.join(out, stage, "model.safetensors"))
    (_, fresh_rl, rl_start), (_, fresh_distill, distill_start) = seen["starts"]
    assert fresh_rl and fresh_distill and all(torch.equal(rl_start[k], distill_start[k]) for k in rl_start)
    student = load_file(os.path.join(out, "distill", "model.safetensors"))
    assert sum(v.numel() for v in student.values()) == final["student_params"]  # 1 layer x 16: half the teacher
    assert student["tok_emb.weight"].shape[1] == 16 and "blocks.1.attn.proj.weight" not in student


def test_the_distill_arm_is_scored_exactly_as_the_rl_arms_last_evaluation(distilled):
    _, _, seen = distilled
    *_, rl_last, distill_last = seen["evals"]  # (stage, questions, sampling settings, generator seed) of each call
    assert rl_last[0] == "grpo" and distill_last[0] == "distill" and rl_last[1:] == distill_last[1:]
    assert len(rl_last[1]) == 4 and rl_last[2] == (2, 0.6, 0.95, 48)


def test_the_flops_counter_matches_the_tokens_the_loops_really_ran(distilled):
    _, _, seen = distilled
    final, n = seen["final"], seen["final"]["student_params"]
    cold = sum(t for stage, t in seen["sft"] if stage == "grpo")
    grpo_tokens = sum(seen["rollouts"])  # smoke: kl_coef 0.04, mu 1, one minibatch: an update and 2 forward passes
    assert len(seen["rollouts"]) == 2 and final["arms"]["rl_cold_start"]["student_flops"] == 6 * n * cold
    assert final["arms"]["rl"]["student_flops"] == 6 * n * (cold + grpo_tokens) + 2 * n * 2 * grpo_tokens
    distilled_tokens = [t for stage, t in seen["sft"] if stage == "distill"]
    assert len(distilled_tokens) == sum(final["arms"]["distill"]["steps"].values())
    assert final["arms"]["distill"]["student_flops"] == 6 * n * sum(distilled_tokens)


def test_the_arms_spend_equal_student_flops_within_one_step(distilled):
    _, _, seen = distilled
    final, n = seen["final"], seen["final"]["student_params"]
    one_step = 6 * n * max(t for stage, t in seen["sft"] if stage == "distill")
    assert abs(final["arms"]["distill"]["student_flops"] - final["arms"]["rl"]["student_flops"]) <= one_step / 2
    assert final["flops_ratio"] == final["arms"]["distill"]["student_flops"] / final["budget_flops"]


def test_a_run_killed_in_the_distill_arm_resumes_there_and_ends_as_one_never_killed(distilled, tmp_path):
    teacher, whole, seen = distilled
    out = tmp_path / "killed"
    with pytest.raises(Killed):
        run_distill(teacher, out, kill_at=("distill", 4, "eval_pass_at_1"))  # its checkpoint written first
    again = run_distill(teacher, out)
    assert again["sampled"] == 0 and again["rl_steps"] == 0 and {s for s, _ in again["sft"]} == {"distill"}
    assert [(stage, fresh) for stage, fresh, _ in again["starts"]] == [("distill", False)]
    assert records(out) == records(whole)
    a, b = (load_file(os.path.join(d, "distill", "model.safetensors")) for d in (whole, out))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_finished_run_is_not_run_again(distilled, capsys):
    teacher, out, seen = distilled
    before = records(out)
    again = run_distill(teacher, out)
    assert (again["sampled"], again["rl_steps"], again["sft"]) == (0, 0, [])
    assert scrub(again["final"]) == scrub(seen["final"]) and records(out) == before
    assert "this run has finished" in capsys.readouterr().out
