"""Every flag of train.py, grouped (run, data, model, SFT, RL, rewards, evaluation, PPO), and the presets.

Each field of `TrainConfig` is a flag (`--name VALUE`) with one line of help (`python train.py --help`).
`PRESETS` are plain sets of defaults (`--preset NAME`); flags given on the command line override them.
`parse_config` reads the command line and `check_config` refuses, in one line, a value out of range, an
impossible combination, or a flag that would change nothing in the run it is given to (`ONLY_WITH`).
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict, dataclass, field, fields

import torch

import distributed
import grpo
import pretrained
import tasks


def opt(default, help: str):
    """A config field with its --help line."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # run
    out_dir: str = opt("runs/default", "where the checkpoints, metrics.jsonl and the resume point go")
    resume: bool = opt(True, "continue the run in out_dir from its resume point, if any (false: start over)")
    seed: int = opt(0, "seed of the data, the initial weights and every step's sampling")
    device: str = opt("auto", "'auto' (cuda if present, else cpu), 'cpu' or 'cuda'")
    threads: int = opt(0, "CPU threads for torch (0: torch's default)")
    # data
    task: str = opt("arithmetic", "'arithmetic', 'word' (GSM8K-style, generated), 'mix' (both) or 'gsm8k' (real files)")
    gsm8k_dir: str = opt("", "folder with GSM8K's train.jsonl and test.jsonl, for --task gsm8k")
    digits: int = opt(3, "arithmetic: most digits of each operand")
    mul_digits: int = opt(1, "arithmetic: most digits of the second factor of a product")
    min_ops: int = opt(2, "arithmetic: fewest operators per problem")
    max_ops: int = opt(2, "arithmetic: most operators per problem")
    word_frac: float = opt(0.5, "mix: share of word problems in each split, the rest arithmetic")
    n_train: int = opt(100_000, "training problems generated (none shared with the test split)")
    recheck_frac: float = opt(0.0, "share of training solutions written with one slip caught by 'wait, re-check:' "
                              "(tasks.with_recheck), in the SFT or pretraining text")
    n_test: int = opt(1000, "held-out problems in the test split")
    template: str = opt("compact", "prompt template: 'compact', 'r1' (DeepSeek-R1 Table 1, verbatim), or R1-Zero's "
                        "instruction in a pretrained model's chat format, 'r1_chatml' (Qwen2) or 'r1_llama3' "
                        "(with --init_from a Hugging Face folder)")
    vocab_size: int = opt(384, "BPE vocabulary size, at least 262 (the 256 bytes and 6 special tokens)")
    # model
    n_layer: int = opt(4, "Transformer blocks")
    n_head: int = opt(4, "attention heads")
    n_embd: int = opt(128, "model width")
    max_seq_len: int = opt(0, "longest prompt + completion (0: from the data; design: Sequence lengths from the data)")
    max_new_tokens: int = opt(0, "generation budget in evaluation and RL (0: 1.25x the longest worked solution)")
    # stage 1: cold-start SFT
    sft_steps: int = opt(1500, "optimizer steps of SFT")
    sft_minutes: float = opt(0.0, "optional wall-clock budget of SFT in minutes (0: none, stop on sft_steps)")
    batch_size: int = opt(64, "sequences per SFT step")
    lr: float = opt(2e-3, "SFT's peak learning rate")
    min_lr_ratio: float = opt(0.1, "SFT's final learning rate as a fraction of lr (cosine decay)")
    warmup_steps: int = opt(100, "SFT's linear warm-up steps")
    weight_decay: float = opt(0.1, "AdamW weight decay, on matrices only")
    grad_clip: float = opt(1.0, "clip the global gradient norm to this (0: off)")
    length_grouping: int = opt(1, "sort this many batches of examples by length before cutting them (1: off)")
    sft_direct_frac: float = opt(0.5, "fraction of SFT targets that give the answer alone (design: Mixed cold start)")
    sft_problems: int = opt(0, "stage 1 sees the worked solutions of only the first N training problems (0: all); "
                              "RL still draws its questions from all of them")
    pretrain_format_frac: float = opt(0.0, "r1_zero: share of pretraining documents that are R1-Zero transcripts, "
                                      "template and tags (pretrain.py; 0: a base that never saw them)")
    eval_every: int = opt(400, "SFT steps between a checkpoint and a held-out evaluation")
    eval_n: int = opt(200, "held-out problems in SFT's periodic evaluation (the final one uses all n_test)")
    # stage 2: RL, GRPO (DeepSeekMath Algorithm 1) or its PPO baseline
    rl: str = opt("grpo", "RL stage after SFT: 'grpo', 'ppo' (the baseline) or 'none' (SFT only)")
    init_from: str = opt("", "skip SFT and start RL from this checkpoint folder (e.g. runs/default/sft), or from a "
                         "Hugging Face model folder (config.json, safetensors, tokenizer.json; Llama or Qwen2)")
    rl_steps: int = opt(100, "RL steps, each on prompts_per_step x group_size completions (0, with --pipeline r1 "
                        "and --init_from: none, the --init_from model is stage 2's)")
    rl_mix: str = opt("", "the RL questions' task mixture, e.g. 'arithmetic:1' ('': every training problem alike)")
    rl_minutes: float = opt(0.0, "optional wall-clock budget of RL in minutes (0: none, stop on rl_steps)")
    prompts_per_step: int = opt(16, "B: training questions per RL step")
    group_size: int = opt(8, "G: completions sampled per question")
    temperature: float = opt(1.0, "rollout sampling temperature (R1: 1.0); every log-prob is taken at it")
    top_p: float = opt(1.0, "rollout top-p (1: off, as R1)")
    rl_lr: float = opt(3e-5, "RL learning rate, constant after rl_warmup_steps (as DAPO)")
    rl_warmup_steps: int = opt(10, "RL linear warm-up steps")
    kl_coef: float = opt(0.04, "beta, the KL penalty's weight (DeepSeekMath 0.04, R1 0.001, DAPO 0)")
    clip_eps_low: float = opt(0.2, "clip range of the ratio below 1")
    clip_eps_high: float = opt(0.2, "clip range of the ratio above 1 (DAPO clip-higher: 0.28)")
    mu: int = opt(1, "policy updates per rollout: GRPO iterations (DeepSeekMath: 1)")
    minibatches: int = opt(1, "minibatches per rollout, one optimizer step each (R1: 16)")
    micro_batch: int = opt(0, "gradient accumulation: at most this many completions per backward (0: all)")
    forward_chunk: int = opt(0, "at most this many completions per no-gradient pass or sampling call (0: all)")
    prompt_once: bool = opt(False, "run each group's shared prompt once, in sampling and in every log-prob pass "
                                   "(the same numbers to float rounding, fewer FLOPs: design: A group's prompt once)")
    iterations: int = opt(1, "I, outer iterations of Algorithm 1: the reference is reset at the start of each")
    ref_reset_every: int = opt(0, "also reset the reference to the policy every N steps (R1: 400; 0: off)")
    adv_scale: str = opt("group", "advantage normalisation: 'group' (GRPO), 'batch', 'none' (Dr. GRPO)")
    std_ddof: int = opt(0, "std of the advantages: 0 population (default), 1 sample (torch, TRL)")
    agg: str = opt("seq_mean", "loss aggregation: 'seq_mean' (GRPO), 'token_mean' (DAPO), 'constant' (Dr. GRPO)")
    supervision: str = opt("outcome", "'outcome' (DeepSeekMath §4.1.2) or 'process' (rule-checked steps, §4.1.3)")
    process_outcome: str = opt("none", "process: 'none' (the step rewards alone) or 'last_step' (the outcome too)")
    dynamic_sampling: bool = opt(False, "drop groups whose rewards are all equal and refill (DAPO Eq. 11)")
    overlong_filter: bool = opt(False, "mask out completions truncated at max_new_tokens (DAPO)")
    rollout_shards: int = opt(0, "sample each step's questions in this many shards, each with its own random stream "
                                 "(0: one per process under torchrun, else 1); one process given N samples exactly "
                                 "what N processes do")
    # rewards (rewards.py)
    reward_accuracy: float = opt(1.0, "weight of the accuracy reward (R1)")
    reward_format: float = opt(1.0, "weight of the format reward (R1)")
    reward_wrong: float = opt(0.0, "accuracy reward of a wrong answer: 0 (R1) or -1 (DAPO)")
    reward_overlong: float = opt(0.0, "weight of the soft overlong penalty (DAPO Eq. 13)")
    reward_language: float = opt(0.0, "weight of the language-consistency reward (R1)")
    overlong_cache: int = opt(16, "L_cache of the soft overlong penalty, in tokens (L_max = max_new_tokens)")
    reward_rm: float = opt(0.0, "weight of a learned reward model's score r_phi(q, o) (R1's preference reward)")
    reward_model: str = opt("", "the learned reward model for --reward_rm: a folder written by reward_model.py")
    # evaluation during RL
    rl_eval_every: int = opt(50, "RL steps between a checkpoint and a held-out evaluation")
    rl_eval_n: int = opt(500, "held-out problems in an RL evaluation")
    pass_k: int = opt(8, "k of sampled pass@k and cons@k (1: skip)")
    eval_temperature: float = opt(0.6, "sampling temperature of pass@k (R1's evaluation: 0.6)")
    eval_top_p: float = opt(0.95, "top-p of pass@k sampling (R1's evaluation: 0.95)")
    # the PPO baseline (--rl ppo): DeepSeekMath Eqs. 1-2 with GAE
    gamma: float = opt(1.0, "PPO: discount of GAE (1: none)")
    lam: float = opt(1.0, "PPO: lambda of GAE (design: PPO's gamma and lambda)")
    vf_coef: float = opt(1.0, "PPO: weight of the value loss (design: The critic)")
    value_clip: float = opt(0.2, "PPO: clip the value to +-this around its rollout-time value (0: off)")
    critic_lr: float = opt(1e-3, "PPO: the critic's learning rate (design: The critic)")
    whiten_adv: bool = opt(True, "PPO: normalise the advantages to mean 0, std 1 over the batch's tokens")
    # DeepSeek-R1's pipeline beyond stage 2 (--pipeline r1)
    pipeline: str = opt("cold_start", "'cold_start' (stages 1-2: SFT, then RL), 'r1' (then stage 3, rejection "
                        "sampling -> SFT, and stage 4, RL for all scenarios) or 'r1_zero' (pretraining on plain "
                        "text instead of SFT, then RL: pretrain.py)")
    rs_questions: int = opt(4000, "stage 3: training questions sampled from the stage-2 policy")
    rs_samples: int = opt(4, "stage 3: completions sampled per question (R1 samples several, keeps the correct)")
    rs_batch: int = opt(64, "stage 3: questions per sampling call (a killed run resumes after the last whole one)")
    rs_direct_frac: float = opt(0.25, "stage 3: share of non-reasoning examples in the SFT mix (R1: 200k of 800k)")
    rs_init: str = opt("base", "stage 3: SFT starts from 'base' (stage 1's starting point, as R1), 'sft' or 'rl'")
    rs_sft_steps: int = opt(1500, "stage 3: SFT steps on the rejection-sampled mix")
    rs_lr: float = opt(0.0, "stage 3: its SFT's peak learning rate (0: --lr; lower it to fine-tune a trained model, "
                       "--rs_init sft or rl)")
    stage4_steps: int = opt(100, "stage 4: RL steps for all scenarios, from the stage-3 model (0: end after stage 3)")
    stage4_mix: str = opt("arithmetic:0.5,word:0.5", "stage 4: the task mixture of its questions (task:weight,...)")
    stage4_rm: float = opt(0.5, "stage 4: weight of the learned reward r_phi beside the rule rewards (0: rules alone)")
    stage4_language: float = opt(0.0, "stage 4: weight of the language-consistency reward (R1; 0: off)")
    rm_pairs: int = opt(3000, "stage 4: preference pairs its reward model is trained on (reward_model.py)")
    rm_steps: int = opt(300, "stage 4: AdamW steps of its reward model, 32 pairs each")


