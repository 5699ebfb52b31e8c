"""Stage 4 of the R1 pipeline, RL for all scenarios: the mixed task, the mixture sampler that draws each RL step's
questions by task, the per-task held-out scores, and how stage 4 wires its settings (the mixture, the learned
reward, the language reward) into stage 2's RL. The whole pipeline with a kill in stage 4 is in
test_rejection.py."""

import random

import pytest
import torch

import config
import reward_model
import sample
import tasks
import train
from scripted import scripted_policy


# ---------------------------------------------------------------------------------------------
# The mixed task
# ---------------------------------------------------------------------------------------------
def test_task_of_tells_the_generators_apart():
    arithmetic, test = tasks.make_splits("arithmetic", 300, 50, seed=0)
    word, _ = tasks.make_splits("word", 300, 50, seed=0)
    assert {tasks.task_of(p) for p in arithmetic + test} == {"arithmetic"}
    assert {tasks.task_of(p) for p in word} == {"word"}
    assert tasks.task_of(tasks.Problem("What is 12 apples plus 3?", "", "15")) == "word"  # words: not arithmetic


def test_the_mixed_task_is_each_tasks_own_split_in_the_asked_shares_shuffled_and_leak_free():
    train_mix, test_mix = tasks.make_splits("mix", 200, 40, seed=3, word_frac=0.25)
    kinds = [tasks.task_of(p) for p in train_mix]
    assert kinds.count("word") == 50 and kinds.count("arithmetic") == 150
    assert [tasks.task_of(p) for p in test_mix].count("word") == 10
    # each part is exactly the split its own task makes with the same seed (so the same questions as --task word)
    arithmetic = tasks.make_splits("arithmetic", 150, 30, seed=3)
    word = tasks.make_splits("word", 50, 10, seed=3)
    assert sorted(map(str, train_mix)) == sorted(map(str, arithmetic[0] + word[0]))
    assert sorted(map(str, test_mix)) == sorted(map(str, arithmetic[1] + word[1]))
    assert kinds[:40] != sorted(kinds[:40])  # shuffled together, not one task then the other
    assert not {p.question for p in train_mix} & {p.question for p in test_mix}
    assert tasks.make_splits("mix", 200, 40, seed=3, word_frac=0.25) == (train_mix, test_mix)  # seeded
    assert tasks.make_splits("mix", 80, 40, seed=3, word_frac=0.25)[1] == test_mix  # test: not moved by n_train
    with pytest.raises(ValueError, match="word_frac=1.5: a share"):
        tasks.make_splits("mix", 10, 10, seed=0, word_frac=1.5)


def test_a_mixed_runs_splits_are_rebuilt_from_its_config_as_the_run_made_them():
    cfg = config.parse_config(["--task", "mix", "--word_frac", "0.4", "--n_train", "100", "--n_test", "20"])
    assert sample.rebuild_splits(vars(cfg), 100) == train.load_problems(cfg)
    assert [tasks.task_of(p) for p in train.load_problems(cfg)[1]].count("word") == 8


# ---------------------------------------------------------------------------------------------
# The mixture sampler
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, weights", [("arithmetic:1", {"arithmetic": 1.0}),
                                           ("arithmetic:3, word:1", {"arithmetic": 0.75, "word": 0.25}),
                                           ("word:2,arithmetic:0", {"word": 1.0, "arithmetic": 0.0}), ("", {})])
def test_a_mixture_is_read_as_normalised_weights(text, weights):
    assert tasks.parse_mix(text) == weights


@pytest.mark.parametrize("text, words", [("algebra:1", "'algebra' is not one of arithmetic, word"),
                                         ("word:1,word:2", "comes twice"), ("word:x", "the weight of word is 'x'"),
                                         ("word:-1", "must be >= 0"), ("word:0", "the weights sum to 0"),
                                         ("word", "the weight of word is ''")])
def test_a_malformed_mixture_is_refused_with_what_is_wrong(text, words):
    with pytest.raises(ValueError, match=words):
        tasks.parse_mix(text)