PRESETS = {  # each a set of defaults; flags given on the command line override them
    "default": {},
    # SFT then GRPO in seconds: what the tests run
    "smoke": dict(n_train=2000, n_test=50, n_layer=2, n_head=2, n_embd=32, sft_steps=30, batch_size=16,
                  warmup_steps=5, eval_every=15, eval_n=20, vocab_size=300, out_dir="runs/smoke", rl_steps=4,
                  rl="grpo", prompts_per_step=4, group_size=4, rl_eval_every=2, rl_eval_n=20, pass_k=2,
                  max_new_tokens=48),
    # SFT only on worked solutions, small batches: more optimizer steps in the same minutes
    "sft": dict(rl="none", sft_direct_frac=0.0, sft_steps=6400, batch_size=16, n_head=8, out_dir="runs/sft"),
    # the GSM8K-style word problems with a 25M-parameter model, for a GPU
    "word": dict(task="word", n_layer=8, n_head=8, n_embd=512, vocab_size=1024, lr=1e-3, sft_steps=5000,
                 batch_size=64, rl_steps=300, out_dir="runs/word"),
    # the word problems at the default model size, on a CPU
    "word_cpu": dict(task="word", vocab_size=512, max_new_tokens=192, batch_size=32, sft_steps=1350, rl_steps=80,
                     pass_k=4, out_dir="runs/word_cpu"),
    # DeepSeek-R1's pipeline on arithmetic and word problems, a CPU-sized version: cold-start SFT on worked solutions
    # of both (8 heads, 3000 steps of 16, as --preset sft), reasoning RL on both (50 steps), rejection sampling of
    # 2000 questions -> 600 SFT steps at a tenth of the learning rate from the stage-1 model (R1 starts again from
    # its base, which needs far more distinct traces than a CPU run samples: design: Stage 3 starts from the
    # stage-1 model), then 30 steps of RL on both with the rule rewards and a learned reward; pass@4
    "r1": dict(pipeline="r1", task="mix", vocab_size=512, n_head=8, batch_size=16, sft_steps=3000, sft_direct_frac=0.0,
               rl_steps=50, rs_questions=2000, rs_init="sft", rs_lr=2e-4, rs_sft_steps=600, stage4_steps=30, pass_k=4,
               out_dir="runs/r1"),
    # the same four stages for a GPU, unmeasured there so far: the 25M-parameter model of --preset word, R1's own
    # stage 3 (SFT from the base, on the kept samples of 4 completions of 50,000 questions), longer RL stages
    "r1_gpu": dict(pipeline="r1", task="mix", n_layer=8, n_head=8, n_embd=512, vocab_size=1024, lr=1e-3,
                   batch_size=64, sft_steps=5000, sft_direct_frac=0.0, rl_steps=200, rs_questions=50000,
                   rs_batch=256, rs_sft_steps=5000, stage4_steps=100, out_dir="runs/r1_gpu"),
    # DeepSeek-R1-Zero: a base model pretrained on plain text (no template, no tags; pretrain.py), then GRPO with
    # the R1-Zero template and the rule rewards only, no cold start
    "r1_zero": dict(pipeline="r1_zero", template="r1", out_dir="runs/r1_zero"),
    # GRPO on GSM8K from a pretrained instruct model, for one GPU (unmeasured there so far): give --init_from a
    # Hugging Face folder (e.g. Qwen2.5-0.5B-Instruct, ChatML; --template r1_llama3 for a Llama 3 model) and
    # --gsm8k_dir. R1-Zero's instruction as the system turn, the rule rewards. DeepSeekMath's GRPO settings: lr 1e-6,
    # beta 0.04, one update per rollout; 16 questions x 8 completions a step (DeepSeekMath: 64 completions each,
    # 1024 a step). 400 new tokens hold a GSM8K solution in the <think>/<answer> format with room to spare. Qwen2's
    # logits are 151,936 wide: micro_batch 4 (with gradient) and forward_chunk 16 (without) bound their memory, to
    # about 25 GB in all for a 0.5B model (design: GRPO from a pretrained model); a larger GPU samples faster with a
    # larger --forward_chunk. The long system turn is shared by every row: each group's prompt runs once
    # (--prompt_once, design: A group's prompt once).
    "gsm8k_pretrained": dict(task="gsm8k", template="r1_chatml", rl="grpo", rl_steps=200, prompts_per_step=16,
                             group_size=8, rl_lr=1e-6, kl_coef=0.04, max_new_tokens=400, micro_batch=4,
                             forward_chunk=16, prompt_once=True, rl_eval_every=25, rl_eval_n=200, pass_k=4,
                             out_dir="runs/gsm8k_pretrained"),
}
# What a preset cannot run without: flag -> what to give (parse_config refuses the preset without them)
PRESET_NEEDS = {"gsm8k_pretrained": {"init_from": "a Hugging Face model folder, e.g. Qwen2.5-0.5B-Instruct as "
                                                  "Hugging Face ships it (nothing is downloaded)",
                                     "gsm8k_dir": "the folder holding GSM8K's train.jsonl and test.jsonl"}}