@pytest.mark.parametrize("weights, n, counts", [
    ({"arithmetic": 0.5, "word": 0.5}, 16, {"arithmetic": 8, "word": 8}),
    ({"arithmetic": 0.5, "word": 0.5}, 5, {"arithmetic": 3, "word": 2}),  # a tie: the first named gets it
    ({"a": 0.7, "b": 0.2, "c": 0.1}, 4, {"a": 3, "b": 1, "c": 0}),  # 2.8, 0.8, 0.4: floors 2, 0, 0; +1 a, +1 b
    ({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 16, {"a": 6, "b": 5, "c": 5}),
    ({"a": 0.25, "b": 0.75}, 16, {"a": 4, "b": 12})])
def test_apportion_splits_a_batch_by_largest_remainders_summing_to_the_batch(weights, n, counts):
    assert tasks.apportion(weights, n) == counts


def test_the_mixture_draws_each_steps_questions_in_the_tasks_shares_from_their_own_pools():
    a = [tasks.Problem(f"What is {i}+1?", "", str(i + 1)) for i in range(30)]
    w = [tasks.Problem(f"Ann has {i} pens. How many?", "", str(i)) for i in range(30)]
    mixture = tasks.Mixture(a + w, {"arithmetic": 0.25, "word": 0.75})
    drawn = mixture.draw(random.Random(0), 8)
    assert [tasks.task_of(p) for p in drawn] == ["arithmetic"] * 2 + ["word"] * 6
    assert len(set(drawn)) == 8 and set(drawn) <= set(a + w)
    assert mixture.draw(random.Random(0), 8) == drawn and mixture.draw(random.Random(1), 8) != drawn
    only = tasks.Mixture(a + w, {"word": 1.0}).draw(random.Random(0), 30)  # every word problem, none other
    assert sorted(only, key=str) == sorted(w, key=str)
    # no mixture: every problem alike, the same draws as random.sample (a run without --rl_mix is unchanged)
    assert tasks.Mixture(a + w).draw(random.Random(5), 8) == random.Random(5).sample(a + w, 8)
    with pytest.raises(ValueError, match="asks for word problems, and the training data has none"):
        tasks.Mixture(a, {"word": 1.0})
    with pytest.raises(ValueError, match="asks for 6 word problems at once and the training data has 5: raise"):
        tasks.Mixture(a + w[:5], {"arithmetic": 0.25, "word": 0.75}).draw(random.Random(0), 8)


def test_mixture_flags_are_checked_against_the_runs_data(capsys):
    for argv, words in ((["--rl_mix", "word:1"], "--rl_mix 'word:1' asks for word problems and --task arithmetic "
                                                 "has none"),
                        (["--rl_mix", "maths:1"], "--rl_mix 'maths:1': 'maths' is not one of"),
                        (["--pipeline", "r1"], "--stage4_mix 'arithmetic:0.5,word:0.5' asks for word problems"),
                        (["--word_frac", "0.3"], "--word_frac 0.3 has no effect here: it acts only with --task mix"),
                        (["--task", "mix", "--word_frac", "2"], "--word_frac must be in [0, 1]"),
                        (["--rl", "none", "--rl_mix", "arithmetic:1"], "acts only with --rl grpo or ppo"),
                        (["--stage4_rm", "1"], "acts only with --pipeline r1 and --stage4_steps N"),
                        (["--pipeline", "r1", "--task", "mix", "--stage4_steps", "0", "--rm_steps", "9"],
                         "--rm_steps 9 has no effect here")):
        with pytest.raises(SystemExit):
            config.parse_config(argv)
        assert words in capsys.readouterr().err, argv
    assert config.parse_config(["--pipeline", "r1", "--stage4_steps", "0"]).task == "arithmetic"  # stages 1-3 only
    cfg = config.parse_config(["--preset", "r1"])
    assert (cfg.task, cfg.rl_mix, cfg.stage4_mix, cfg.sft_direct_frac) == ("mix", "", "arithmetic:0.5,word:0.5", 0.0)


def test_each_rl_step_draws_its_questions_from_the_mixture_it_is_given(monkeypatch):
    seen = []
    monkeypatch.setattr(train.rollouts, "sample_groups",
                        lambda policy, tok, problems, cfg, *a, **k: seen.append(problems) or _stop())
    problems, _ = tasks.make_splits("mix", 400, 10, seed=0)
    cfg = config.parse_config(["--task", "mix", "--prompts_per_step", "8"])
    with pytest.raises(_Stop):
        train.rollouts.collect_rollouts(None, None, tasks.Mixture(problems, tasks.parse_mix("word:3,arithmetic:1")),
                                        cfg, random.Random(0), None)
    assert [tasks.task_of(p) for p in seen[0]] == ["word"] * 6 + ["arithmetic"] * 2
    with pytest.raises(_Stop):  # a plain list of problems: all alike, as random.sample draws them
        train.rollouts.collect_rollouts(None, None, problems, cfg, random.Random(0), None)
    assert seen[1] == random.Random(0).sample(problems, 8)


class _Stop(Exception):
    pass


def _stop():
    raise _Stop


def test_run_rl_hands_the_steps_a_mixture_of_rl_mix(monkeypatch):
    taken = []
    monkeypatch.setattr(train, "rl_step", lambda models, questions, run, step, stage=None:
                        taken.append((questions.weights, stage)) or _stop())
    monkeypatch.setattr(train, "evaluate_rl", lambda *a, **k: None)
    monkeypatch.setattr(train, "make_rl_models", lambda policy, cfg: train.RLModels(policy, policy, None))
    monkeypatch.setattr(train.memory, "model_table", lambda models: [])
    cfg = config.parse_config(["--task", "mix", "--rl_mix", "word:1"])
    problems, test = tasks.make_splits("mix", 50, 10, seed=0)
    run = train.Run(cfg, None, _NoMetrics(), "cpu")
    with pytest.raises(_Stop):
        train.run_rl(None, problems, test, run, stage="rl_all")
    assert taken == [({"word": 1.0}, "rl_all")]


class _NoMetrics:
    def log(self, **record):
        pass


# ---------------------------------------------------------------------------------------------
# Stage 4's settings, and its reward model
# ---------------------------------------------------------------------------------------------
def test_stage_4_is_stage_2s_rl_with_its_own_steps_mixture_and_rewards():
    cfg = config.parse_config(["--preset", "r1", "--stage4_steps", "7", "--stage4_rm", "0.3", "--rl_mix", "arithmetic:1",
                               "--stage4_language", "0.2", "--out_dir", "somewhere"])
    s4 = train.stage4_config(cfg)
    assert (s4.rl_steps, s4.rl_mix, s4.reward_rm, s4.reward_language) == (7, "arithmetic:0.5,word:0.5", 0.3, 0.2)
    assert s4.reward_model == "somewhere/reward_model"
    assert (cfg.rl_steps, cfg.rl_mix, cfg.reward_rm, cfg.reward_language) == (50, "arithmetic:1", 0.0, 0.0)  # stage 2's
    rules_only = train.stage4_config(config.parse_config(["--preset", "r1", "--stage4_rm", "0"]))
    assert rules_only.reward_model == "" and rules_only.reward_rm == 0


def test_stage_4_trains_its_reward_model_on_the_mixtures_questions_then_runs_rl_with_it(monkeypatch, tmp_path):
    built, ran = {}, {}
    monkeypatch.setattr(reward_model, "build", lambda policy, tok, problems, out_dir, train_config, n_test, steps,
                        seed: built.update(problems=problems, out_dir=out_dir, n_test=n_test, steps=steps,
                                           config=train_config) or {"pair_accuracy": 1.0})
    monkeypatch.setattr(train, "run_rl", lambda policy, train_, test, run, point, stage, evaluate_first:
                        ran.update(cfg=run.cfg, run_config=run.run_config, stage=stage, first=evaluate_first))
    cfg = config.parse_config(["--preset", "r1", "--out_dir", str(tmp_path), "--rm_pairs", "40", "--rm_steps", "3",
                               "--stage4_mix", "arithmetic:1,word:3"])
    problems, test = tasks.make_splits("mix", 200, 10, seed=0)
    logged = []
    run = train.Run(cfg, None, type("M", (), {"log": lambda self, **r: logged.append(r)})(), "cpu")
    train.run_stage4("the policy", problems, test, run)
    assert [tasks.task_of(p) for p in built["problems"]].count("word") == 30 and len(built["problems"]) == 40
    assert built["out_dir"] == str(tmp_path / "reward_model") and (built["n_test"], built["steps"]) == (4, 3)
    assert built["config"] == vars(cfg) and logged == [{"stage": "reward_model", "pair_accuracy": 1.0}]
    assert ran["cfg"] == train.stage4_config(cfg) and ran["run_config"] == vars(cfg)  # checkpoints: the run's config
    assert ran["stage"] == "rl_all" and ran["first"] is False
    built.clear()
    train.run_stage4("the policy", problems, test, run, point="a resume point of stage 4")
    assert not built  # resumed: the reward model on disk is read back by the RL stage, not trained again


def test_a_reward_model_is_built_from_pairs_that_fit_and_saved_where_stage_4_reads_it(tmp_path):
    from model import ModelConfig, Transformer
    problems, _ = tasks.make_splits("mix", 60, 4, seed=0)
    tok = tasks.train_tokenizer(tasks.corpus_texts(problems), 300)
    torch.manual_seed(0)
    policy = Transformer(ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=1, n_head=2, n_embd=16,
                                     max_seq_len=150))
    lines = []
    stats = reward_model.build(policy, tok, problems, str(tmp_path / "rm"), {"template": "compact"}, n_test=6,
                               steps=2, log=lines.append)
    dropped = int(lines[0].split()[1])  # "dropped D of 60 pairs longer than the model's 150 positions"
    assert lines[0].endswith("of 60 pairs longer than the model's 150 positions") and 0 < dropped < 60
    assert stats["test_pairs"] == 6 and set(stats) >= {"pair_accuracy", "loss"}
    loaded = reward_model.load(str(tmp_path / "rm"), policy)
    assert loaded.cfg.max_seq_len == 150 and not any(p.requires_grad for p in loaded.parameters())
    with pytest.raises(ValueError, match="0 of 60 preference pairs fit the model's 20 positions: too few"):
        reward_model.build(Transformer(ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=1, n_head=2, n_embd=16,
                                                   max_seq_len=20)), tok, problems, str(tmp_path / "x"),
                           {"template": "compact"}, n_test=6, steps=1, log=None)