# the first flag of each group of TrainConfig -> the group's heading in --help
HELP_GROUPS = {"out_dir": "run", "task": "data", "n_layer": "model", "sft_steps": "stage 1: cold-start SFT (--pipeline r1_zero: pretraining)",
               "rl": "stage 2: RL (GRPO, or PPO with --rl ppo)", "reward_accuracy": "rewards (rewards.py)",
               "rl_eval_every": "evaluation during RL", "gamma": "the PPO baseline (--rl ppo)",
               "pipeline": "the R1 pipeline's later stages (--pipeline r1), and R1-Zero"}


def parse_config(argv=None) -> TrainConfig:
    """--preset NAME picks a set of defaults; every field is also a flag that overrides it."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="default", choices=sorted(PRESETS))
    known, _ = pre.parse_known_args(argv)
    defaults = {**asdict(TrainConfig()), **PRESETS[known.preset]}
    parser = argparse.ArgumentParser(description="Train a tiny reasoning model: SFT, then GRPO or PPO.",
                                     parents=[pre])
    group = parser
    for f in fields(TrainConfig):
        if f.name in HELP_GROUPS:  # --help lists the flags under the headings of TrainConfig's comments
            group = parser.add_argument_group(HELP_GROUPS[f.name])
        kind = parse_bool if isinstance(f.default, bool) else type(f.default)
        group.add_argument(f"--{f.name}", type=kind, default=defaults[f.name], metavar=kind.__name__.upper(),
                            help=f"{f.metadata['help']} (default: {defaults[f.name]})")
    args = vars(parser.parse_args(argv))
    args.pop("preset")
    cfg = TrainConfig(**args)
    for name, what in PRESET_NEEDS.get(known.preset, {}).items():
        if not getattr(cfg, name):
            parser.error(f"--preset {known.preset} needs --{name}: {what}")
    try:
        check_config(cfg, defaults)
    except ValueError as e:
        parser.error(str(e))
    return cfg


def parse_bool(text: str) -> bool:
    """'true'/'false' (also 1/0, yes/no, on/off) -> bool, for --flag VALUE."""
    value = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
             "off": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a boolean: use true or false")
    return value


parse_bool.__name__ = "bool"  # argparse names the type in its error messages

ALLOWED = {"device": ("auto", "cpu", "cuda"), "template": tuple(tasks.TEMPLATES),
           "rl": ("grpo", "ppo", "none"), "adv_scale": grpo.SCALES, "agg": grpo.AGGREGATIONS,
           "supervision": ("outcome", "process"), "std_ddof": (0, 1), "process_outcome": ("none", "last_step"),
           "pipeline": ("cold_start", "r1", "r1_zero"), "rs_init": ("base", "sft", "rl"), "task": tasks.TASKS + ("gsm8k",)}
AT_LEAST_1 = ("sft_steps", "batch_size", "eval_every", "n_train", "n_test", "length_grouping", "n_layer",
              "prompts_per_step", "group_size", "mu", "minibatches", "iterations", "rl_eval_every", "rl_eval_n",
              "pass_k", "overlong_cache", "rs_questions", "rs_samples", "rs_batch", "rs_sft_steps", "rm_pairs", "rm_steps")
AT_LEAST_0 = ("rollout_shards", "sft_problems", "sft_minutes", "rl_minutes", "kl_coef", "clip_eps_low", "clip_eps_high", "ref_reset_every", "micro_batch",
              "forward_chunk", "max_new_tokens", "max_seq_len", "value_clip", "stage4_steps", "stage4_rm", "rl_steps",
              "stage4_language", "rs_lr")
POSITIVE = ("temperature", "eval_temperature", "eval_top_p", "rl_lr", "top_p", "vf_coef", "critic_lr")

# Flags that act only in some runs: given (set to a value other than the default) anywhere else, they would be
# silently ignored, so they are refused (design: A flag that changes nothing is refused).
# flag -> (does it act in this run?, where it acts)
ONLY_WITH = {
    **{name: (lambda c: c.rl == "ppo", "--rl ppo")
       for name in ("gamma", "lam", "vf_coef", "value_clip", "critic_lr", "whiten_adv")},
    **{name: (lambda c: c.rl == "grpo", "--rl grpo")
       for name in ("supervision", "std_ddof", "dynamic_sampling")},
    "adv_scale": (lambda c: c.rl == "grpo" and c.supervision == "outcome", "--rl grpo --supervision outcome"),
    "process_outcome": (lambda c: c.rl == "grpo" and c.supervision == "process", "--supervision process"),
    "gsm8k_dir": (lambda c: c.task == "gsm8k", "--task gsm8k"),
    "reward_model": (lambda c: c.reward_rm != 0, "--reward_rm W, W not 0"),
    **{name: (lambda c: c.task in ("arithmetic", "mix"), "--task arithmetic or mix")
       for name in ("digits", "mul_digits", "min_ops", "max_ops")},
    "word_frac": (lambda c: c.task == "mix", "--task mix"),
    "recheck_frac": (lambda c: not c.init_from, "a run that trains its own stage 1 (not with --init_from)"),
    # a Hugging Face folder brings its own tokenizer and architecture (config.json, tokenizer.json)
    **{name: (lambda c: not pretrained.is_huggingface_folder(c.init_from),
              "a run that builds its own tokenizer and model (not --init_from a Hugging Face folder, whose "
              "config.json and tokenizer.json fix them)")
       for name in ("vocab_size", "n_layer", "n_head", "n_embd")},
    "sft_direct_frac": (lambda c: c.pipeline != "r1_zero", "--pipeline cold_start or r1 (R1-Zero has no SFT)"),
    "pretrain_format_frac": (lambda c: c.pipeline == "r1_zero", "--pipeline r1_zero"),
    "sft_problems": (lambda c: c.pipeline != "r1_zero" and not c.init_from,
                     "a run that trains its own cold start (not --pipeline r1_zero, not --init_from)"),
    "rl_mix": (lambda c: c.rl != "none", "--rl grpo or ppo"),
    "rollout_shards": (lambda c: c.rl != "none", "--rl grpo or ppo"),
    "prompt_once": (lambda c: c.rl != "none", "--rl grpo or ppo"),
    **{name: (lambda c: c.task != "gsm8k", "--task arithmetic or word (GSM8K has its own split)")
       for name in ("n_train", "n_test")},
    **{name: (lambda c: c.pipeline == "r1", "--pipeline r1")
       for name in ("rs_questions", "rs_samples", "rs_batch", "rs_direct_frac", "rs_init", "rs_sft_steps",
                    "rs_lr", "stage4_steps")},
    **{name: (lambda c: c.pipeline == "r1" and c.stage4_steps > 0, "--pipeline r1 and --stage4_steps N, N > 0")
       for name in ("stage4_mix", "stage4_rm", "stage4_language", "rm_pairs", "rm_steps")},
}


def check_config(cfg: TrainConfig, defaults: dict | None = None) -> None:
    """ValueError, in one line, for a value out of range, an impossible combination or a flag that changes
    nothing in this run (one set to a value other than its default in `defaults`, the preset's)."""
    for name, values in ALLOWED.items():
        if getattr(cfg, name) not in values:
            raise ValueError(f"--{name} {getattr(cfg, name)!r}: allowed values are {', '.join(map(str, values))}")
    for f in fields(cfg):
        if isinstance(getattr(cfg, f.name), float) and not math.isfinite(getattr(cfg, f.name)):
            raise ValueError(f"--{f.name} must be a finite number, got {getattr(cfg, f.name)}")
    for names, ok, rule in ((AT_LEAST_1, lambda v: v >= 1, ">= 1"), (AT_LEAST_0, lambda v: v >= 0, ">= 0"),
                            (POSITIVE, lambda v: v > 0, "> 0"), (("top_p", "eval_top_p"), lambda v: v <= 1, "<= 1"),
                            (("gamma", "lam"), lambda v: 0 <= v <= 1, "in [0, 1]")):
        for name in names:
            if not ok(getattr(cfg, name)):
                raise ValueError(f"--{name} must be {rule}, got {getattr(cfg, name)}")
    defaults = asdict(TrainConfig()) if defaults is None else defaults
    for name, (acts, where) in ONLY_WITH.items():
        if getattr(cfg, name) != defaults[name] and not acts(cfg):
            raise ValueError(f"--{name} {getattr(cfg, name)!r} has no effect here: it acts only with {where}")
    check_combinations(cfg)


def check_combinations(cfg: TrainConfig) -> None:
    """ValueError for flags whose values are each fine but impossible together."""
    if cfg.task == "gsm8k" and not cfg.gsm8k_dir:
        raise ValueError("--task gsm8k needs --gsm8k_dir, the folder holding train.jsonl and test.jsonl")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    if not 0 <= cfg.sft_direct_frac < 1:
        raise ValueError(f"--sft_direct_frac must be in [0, 1), got {cfg.sft_direct_frac}")
    if not 0 <= cfg.rs_direct_frac < 1:
        raise ValueError(f"--rs_direct_frac must be in [0, 1), got {cfg.rs_direct_frac}")
    if not 0 <= cfg.word_frac <= 1:
        raise ValueError(f"--word_frac must be in [0, 1], got {cfg.word_frac}")
    for name in ("rl_mix", "stage4_mix") if cfg.rl != "none" else ():
        try:
            mix = tasks.parse_mix(getattr(cfg, name))
        except ValueError as e:
            raise ValueError(f"--{name} {e}") from None
        missing = [k for k, w in mix.items() if w > 0 and k not in tasks.TASK_KINDS[cfg.task]]
        if missing and (name == "rl_mix" or cfg.pipeline == "r1" and cfg.stage4_steps):
            raise ValueError(f"--{name} {getattr(cfg, name)!r} asks for {missing[0]} problems and --task {cfg.task} "
                             f"has none: give --task mix, or leave {missing[0]} out of --{name}")
    if cfg.task != "gsm8k" and cfg.sft_problems > cfg.n_train:
        raise ValueError(f"--sft_problems {cfg.sft_problems} is more than the --n_train {cfg.n_train} training problems")
    if not 0 <= cfg.recheck_frac <= 1:
        raise ValueError(f"--recheck_frac must be in [0, 1], got {cfg.recheck_frac}")
    if not 0 <= cfg.pretrain_format_frac <= 1:
        raise ValueError(f"--pretrain_format_frac must be in [0, 1], got {cfg.pretrain_format_frac}")
    if cfg.pipeline == "r1_zero" and cfg.rl == "none":
        raise ValueError("--pipeline r1_zero is RL from a pretrained base: give --rl grpo or ppo")
    if cfg.pipeline == "r1" and cfg.rl == "none":
        raise ValueError("--pipeline r1 samples stage 3's data from the RL model of stage 2: give --rl grpo or ppo")
    if cfg.reward_wrong >= 1:
        raise ValueError(f"--reward_wrong must be below 1, the accuracy reward of a right answer, got {cfg.reward_wrong}")
    if cfg.minibatches > cfg.prompts_per_step * cfg.group_size:
        raise ValueError(f"--minibatches {cfg.minibatches} is more than the {cfg.prompts_per_step * cfg.group_size} "
                         "completions of a step (prompts_per_step x group_size)")
    if cfg.max_new_tokens and cfg.overlong_cache > cfg.max_new_tokens:
        raise ValueError(f"--overlong_cache {cfg.overlong_cache} must be <= --max_new_tokens {cfg.max_new_tokens} "
                         "(L_cache is the last part of the generation budget L_max)")
    if cfg.reward_rm and not cfg.reward_model:
        raise ValueError("--reward_rm weighs a learned reward model's score: give its folder with --reward_model "
                         "(python reward_model.py CHECKPOINT --out_dir FOLDER writes one)")
    if cfg.reward_model and not os.path.isdir(cfg.reward_model):
        raise ValueError(f"--reward_model {cfg.reward_model}: no such folder")
    if cfg.init_from and not os.path.isdir(cfg.init_from):
        raise ValueError(f"--init_from {cfg.init_from}: no such checkpoint directory")
    if cfg.init_from and cfg.rl == "none":
        raise ValueError("--init_from skips SFT and --rl none skips RL: nothing would run")
    if cfg.template in tasks.CHAT_TEMPLATES and not cfg.init_from:
        raise ValueError(f"--template {cfg.template} writes the special tokens "
                         f"{', '.join(tasks.TEMPLATE_TOKENS[cfg.template])}, which only a pretrained model's tokenizer "
                         "has (a tokenizer trained here would split them into bytes): give --init_from a Hugging Face "
                         "folder whose tokenizer has them, or --template compact or r1")
    if cfg.rl_steps == 0 and not (cfg.pipeline == "r1" and cfg.init_from):
        raise ValueError("--rl_steps must be >= 1, got 0 (0 only with --pipeline r1 and --init_from: stages 3-4 "
                         "then start from the --init_from model, e.g. an earlier run's grpo/)")
    if cfg.pipeline == "r1" and cfg.rs_init == "sft" and cfg.init_from and not os.path.isdir(stage1_folder(cfg)):
        raise ValueError(f"--rs_init sft starts stage 3 from the stage-1 model, which for --init_from "
                         f"{cfg.init_from} is {stage1_folder(cfg)}: no such folder; give --init_from a run's sft/ or "
                         "grpo/ folder, or --rs_init base or rl")
    if cfg.pipeline == "r1" and pretrained.is_huggingface_folder(cfg.init_from):
        raise ValueError("--pipeline r1 with --init_from a Hugging Face folder: stage 3 restarts SFT from stage 1's "
                         "starting point (--rs_init), which is rebuilt only for models trained here; give --pipeline "
                         "cold_start (RL from the folder)")
    if cfg.rl == "grpo" and cfg.group_size < 2:
        raise ValueError(f"--group_size {cfg.group_size}: GRPO compares the G completions of a question, so G >= 2")
    if cfg.vocab_size < 262:
        raise ValueError(f"--vocab_size must be >= 262 (the 256 byte tokens and 6 special tokens), got {cfg.vocab_size}")
    if cfg.n_embd % cfg.n_head or (cfg.n_embd // cfg.n_head) % 2:
        raise ValueError(f"--n_embd {cfg.n_embd} must split into --n_head {cfg.n_head} heads of even width")
    check_processes(cfg, distributed.launched())


def stage1_folder(cfg: TrainConfig) -> str:
    """The stage-1 (cold-start SFT) checkpoint of an R1 run, where --rs_init sft starts stage 3: out_dir/sft, or
    with --init_from the folder itself if it is an 'sft' folder, else the 'sft' folder beside it (the stage-1 model
    of the run whose grpo/ it names)."""
    if not cfg.init_from:
        return os.path.join(cfg.out_dir, "sft")
    folder = os.path.normpath(cfg.init_from)
    return folder if os.path.basename(folder) == "sft" else os.path.join(os.path.dirname(folder), "sft")


def check_processes(cfg: TrainConfig, world: int) -> None:
    """ValueError for what `world` processes (torchrun --nproc_per_node) cannot split, or do not run yet.
    --rollout_shards S > 1 is allowed with one process (it samples what S processes would) or with S processes."""
    shards = cfg.rollout_shards or world
    if cfg.rollout_shards and world > 1 and cfg.rollout_shards != world:
        raise ValueError(f"--rollout_shards {cfg.rollout_shards} under {world} processes: give 0 or {world} (one shard "
                         "per process)")
    if cfg.rl != "none" and cfg.prompts_per_step % shards:
        raise ValueError(f"--prompts_per_step {cfg.prompts_per_step} cannot be split into {shards} shards of whole "
                         "groups: give a multiple of " + ("the number of processes" if world > 1 else "--rollout_shards"))
    if shards > 1 and cfg.dynamic_sampling:
        raise ValueError("--dynamic_sampling refills each step's batch one rollout at a time: it runs with one shard "
                         "(one process, --rollout_shards 0 or 1) only for now")
    if world == 1:
        return
    if cfg.batch_size % world:
        raise ValueError(f"--batch_size {cfg.batch_size} cannot be split over {world} processes: give a multiple of "
                         f"{world}")
    unsupported = [(cfg.rl == "ppo", "--rl ppo"), (cfg.pipeline == "r1", "--pipeline r1"),
                   (cfg.rl == "grpo" and cfg.adv_scale == "batch", "--adv_scale batch"),
                   (cfg.sft_minutes > 0, "--sft_minutes"), (cfg.rl_minutes > 0, "--rl_minutes")]
    for bad, flag in unsupported:
        if bad:
            raise ValueError(f"{flag} runs in one process only for now (plain python train.py); under torchrun "
                             "the cold-start and R1-Zero pipelines with GRPO run (design: Data parallelism)")