# ---------------------------------------------------------------------------------------------
# Held-out scores per task
# ---------------------------------------------------------------------------------------------
def test_held_out_scores_of_a_mixture_give_each_tasks_pass_at_1_too():
    problems = [tasks.Problem("What is 2+3?", "2+3 = <<2+3=5>>5", "5"), tasks.Problem("What is 4+4?", "", "8"),
                tasks.Problem("Ann has 3 pens and buys 2. How many?", "3+2 = <<3+2=5>>5", "5")]
    tok = tasks.train_tokenizer(tasks.corpus_texts(problems), 300)
    answers = {p.question: [tasks.format_completion(p) if p.answer != "8" else " <think> x </think> <answer> 9 "
                            "</answer>"] for p in problems}
    policy = scripted_policy(tok, answers)
    out = sample.evaluate(policy, tok, problems, "compact", 60)
    assert out["pass_at_1"] == pytest.approx(2 / 3)
    assert out["pass_at_1_arithmetic"] == 0.5 and out["pass_at_1_word"] == 1.0
    assert "pass_at_1_word" not in sample.evaluate(policy, tok, problems[:2], "compact", 60)  # one task: no split


def test_stage_4s_steps_draw_from_their_own_random_stream_and_stage_2s_from_rl(monkeypatch):
    streams = []
    monkeypatch.setattr(train, "step_rng", lambda seed, stream, step: streams.append((seed, stream, step)) or _stop())
    policy = torch.nn.Linear(1, 1)
    models = train.RLModels(policy, policy, torch.optim.SGD(policy.parameters(), lr=0.1))
    run = train.Run(config.parse_config(["--seed", "3"]), None, None, "cpu")
    for stage in ("grpo", "rl_all"):
        with pytest.raises(_Stop):
            train.rl_step(models, [], run, 5, stage)
    assert streams == [(3, "rl", 5), (3, "rl_all", 5)]


def test_a_reward_model_that_cannot_be_built_ends_stage_4_with_one_line(monkeypatch, tmp_path):
    def too_long(*a, **k):
        raise ValueError("1 of 40 preference pairs fit the model's 20 positions: too few")
    monkeypatch.setattr(reward_model, "build", too_long)
    cfg = config.parse_config(["--preset", "r1", "--out_dir", str(tmp_path), "--rm_pairs", "40"])
    problems, test = tasks.make_splits("mix", 200, 10, seed=0)
    with pytest.raises(SystemExit, match="^error: stage 4's reward model: 1 of 40 preference pairs fit .* raise "
                                         "--rm_pairs, or --stage4_rm 0 for the rules alone$"):
        train.run_stage4("the policy", problems, test, train.Run(cfg, None, _NoMetrics(), "cpu"))
