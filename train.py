"""Train a tiny reasoning model: tokenizer -> cold-start SFT -> GRPO (or its PPO baseline) -> evaluation.

Stage 1 of the DeepSeek-R1 pipeline (arXiv 2501.12948, section 2.3.1, "cold start") is supervised
fine-tuning on worked solutions written in the R1 template, `<think> steps </think> <answer> N </answer>`.
R1 fine-tunes a pretrained base model on thousands of long chains of thought; we train a tiny model
from scratch on generated problems, so this stage is also its pre-training. Stage 2 ("reasoning-oriented
RL") is GRPO with rule-based rewards, DeepSeekMath's Algorithm 1 (arXiv 2402.03300, §4.1.4); `--rl ppo`
replaces it by PPO with a critic (DeepSeekMath Eqs. 1-2), the baseline GRPO was designed to improve on.

    python train.py                      # the default CPU pipeline: SFT, GRPO, the SFT-vs-GRPO table (~12 min)
    python train.py --preset sft         # SFT only, every target worked (arithmetic, <= 10 minutes on 2 cores)
    python train.py --preset smoke       # SFT then GRPO in well under a minute (used by the tests)
    python train.py --rl ppo --out_dir runs/ppo   # the default, with PPO in place of GRPO
    python train.py --preset word        # GSM8K-style word problems, a larger model meant for a GPU
    python train.py --preset word_cpu    # the same task at the default size on a CPU budget (~17 minutes)
    python train.py --help               # every option, with its help line

`sft()`: batch -> forward -> loss on completion tokens only -> backward -> clip -> AdamW step -> log;
every `eval_every` steps a held-out greedy pass@1 and a checkpoint.
`run_rl()`, one step: sample B training questions -> G completions each in one KV-cache generate() call
(`sample_groups`) -> rule-based rewards -> `rl_update`, the only part where the algorithms differ:
  GRPO: group-relative advantages (`advantages`) -> mu epochs of minibatch updates of the clipped,
        KL-penalised GRPO objective (`policy_update`, grpo.py's equations);
  PPO:  per-token rewards with the KL penalty in them -> the critic's values -> GAE -> mu epochs of minibatch
        updates of the clipped PPO objective and of the critic's value loss (`ppo_update`);
-> one log line and a metrics record; the reference model is reset per outer iteration (`reset_reference`),
and every `rl_eval_every` steps greedy pass@1 and sampled pass@k are measured and a checkpoint written.

Deliberate choices:
  1. The loss covers completion tokens only (the EOS included): the prompt is given, never predicted.
  2. Weight decay applies to matrices (embeddings and linear weights) only, never to norm gains.
  3. Learning rate: linear warm-up, then cosine decay to `min_lr_ratio * lr` (as nanoGPT and DeepSeek).
     GRPO: warm-up, then constant (as DAPO). Every stage stops on its step count, so the same seed gives
     the same run on any machine; `--sft_minutes` / `--rl_minutes` add an optional wall-clock budget (then
     the SFT schedule follows whichever of steps and time is further along).
  4. Evaluation is greedy pass@1 scored by `rewards.accuracy_reward`, the very check RL rewards.
  5. Each run writes `out_dir/`: `sft/` and `grpo/` checkpoints (each `model.safetensors`, config inside
     as JSON metadata, and `tokenizer.json`), `metrics.jsonl` (one JSON record per logged step or
     evaluation) and `resume.safetensors` (checkpoint.py): a checkpoint is written before each evaluation,
     so a crash, a kill or Ctrl-C loses at most the steps since the last one, and running the same command
     again continues the run exactly (`--resume false` starts it over).
  6. GRPO trains on the SFT training questions (R1 and DeepSeekMath also reuse SFT questions for RL);
     rollouts sample at `temperature`, and every log-prob (policy, pi_old, reference) is taken at it.
  7. The reported "entropy" is the mean of -log pi over the sampled tokens, an unbiased estimate of the
     per-token entropy of the sampling distribution that costs nothing extra.

PPO (`--rl ppo`), the baseline (DeepSeekMath §4.1 Eqs. 1-2; the papers leave the rest open):
  8. A fair comparison: PPO runs in GRPO's loop (`run_rl`) from the same SFT model, on the same questions
     each step (the same seeded draw) and the same B x G completions per step (`collect_rollouts`), scored by
     the same `rewards.total_reward`; it ignores the groups. The same evaluation, reference resets, time
     budget and checkpoints (`out_dir/ppo/`, the critic in `out_dir/ppo/critic/`).
  9. The KL is a reward, not a loss term (Eq. 2): r_t = score on the last token - beta k1(pi_old, pi_ref) on
     every token (grpo.py choice 6). The logged "kl" is k3 of pi_old against pi_ref over the rollout's
     tokens, the estimator GRPO logs (with one update per rollout both measure the same thing); "kl_k1" is
     the mean k1 the reward charges.
 10. gamma = 1 and lambda = 1 by default. The only reward besides the KL is the score at the end, so there is
     nothing to discount over a short completion, and DeepSeek-R1 (revised, App. A.3) found PPO with
     lambda = 1.0 close to GRPO and with 0.95 considerably worse. With gamma = lambda = 1,
     A_t = (sum of the rewards from t on) - V(s_t): REINFORCE with a learned per-token baseline (tested).
 11. Advantages are whitened over all loss tokens of the batch (`--whiten_adv true`, as PPO implementations
     for language models do), after GAE; the critic's targets, the returns, use the raw advantages.
 12. The critic (model.py `Critic`, choice 5 there) is a separate Transformer of the policy's size with its
     own AdamW, the same warm-up and gradient clipping, on PPO2's clipped value loss (`--value_clip` around
     the rollout-time values; token mean). Each minibatch steps the policy, then the critic. With separate
     networks and optimizers `--vf_coef` only scales the critic's gradient: AdamW undoes a constant scale (up
     to its eps), so it acts only through the gradient clip. Default 1.
     `--critic_lr 1e-3`, not the policy's 3e-5, measured (2-core CPU, 2026-11-23; from a 250-step SFT model,
     B = 16 x G = 8, mean return ~0.95): the zero value head has to climb to the mean return, and AdamW
     moves each weight by about lr per step. With 3e-5 the mean value was 0.026 after 20 steps (value loss
     0.48 -> 0.46): a critic that stays a zero baseline for a whole CPU run. With 3e-4 it was 0.45 after 17
     steps; with 1e-3 it reached the mean return by steps 11-15 (value loss 0.45 -> 0.03, about half the
     returns' variance). Its explained variance was still ~0 at step 24: in that time the critic learns
     the mean, not yet which states do better.
 13. PPO refuses `--dynamic_sampling` (a GRPO filter: a group of equal rewards has zero group-relative
     advantage, yet PPO learns from it) and `--supervision process`; GRPO's `--adv_scale` and `--std_ddof` are refused too (choice 19).
 14. Memory (`model_table`, `memory_baseline`, `memory_record`): the models each algorithm holds with their
     parameters are printed when the RL stage starts; the RSS before it (and before the policy was created)
     and the peak after it are recorded. `--micro_batch` (gradient accumulation, exact: `accumulate`) and
     `--forward_chunk` (sampling and the no-grad passes in chunks) bound the activations and the KV cache,
     so that at a large model size the peak is the models' weights, gradients and AdamW moments, where
     the 3 models of PPO against GRPO's 2 show (`python bench.py memory`).

The default cold start:
 15. The default cold start is mixed (`--sft_direct_frac 0.5`): half the SFT targets, drawn by seed, are the
     answer alone with an empty <think> block, the other half the worked solution. The SFT model then opens
     about half its greedy answers with an empty <think> and guesses (right ~2% of the time), and works the
     other half out (right ~57%). That is headroom RL can use, as in R1, where RL selects behaviours the
     cold-start model already has (longer, more careful reasoning): GRPO, rewarded only on the answer, learns
     to show its work within ~50 steps (`shows_work`, at every evaluation). With worked targets only
     (`--preset sft`) the SFT model has no such headroom: cons@8 is no higher than greedy pass@1, and GRPO
     gains 2-6 points in a CPU budget (README, "GRPO from a worked-only cold start").

Making runs repeatable and safe:
 16. Randomness per step: the batch of SFT step s, the questions and samples of RL step s and the samples of
     an evaluation at step s come from generators seeded with (seed, stage, s) (`step_rng`, `step_generator`),
     never from a stream shared across steps. So a resumed run draws exactly what the uninterrupted one drew,
     and an evaluation does not change the training that follows it.
 17. Sequence lengths come from the data (`plan_lengths`): --max_new_tokens 0 (the default) is 1.25x the
     longest worked solution, rounded up to a multiple of 16 (room for RL to lengthen its answers; 96 on the
     default task), and --max_seq_len 0 is the longest prompt of the train and test splits plus that (or
     plus the longest solution, if longer). A length set by hand that cannot hold the longest prompt plus
     the generation budget is refused at start-up with the numbers, before any training.
 18. A NaN or inf in a loss, the advantages, the values or a gradient norm stops the run before the update,
     naming the quantity and the step (`NonFiniteError`).
 19. A flag that would have no effect in the run it is given to (`--gamma` without --rl ppo, --adv_scale with
     process supervision, --digits with --task word, ...) is refused rather than silently ignored (`ONLY_WITH`).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from tqdm import tqdm

import checkpoint
import grpo
import rewards
import tasks
from model import Critic, ModelConfig, Transformer, generate, left_pad, load_checkpoint, save_checkpoint
from sample import complete, decode_completions, greedy_pass_at_1, pass_rate, split_completion

try:
    import resource  # peak memory (getrusage); Unix only
except ImportError:
    resource = None


def opt(default, help: str):
    """A config field with its --help line."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # run
    out_dir: str = opt("runs/default", "where the checkpoints, metrics.jsonl and the resume point go")
    resume: bool = opt(True, "continue the run in out_dir from its resume point if there is one (false: start over)")
    seed: int = opt(0, "seed for the data, the initialisation and sampling")
    device: str = opt("auto", "'auto' (cuda if present, else cpu), 'cpu' or 'cuda'")
    threads: int = opt(0, "CPU threads for torch (0: torch's default)")
    # data
    task: str = opt("arithmetic", "'arithmetic', 'word' (GSM8K-style, generated) or 'gsm8k' (real files)")
    gsm8k_dir: str = opt("", "folder with GSM8K's train.jsonl and test.jsonl, for --task gsm8k")
    digits: int = opt(3, "arithmetic: most digits of each operand")
    mul_digits: int = opt(1, "arithmetic: most digits of the second factor of a product")
    min_ops: int = opt(2, "arithmetic: fewest operators per problem")
    max_ops: int = opt(2, "arithmetic: most operators per problem")
    n_train: int = opt(100_000, "training problems generated (deduplicated, none shared with the test split)")
    n_test: int = opt(1000, "held-out problems in the test split")
    template: str = opt("compact", "prompt template: 'compact' or 'r1' (DeepSeek-R1 Table 1, verbatim)")
    vocab_size: int = opt(384, "BPE vocabulary size, at least the 256 bytes and 6 special tokens (262)")
    # model
    n_layer: int = opt(4, "Transformer blocks")
    n_head: int = opt(4, "attention heads")
    n_embd: int = opt(128, "model width")
    max_seq_len: int = opt(0, "longest prompt + completion the model handles (0: from the data, the longest "
                            "prompt + the larger of max_new_tokens and the longest solution)")
    # cold-start SFT
    sft_steps: int = opt(1500, "optimizer steps of SFT")
    sft_minutes: float = opt(0.0, "optional wall-clock budget of SFT in minutes (0: none, stop on sft_steps): SFT "
                             "stops early if it runs out, its learning-rate schedule compressed to fit")
    batch_size: int = opt(64, "sequences per SFT step")
    lr: float = opt(2e-3, "peak learning rate")
    min_lr_ratio: float = opt(0.1, "final learning rate as a fraction of lr (cosine decay)")
    warmup_steps: int = opt(100, "linear warm-up steps")
    weight_decay: float = opt(0.1, "AdamW weight decay, on matrices only")
    grad_clip: float = opt(1.0, "clip the global gradient norm to this (0: off)")
    length_grouping: int = opt(1, "draw this many batches of random examples at once and sort them by length "
                               "(1: plain random batches)")
    sft_direct_frac: float = opt(0.5, "fraction of cold-start targets that give only the answer, with an empty "
                                 "<think> block (a mixed-quality cold start; train.py choice 15)")
    eval_every: int = opt(400, "SFT steps between held-out evaluations and checkpoints")
    eval_n: int = opt(200, "held-out problems in a periodic evaluation (the final one uses all n_test)")
    max_new_tokens: int = opt(0, "generation budget, at evaluation and in RL rollouts (0: 1.25x the longest worked "
                               "solution, rounded up to a multiple of 16)")
    # stage 2: GRPO (DeepSeekMath Algorithm 1, DeepSeek-R1 stage 2)
    rl: str = opt("grpo", "RL stage after SFT: 'grpo', 'ppo' (the baseline), or 'none' for SFT only")
    init_from: str = opt("", "skip SFT and start RL from this checkpoint directory (e.g. runs/default/sft)")
    rl_steps: int = opt(100, "RL steps; each samples prompts_per_step x group_size completions (the default "
                        "task's lift comes in the first 50)")
    rl_minutes: float = opt(0.0, "optional wall-clock budget of the RL stage in minutes (0: none, stop on rl_steps)")
    prompts_per_step: int = opt(16, "B: training questions per GRPO step")
    group_size: int = opt(8, "G: completions sampled per question")
    temperature: float = opt(1.0, "rollout sampling temperature (R1: 1.0); logp's are taken at this temperature")
    top_p: float = opt(1.0, "rollout top-p (1: off, as R1); below 1 the sampler skips rare tokens, and pi_old is "
                       "then the tempered softmax it was cut from, not exactly the sampling distribution")
    rl_lr: float = opt(3e-5, "GRPO learning rate, constant after rl_warmup_steps (as DAPO); 1e-4 and more "
                       "damaged the default SFT model (README)")
    rl_warmup_steps: int = opt(10, "GRPO linear warm-up steps")
    kl_coef: float = opt(0.04, "beta, the k3 KL penalty's weight (DeepSeekMath 0.04, R1 0.001, DAPO/Dr. GRPO 0)")
    clip_eps_low: float = opt(0.2, "clip range below 1 of the ratio")
    clip_eps_high: float = opt(0.2, "clip range above 1 of the ratio (DAPO clip-higher: 0.28)")
    mu: int = opt(1, "policy updates per rollout, i.e. GRPO iterations (DeepSeekMath: 1)")
    minibatches: int = opt(1, "split each rollout into this many minibatches, one optimizer step each (R1: 16); "
                           "a rollout with fewer rows than this gets one minibatch per row")
    micro_batch: int = opt(0, "gradient accumulation: at most this many completions per forward and backward pass "
                           "of an update, one optimizer step per minibatch all the same (0: the whole minibatch). "
                           "Lowers the peak memory, not the result")
    forward_chunk: int = opt(0, "at most this many completions per forward pass without gradient: the rollout's "
                             "sampling and its pi_old / pi_ref log-probs and critic values (0: all at once). Lowers "
                             "the peak memory; the sampled completions differ, the log-probs do not")
    iterations: int = opt(1, "I, outer iterations of Algorithm 1: the reference is reset to the policy at the "
                          "start of each, rl_steps / iterations steps apart")
    ref_reset_every: int = opt(0, "also reset the reference to the policy every N steps (R1: 400); 0: off")
    adv_scale: str = opt("group", "advantage normalisation: 'group' (GRPO), 'batch', 'none' (Dr. GRPO)")
    std_ddof: int = opt(0, "std convention of the advantage: 0 population (default), 1 sample (torch, TRL)")
    agg: str = opt("seq_mean", "loss aggregation: 'seq_mean' (GRPO Eq. 3), 'token_mean' (DAPO Eq. 12), "
                   "'constant' (Dr. GRPO)")
    supervision: str = opt("outcome", "'outcome' (one reward per completion, §4.1.2) or 'process' "
                           "(rule-checked <<expr=value>> steps, §4.1.3)")
    process_outcome: str = opt("none", "with --supervision process: 'none' (DeepSeekMath §4.1.3: the step rewards "
                               "alone) or 'last_step' (the outcome reward too, as one more step normalised with them)")
    dynamic_sampling: bool = opt(False, "drop groups whose rewards are all equal and refill the batch (DAPO Eq. 11)")
    overlong_filter: bool = opt(False, "mask out completions truncated at max_new_tokens (DAPO)")
    reward_accuracy: float = opt(1.0, "weight of the accuracy reward (R1 Eq. 4)")
    reward_format: float = opt(1.0, "weight of the format reward (R1 Eq. 4)")
    reward_wrong: float = opt(0.0, "accuracy reward of a wrong answer: 0 (R1) or -1 (DAPO Eq. 7)")
    reward_overlong: float = opt(0.0, "weight of the soft overlong penalty (DAPO Eq. 13)")
    reward_language: float = opt(0.0, "weight of the language-consistency reward (R1 Eq. 7: the share of the "
                                 "reasoning's words in the target language)")
    overlong_cache: int = opt(16, "L_cache of the soft overlong penalty, in tokens (L_max = max_new_tokens)")
    rl_eval_every: int = opt(50, "GRPO steps between held-out evaluations and checkpoints")
    rl_eval_n: int = opt(500, "held-out problems in a GRPO evaluation")
    pass_k: int = opt(8, "k of sampled pass@k: k samples per problem at eval_temperature (1: skip)")
    eval_temperature: float = opt(0.6, "sampling temperature of pass@k (R1's evaluation: 0.6, top-p 0.95)")
    eval_top_p: float = opt(0.95, "top-p of pass@k sampling")
    # stage 2 with --rl ppo: PPO with a critic (DeepSeekMath Eqs. 1-2, GAE as DAPO Eqs. 2-3); the GRPO flags
    # above that are not about groups (rl_lr, kl_coef, clip, mu, minibatches, agg, ...) apply to it too
    gamma: float = opt(1.0, "PPO: discount of GAE (1: none; the score comes once, at the end)")
    lam: float = opt(1.0, "PPO: lambda of GAE; R1 (App. A.3) found lambda 1.0 close to GRPO and 0.95 "
                     "considerably worse")
    vf_coef: float = opt(1.0, "PPO: weight of the value loss; the critic has its own AdamW, so this only "
                         "scales its gradient before the clip")
    value_clip: float = opt(0.2, "PPO: clip the critic's value to +-this around its rollout-time value in "
                            "the value loss (PPO2); 0: off")
    critic_lr: float = opt(1e-3, "PPO: the critic's learning rate (same warm-up as rl_lr); not rl_lr: at 3e-5 the "
                           "zero value head needed hundreds of steps to reach the mean return (train.py choice 12)")
    whiten_adv: bool = opt(True, "PPO: normalise the advantages to mean 0, std 1 over the batch's tokens "
                           "(PPO's counterpart of GRPO's --adv_scale, which PPO ignores)")


PRESETS = {  # each a set of defaults; flags given after --preset override them
    "default": {},
    "smoke": dict(n_train=2000, n_test=50, n_layer=2, n_head=2, n_embd=32, sft_steps=30, batch_size=16,
                  warmup_steps=5, eval_every=15, eval_n=20, vocab_size=300, out_dir="runs/smoke", rl_steps=4,
                  rl="grpo", prompts_per_step=4, group_size=4, rl_eval_every=2, rl_eval_n=20, pass_k=2,
                  max_new_tokens=48),  # SFT then GRPO in seconds: what the tests run
    "sft": dict(rl="none", sft_direct_frac=0.0, sft_steps=6400, batch_size=16, n_head=8,
                out_dir="runs/sft"),  # small batches: more optimizer steps in the same minutes (README)
    "word": dict(task="word", n_layer=8, n_head=8, n_embd=512, vocab_size=1024, lr=1e-3, sft_steps=5000,
                 batch_size=64, rl_steps=300, out_dir="runs/word"),  # a 25M-parameter model, for a GPU
    "word_cpu": dict(task="word", vocab_size=512, max_new_tokens=192, batch_size=32, sft_steps=1350, rl_steps=80,
                     pass_k=4, out_dir="runs/word_cpu"),  # the word problems at the default size on a CPU
}


def parse_config(argv=None) -> TrainConfig:
    """--preset NAME picks a set of defaults; every field is also a flag that overrides it."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="default", choices=sorted(PRESETS))
    known, _ = pre.parse_known_args(argv)
    defaults = {**asdict(TrainConfig()), **PRESETS[known.preset]}
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], parents=[pre])
    for f in fields(TrainConfig):
        kind = parse_bool if isinstance(f.default, bool) else type(f.default)
        parser.add_argument(f"--{f.name}", type=kind, default=defaults[f.name], metavar=kind.__name__.upper(),
                            help=f"{f.metadata['help']} (default: {defaults[f.name]})")
    args = vars(parser.parse_args(argv))
    args.pop("preset")
    cfg = TrainConfig(**args)
    check_config(cfg, parser, defaults)
    return cfg


def parse_bool(text: str) -> bool:
    """'true'/'false' (also 1/0, yes/no, on/off) -> bool, for --flag VALUE."""
    value = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False,
             "off": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a boolean: use true or false")
    return value


parse_bool.__name__ = "bool"  # argparse names the type in its error messages


# Flags that act only in some runs: given (set to a value other than the default) anywhere else, they would
# be silently ignored, so they are refused (choice 19). flag -> (does it act in this run?, where it acts)
ONLY_WITH = {
    **{name: (lambda c: c.rl == "ppo", "--rl ppo")
       for name in ("gamma", "lam", "vf_coef", "value_clip", "critic_lr", "whiten_adv")},
    **{name: (lambda c: c.rl == "grpo", "--rl grpo")
       for name in ("supervision", "std_ddof", "dynamic_sampling")},
    "adv_scale": (lambda c: c.rl == "grpo" and c.supervision == "outcome", "--rl grpo --supervision outcome"),
    "process_outcome": (lambda c: c.rl == "grpo" and c.supervision == "process", "--supervision process"),
    "gsm8k_dir": (lambda c: c.task == "gsm8k", "--task gsm8k"),
    **{name: (lambda c: c.task == "arithmetic", "--task arithmetic")
       for name in ("digits", "mul_digits", "min_ops", "max_ops")},
    **{name: (lambda c: c.task != "gsm8k", "--task arithmetic or word (GSM8K has its own split)")
       for name in ("n_train", "n_test")},
}


def check_config(cfg: TrainConfig, parser: argparse.ArgumentParser, defaults: dict | None = None):
    """One clear line for a value out of range, an impossible combination or a flag that would do nothing."""
    allowed = {"task": ("arithmetic", "word", "gsm8k"), "device": ("auto", "cpu", "cuda"),
               "template": tuple(tasks.TEMPLATES), "rl": ("grpo", "ppo", "none"), "adv_scale": grpo.SCALES,
               "agg": grpo.AGGREGATIONS, "supervision": ("outcome", "process"), "std_ddof": (0, 1),
               "process_outcome": ("none", "last_step")}
    for name, values in allowed.items():
        if getattr(cfg, name) not in values:
            parser.error(f"--{name} {getattr(cfg, name)!r}: allowed values are {', '.join(map(str, values))}")
    for f in fields(cfg):
        if isinstance(getattr(cfg, f.name), float) and not math.isfinite(getattr(cfg, f.name)):
            parser.error(f"--{f.name} must be a finite number, got {getattr(cfg, f.name)}")
    if cfg.task == "gsm8k" and not cfg.gsm8k_dir:
        parser.error("--task gsm8k needs --gsm8k_dir, the folder holding train.jsonl and test.jsonl")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    for name in ("sft_steps", "batch_size", "eval_every", "n_train", "n_test", "length_grouping", "n_layer",
                 "rl_steps", "prompts_per_step", "group_size", "mu", "minibatches", "iterations", "rl_eval_every",
                 "rl_eval_n", "pass_k", "overlong_cache"):
        if getattr(cfg, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("sft_minutes", "rl_minutes", "kl_coef", "clip_eps_low", "clip_eps_high", "ref_reset_every",
                 "micro_batch", "forward_chunk", "max_new_tokens", "max_seq_len"):
        if getattr(cfg, name) < 0:
            parser.error(f"--{name} must be >= 0, got {getattr(cfg, name)}")
    for name in ("temperature", "eval_temperature", "eval_top_p", "rl_lr", "top_p"):
        if getattr(cfg, name) <= 0:
            parser.error(f"--{name} must be > 0, got {getattr(cfg, name)}")
    if not 0 <= cfg.sft_direct_frac < 1:
        parser.error(f"--sft_direct_frac must be in [0, 1), got {cfg.sft_direct_frac}")
    if cfg.reward_wrong >= 1:
        parser.error(f"--reward_wrong must be below 1, the accuracy reward of a right answer, got {cfg.reward_wrong}")
    for name in ("top_p", "eval_top_p"):
        if getattr(cfg, name) > 1:
            parser.error(f"--{name} must be <= 1 (1: off), got {getattr(cfg, name)}")
    if cfg.minibatches > cfg.prompts_per_step * cfg.group_size:
        parser.error(f"--minibatches {cfg.minibatches} is more than the {cfg.prompts_per_step * cfg.group_size} "
                     "completions of a step (prompts_per_step x group_size)")
    if cfg.max_new_tokens and cfg.overlong_cache > cfg.max_new_tokens:
        parser.error(f"--overlong_cache {cfg.overlong_cache} must be <= --max_new_tokens {cfg.max_new_tokens} "
                     "(L_cache is the last part of the generation budget L_max)")
    if cfg.init_from and not os.path.isdir(cfg.init_from):
        parser.error(f"--init_from {cfg.init_from}: no such checkpoint directory")
    check_ppo_config(cfg, parser)
    defaults = asdict(TrainConfig()) if defaults is None else defaults
    for name, (acts, where) in ONLY_WITH.items():
        if getattr(cfg, name) != defaults[name] and not acts(cfg):
            parser.error(f"--{name} {getattr(cfg, name)!r} has no effect here: it acts only with {where}")
    if cfg.init_from and cfg.rl == "none":
        parser.error("--init_from skips SFT and --rl none skips RL: nothing would run")
    if cfg.rl == "grpo" and cfg.group_size < 2:
        parser.error(f"--group_size {cfg.group_size}: GRPO compares the G completions of a question, so G >= 2")
    if cfg.vocab_size < 262:
        parser.error(f"--vocab_size must be >= 262 (the 256 byte tokens and 6 special tokens), got {cfg.vocab_size}")
    if cfg.n_embd % cfg.n_head or (cfg.n_embd // cfg.n_head) % 2:
        parser.error(f"--n_embd {cfg.n_embd} must split into --n_head {cfg.n_head} heads of even width")


def check_ppo_config(cfg: TrainConfig, parser: argparse.ArgumentParser):
    """The PPO flags' ranges (GRPO-only flags with --rl ppo are refused by ONLY_WITH, choice 13)."""
    for name in ("gamma", "lam"):
        if not 0 <= getattr(cfg, name) <= 1:
            parser.error(f"--{name} must be in [0, 1], got {getattr(cfg, name)}")
    for name in ("vf_coef", "critic_lr"):
        if getattr(cfg, name) <= 0:
            parser.error(f"--{name} must be > 0, got {getattr(cfg, name)}")
    if cfg.value_clip < 0:
        parser.error(f"--value_clip must be >= 0 (0: off), got {cfg.value_clip}")


# ---------------------------------------------------------------------------------------------
# Data: problems -> token ids
# ---------------------------------------------------------------------------------------------
def load_problems(cfg: TrainConfig) -> tuple[list[tasks.Problem], list[tasks.Problem]]:
    if cfg.task == "gsm8k":
        train = tasks.load_gsm8k(os.path.join(cfg.gsm8k_dir, "train.jsonl"))
        test = tasks.load_gsm8k(os.path.join(cfg.gsm8k_dir, "test.jsonl"))
        return tasks.split_gsm8k(train, test)
    knobs = dict(digits=cfg.digits, mul_digits=cfg.mul_digits, min_ops=cfg.min_ops, max_ops=cfg.max_ops)
    return tasks.make_splits(cfg.task, cfg.n_train, cfg.n_test, cfg.seed, **(knobs if cfg.task == "arithmetic" else {}))


def tokenize(tok, problems, template: str) -> tuple[list[list[int]], list[list[int]]]:
    """(prompt ids, worked-solution ids + EOS) of every problem: what SFT trains on and what sizes the run."""
    prompts = tok.encode_batch([tasks.format_prompt(p.question, template) for p in problems])
    worked = tok.encode_batch([tasks.format_completion(p) for p in problems])
    return [e.ids for e in prompts], [e.ids + [tasks.EOS_ID] for e in worked]


def plan_lengths(longest_prompt: int, longest_solution: int, max_new_tokens: int = 0,
                 max_seq_len: int = 0) -> tuple[int, int]:
    """(max_new_tokens, max_seq_len) of a run, from its data (choice 17).

        max_new_tokens = 16 * ceil(1.25 * longest_solution / 16)                    when 0 (auto)
        max_seq_len    = longest_prompt + max(max_new_tokens, longest_solution)     when 0 (auto)

    longest_prompt: the longest prompt of the train and test splits, in tokens; longest_solution: the longest
    worked solution, EOS included. So the model sees every prompt with its whole generation budget, and SFT
    every example. A max_seq_len given by hand that cannot hold the longest prompt plus the generation budget
    is a ValueError naming the numbers and the flags (SFT then drops the examples longer than it, and says so).
    (20, 70) -> (96, 116);   (20, 70, 48) -> (48, 90);   (349, 70, 96, 160) -> ValueError (349 + 96 > 160)
    """
    new = max_new_tokens or 16 * math.ceil(1.25 * longest_solution / 16)
    need = longest_prompt + new
    if max_seq_len and max_seq_len < need:
        raise ValueError(f"--max_seq_len {max_seq_len} cannot hold the longest prompt ({longest_prompt} tokens) plus "
                         f"--max_new_tokens {new} = {need}: raise --max_seq_len to at least {need}, or give 0 to size "
                         "it from the data")
    return new, max_seq_len or longest_prompt + max(new, longest_solution)


def sft_examples(problems, prompts, worked, tok, max_len: int, direct_frac: float = 0.0,
                 seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids + EOS) per problem; examples longer than max_len are dropped, and said.

    A fraction direct_frac of the targets, drawn with their own seed, skip the worked steps
    (tasks.format_completion show_work=False): the mixed cold start of choice 15.
    """
    rng = random.Random(f"{seed}-direct")
    show = [rng.random() >= direct_frac for _ in problems]
    direct = iter(tok.encode_batch([tasks.format_completion(p, False) for p, s in zip(problems, show) if not s]))
    examples = [(p, w if s else next(direct).ids + [tasks.EOS_ID]) for p, w, s in zip(prompts, worked, show)]
    kept = [e for e in examples if len(e[0]) + len(e[1]) <= max_len]
    if len(kept) < len(examples):
        print(f"dropped {len(examples) - len(kept)} of {len(examples)} examples longer than --max_seq_len {max_len}")
    if not kept:
        raise ValueError(f"every example is longer than --max_seq_len {max_len}; raise it, or give 0 to size it "
                         "from the data")
    return kept


def step_rng(seed: int, stage: str, step: int) -> random.Random:
    """The Python RNG of one step of one stage: the same (seed, stage, step), the same draws (choice 16)."""
    return random.Random(f"{seed}-{stage}-{step}")


def step_generator(seed: int, stage: str, step: int, device: str = "cpu") -> torch.Generator:
    """The torch generator of one step of one stage, on `device` (sampling and shuffling draw from it)."""
    return torch.Generator(device=device).manual_seed(step_rng(seed, stage, step).getrandbits(63))


def sft_batch_indices(lengths: list[int], batch_size: int, step: int, seed: int, group: int = 1) -> list[int]:
    """The example indices of SFT step `step`, a function of (seed, step) alone (choice 16).

    group=1: batch_size examples at random. group > 1: draw group * batch_size examples for the `group` steps
    step // group * group, ..., sort them by length and cut them into `group` batches in random order, so that
    each batch holds examples of similar length. Batches pad to their longest sequence, so grouping cuts
    padding: group=16 made SFT steps about 20% faster. But on arithmetic, length is nearly the problem's type
    (operand digits), so grouped batches are uniform, and SFT learned more slowly per step: held-out pass@1
    at step 1200 of 1800 was 0.28 with group=16 and 0.52 with group=1, and after 1,600 steps 0.791 with
    group=2 against 0.840 with group=1 (seed 0, 2026-11-22). Hence the default of 1.
    """
    if len(lengths) < batch_size:
        raise ValueError(f"--batch_size {batch_size} is larger than the {len(lengths)} training examples")
    rng = step_rng(seed, "sft", step // group)
    idx = sorted(rng.sample(range(len(lengths)), min(len(lengths), group * batch_size)), key=lambda i: lengths[i])
    batches = [idx[k:k + batch_size] for k in range(0, len(idx) - batch_size + 1, batch_size)]
    rng.shuffle(batches)
    return batches[step % group % len(batches)]


def sft_batch(examples, idx, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded inputs (B, T), next-token targets (B, T) and the loss mask (B, T).

    The mask is True where the target is a completion token, so the prompt is never a target.
    """
    seqs = [examples[i][0] + examples[i][1] for i in idx]
    T = max(len(s) for s in seqs) - 1
    x = torch.full((len(idx), T), tasks.PAD_ID, dtype=torch.long)
    y = torch.full((len(idx), T), tasks.PAD_ID, dtype=torch.long)
    mask = torch.zeros(len(idx), T, dtype=torch.bool)
    for row, (i, s) in enumerate(zip(idx, seqs)):
        n_prompt = len(examples[i][0])
        x[row, :len(s) - 1] = torch.tensor(s[:-1])
        y[row, :len(s) - 1] = torch.tensor(s[1:])
        mask[row, n_prompt - 1:len(s) - 1] = True  # targets s[n_prompt:], the completion and its EOS
    return x.to(device), y.to(device), mask.to(device)


def completion_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over completion tokens: -(1/N) sum_{masked t} log p(y_t | y_<t)."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # the loss in >= fp32 (bf16 autocast)
    nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")  # (B*T,)
    return (nll * mask.flatten()).sum() / mask.sum()


# ---------------------------------------------------------------------------------------------
# Optimisation
# ---------------------------------------------------------------------------------------------
def sft_progress(step: int, elapsed_s: float, cfg: TrainConfig) -> float:
    """How far SFT has got, from 0 to 1: step / sft_steps, or elapsed / sft_minutes if that is further.

    On a fast machine the steps run out first and the run is exactly sft_steps long; on a slow one the
    time budget runs out first, and the schedule still completes its decay, in fewer steps.
    """
    progress = step / cfg.sft_steps
    if cfg.sft_minutes > 0:
        progress = max(progress, elapsed_s / (60 * cfg.sft_minutes))
    return min(1.0, progress)


def lr_at(step: int, progress: float, cfg: TrainConfig) -> float:
    """Linear warm-up over the first warmup_steps steps, then cosine decay from lr down to
    min_lr_ratio * lr as progress goes from warmup_steps / sft_steps to 1."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    start = cfg.warmup_steps / cfg.sft_steps
    x = min(1.0, max(0.0, (progress - start) / max(1e-9, 1 - start)))  # 0 -> 1 over the decay
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * x)))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (p.dim() >= 2), none on norm gains."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=False)


class Metrics:
    """Appends one JSON record a line to out_dir/metrics.jsonl.

    A new run empties the file; a resumed one cuts it back to `keep_bytes`, its length when the resume point
    was written, so that the records of the steps after it, which are about to run again, are not doubled.
    """

    def __init__(self, path: str, keep_bytes: int = 0):
        self.path = path
        with open(path, "a") as f:
            f.truncate(keep_bytes)

    def log(self, **record):
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def size(self) -> int:
        """The file's length in bytes: what a resume point records."""
        return os.path.getsize(self.path)

    def records(self) -> list[dict]:
        """Every record so far; a malformed line is an error naming the file and line."""
        return read_jsonl(self.path)


def read_jsonl(path: str) -> list[dict]:
    """The JSON records of a .jsonl file, one per non-empty line; ValueError 'path:line: ...' on a bad line."""
    out = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
    return out


class NonFiniteError(ArithmeticError):
    """A loss, an advantage, a value or a gradient norm is NaN or inf: the run stops before the update (choice 18)."""


def check_finite(name: str, x) -> None:
    """Raise NonFiniteError naming `name` if the number or tensor x holds a NaN or an inf."""
    finite = math.isfinite(x) if isinstance(x, (int, float)) else bool(torch.isfinite(x).all())
    if not finite:
        raise NonFiniteError(f"the {name} {'is' if isinstance(x, (int, float)) else 'holds'} "
                             f"{x if isinstance(x, (int, float)) else 'a NaN or inf'}")


def autocast(device: str):
    """bf16 autocast on CUDA; plain fp32 on CPU (bf16 matmuls are slow on most CPUs)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)


# ---------------------------------------------------------------------------------------------
# Stage 1: cold-start SFT
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    """What every stage of a run shares: its config, tokenizer, metrics file and device."""
    cfg: TrainConfig
    tok: object  # tokenizers.Tokenizer
    metrics: Metrics
    device: str

    def save(self, stage: str, step: int, models: dict, optimizers: dict, *, evaluate: bool, done: bool) -> None:
        """Before an evaluation, or when stopped: the stage checkpoint out_dir/<stage>/ (what sample.py and
        --init_from read; PPO's critic in <stage>/critic/) and the resume point (checkpoint.py)."""
        meta = {"train_config": asdict(self.cfg), "stage": stage, "step": step}
        export = os.path.join(self.cfg.out_dir, stage)
        save_checkpoint(export, models["policy"], self.tok, meta)
        if "critic" in models:  # beside the policy, for a run that continues PPO
            save_checkpoint(os.path.join(export, "critic"), models["critic"], None, {**meta, "stage": f"{stage}_critic"})
        checkpoint.save(self.cfg.out_dir, stage, step, models, optimizers, train_config=asdict(self.cfg),
                        tokenizer=self.tok, metrics_bytes=self.metrics.size(), evaluate=evaluate, done=done)


class Interrupted(Exception):
    """Ctrl-C stopped the run after a whole step; the resume point of that step is written."""


class StopRequest:
    """Ctrl-C (SIGINT) asks the stage to stop after the step in progress, save and say how to resume, so a
    step is never left half done; a second Ctrl-C stops at once (then the last checkpoint is what is kept)."""

    def __init__(self):
        self.requested, self.previous = False, None

    def __enter__(self):
        try:
            self.previous = signal.signal(signal.SIGINT, self.handle)
        except ValueError:  # not the main thread (signals can only be caught there): Ctrl-C keeps its default
            self.previous = None
        return self

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("Ctrl-C: stopping after this step to save the run (press it again to stop at once)")

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def sft_step(model, optimizer, x, y, mask, grad_clip: float, device: str) -> tuple[float, float]:
    """One SFT update: loss on the completion tokens -> backward -> clip -> AdamW step; (loss, gradient norm)."""
    with autocast(device):
        loss = completion_loss(model(x), y, mask)
    check_finite("SFT loss", loss)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return loss.item(), clip_and_step(model, optimizer, grad_clip)


def sft(model, examples, test, run: Run, point: checkpoint.ResumePoint | None = None) -> None:
    """Supervised fine-tuning on (prompt, worked solution) pairs; a checkpoint, then a held-out evaluation, every
    eval_every steps. With a resume point of this stage (its weights already loaded), it continues from there."""
    cfg = run.cfg
    optimizer = make_optimizer(model, cfg, cfg.lr)
    start = 0
    if point is not None:
        checkpoint.restore_optimizer(point, "optimizer", optimizer)
        start = point.step
        if point.evaluate:  # the kill came before this step's evaluation was logged
            evaluate_sft(model, test, run, start)
        if point.done:
            return
    save = lambda step, **kw: run.save("sft", step, {"policy": model}, {"optimizer": optimizer}, **kw)
    lengths = [len(p) + len(c) for p, c in examples]
    t0 = time.perf_counter()
    with StopRequest() as stop:
        bar = tqdm(range(start, cfg.sft_steps), desc="sft", initial=start, total=cfg.sft_steps, dynamic_ncols=True,
                   file=sys.stdout)
        for step in bar:
            if stop.requested:
                save(step, evaluate=False, done=False)
                raise Interrupted(f"SFT step {step}")
            progress = sft_progress(step, time.perf_counter() - t0, cfg)
            if progress >= 1.0 and step > start:  # the time budget ran out before the steps did
                tqdm.write(f"sft_minutes={cfg.sft_minutes} reached after {step} of {cfg.sft_steps} steps")
                save(step, evaluate=True, done=True)
                evaluate_sft(model, test, run, step)
                return
            lr = lr_at(step, progress, cfg)
            set_lr(optimizer, lr)
            idx = sft_batch_indices(lengths, cfg.batch_size, step, cfg.seed, cfg.length_grouping)
            x, y, mask = sft_batch(examples, idx, run.device)
            try:
                loss, grad_norm = sft_step(model, optimizer, x, y, mask, cfg.grad_clip, run.device)
            except NonFiniteError as e:
                raise NonFiniteError(f"{e} at SFT step {step + 1}") from None
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
            if step % 10 == 0 or step == cfg.sft_steps - 1:
                run.metrics.log(stage="sft", step=step, loss=loss, lr=lr, grad_norm=grad_norm,
                                time=round(time.perf_counter() - t0, 2))
            if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.sft_steps:
                save(step + 1, evaluate=True, done=step + 1 == cfg.sft_steps)  # save, then evaluate
                evaluate_sft(model, test, run, step + 1)


def evaluate_sft(model, test, run: Run, step: int) -> None:
    """Held-out greedy pass@1 on the first eval_n test problems: a log line and a metrics record."""
    cfg, t = run.cfg, time.perf_counter()
    n = min(cfg.eval_n, len(test))
    acc = greedy_pass_at_1(model, run.tok, test[:n], cfg.template, cfg.max_new_tokens)
    model.train()
    tqdm.write(f"sft step {step}/{cfg.sft_steps} | held-out pass@1 {acc:.3f} on {n} | {time.perf_counter() - t:.0f}s")
    run.metrics.log(stage="sft", step=step, eval_pass_at_1=acc, eval_n=n)


# ---------------------------------------------------------------------------------------------
# Stage 2: GRPO (DeepSeekMath Algorithm 1; DeepSeek-R1 stage 2, reasoning-oriented RL)
# ---------------------------------------------------------------------------------------------
DYNAMIC_SAMPLING_ROUNDS = 4  # with --dynamic_sampling, at most this many rollouts to fill one batch


@dataclass
class Rollouts:
    """One step's samples: N = B * G rows, the G samples of question b in rows b*G .. b*G + G - 1."""
    problems: list  # the B questions (tasks.Problem)
    prompts: list  # N prompt token lists (each question's G times)
    ids: torch.Tensor  # (N, T) completion tokens, right-padded
    mask: torch.Tensor  # (N, T) bool, True on real completion tokens (the EOS included)
    truncated: torch.Tensor  # (N,) bool, hit max_new_tokens without an EOS
    texts: list  # N completion texts (EOS dropped), as the rewards see them
    rewards: torch.Tensor  # (B, G) r_i, the weighted reward sum (rewards.total_reward)
    correct: torch.Tensor  # (B, G) accuracy 1/0, for logging and dynamic sampling


def reward_weights(cfg: TrainConfig) -> rewards.RewardWeights:
    return rewards.RewardWeights(accuracy=cfg.reward_accuracy, format=cfg.reward_format,
                                 overlong=cfg.reward_overlong, language=cfg.reward_language,
                                 accuracy_wrong=cfg.reward_wrong)


@torch.no_grad()
def sample_groups(policy, tok, problems, cfg: TrainConfig, generator, timer: dict | None = None) -> Rollouts:
    """G completions for each of the B questions from ONE batched KV-cache generate() call, then scored.

    The sampler is pi_old of this step (Algorithm 1: pi_old <- pi_theta, then o_i ~ pi_old(O|q)).
    timer, if given, accumulates the seconds spent in "rollout" (sampling) and "reward" (decoding, scoring),
    and the completion tokens sampled ("tokens").
    """
    timer = {} if timer is None else timer
    t = time.perf_counter()
    G = cfg.group_size
    prompts = [tasks.encode(tok, tasks.format_prompt(p.question, cfg.template)) for p in problems]
    prompts = [ids for ids in prompts for _ in range(G)]  # each question G times, consecutive rows
    was_training = policy.training
    policy.eval()
    roll = generate(policy, prompts, cfg.max_new_tokens, tasks.EOS_ID, tasks.PAD_ID, temperature=cfg.temperature,
                    top_p=cfg.top_p if cfg.top_p < 1 else None, generator=generator,
                    max_batch=cfg.forward_chunk or None)
    policy.train(was_training)
    timer["rollout"] = timer.get("rollout", 0.0) + time.perf_counter() - t
    timer["tokens"] = timer.get("tokens", 0) + int(roll.mask.sum())
    t = time.perf_counter()
    texts = decode_completions(tok, roll)
    weights, lengths = reward_weights(cfg), roll.mask.sum(-1).tolist()
    golds = [p.answer for p in problems for _ in range(G)]
    parts = [rewards.reward_components(text, gold, weights, length=n, max_len=cfg.max_new_tokens,
                                       cache_len=cfg.overlong_cache) for text, gold, n in zip(texts, golds, lengths)]
    r = [rewards.weighted_sum(p, weights) for p in parts]  # r_i = rewards.total_reward, each term computed once
    c = [float(p["accuracy"] == 1.0) for p in parts]  # correct: 1/0 whatever value a wrong answer gets
    B = len(problems)
    timer["reward"] = timer.get("reward", 0.0) + time.perf_counter() - t
    return Rollouts(problems, prompts, roll.ids, roll.mask, roll.truncated, texts,
                    torch.tensor(r).view(B, G), torch.tensor(c).view(B, G))


def select_groups(parts: list[Rollouts], keep: list[torch.Tensor], n_groups: int, G: int) -> Rollouts:
    """The first n_groups kept groups of several rollouts, as one Rollouts (completions re-padded)."""
    chosen = [(part, b) for part, k in zip(parts, keep) for b in k.nonzero().flatten().tolist()][:n_groups]
    if not chosen:  # every group had equal rewards: nothing to learn from in this step
        none = torch.zeros(0, 0, dtype=torch.long)
        return Rollouts([], [], none, none.bool(), torch.zeros(0, dtype=torch.bool), [], torch.zeros(0, G),
                        torch.zeros(0, G))
    T = max(part.ids.size(1) for part, _ in chosen)
    pad = lambda x, value: F.pad(x, (0, T - x.size(1)), value=value)
    rows = lambda part, b: slice(b * G, (b + 1) * G)
    return Rollouts(
        problems=[part.problems[b] for part, b in chosen],
        prompts=[ids for part, b in chosen for ids in part.prompts[rows(part, b)]],
        ids=torch.cat([pad(part.ids[rows(part, b)], tasks.PAD_ID) for part, b in chosen]),
        mask=torch.cat([pad(part.mask[rows(part, b)], False) for part, b in chosen]),
        truncated=torch.cat([part.truncated[rows(part, b)] for part, b in chosen]),
        texts=[t for part, b in chosen for t in part.texts[rows(part, b)]],
        rewards=torch.stack([part.rewards[b] for part, b in chosen]),
        correct=torch.stack([part.correct[b] for part, b in chosen]))


def collect_rollouts(policy, tok, train, cfg: TrainConfig, rng: random.Random, generator,
                     timer: dict | None = None) -> tuple[Rollouts, Rollouts]:
    """(the batch to learn from, the first rollout as sampled, for logging).

    Without dynamic sampling both are one rollout of prompts_per_step random training questions. With it
    (DAPO Eq. 11), groups whose G rewards are all equal (zero advantage, zero gradient) are dropped and
    fresh questions are sampled until prompts_per_step groups remain or DYNAMIC_SAMPLING_ROUNDS rollouts
    have been drawn; the batch may then be smaller (or empty: the step is skipped).
    """
    first = sample_groups(policy, tok, rng.sample(train, cfg.prompts_per_step), cfg, generator, timer)
    if not cfg.dynamic_sampling:
        return first, first
    parts, keep = [first], [grpo.dynamic_sampling_filter(first.rewards)]
    while sum(int(k.sum()) for k in keep) < cfg.prompts_per_step and len(parts) < DYNAMIC_SAMPLING_ROUNDS:
        parts.append(sample_groups(policy, tok, rng.sample(train, cfg.prompts_per_step), cfg, generator, timer))
        keep.append(grpo.dynamic_sampling_filter(parts[-1].rewards))
    return select_groups(parts, keep, cfg.prompts_per_step, cfg.group_size), first


def advantages(roll: Rollouts, tok, cfg: TrainConfig) -> torch.Tensor:
    """A_{i,t} for every completion token, (N, T).

    outcome (DeepSeekMath §4.1.2): A_i from the group's rewards (grpo.group_advantages, normalised per
    --adv_scale), the same on every token.
    process (§4.1.3): one reward per <<expr=value>> step (rewards.step_rewards: 1 if its arithmetic is right),
    placed on the token that closes the step (tasks.token_spans + rewards.char_to_token_index), normalised
    over all steps of the group; each token gets the sum of the normalised rewards of its step and every
    later one (grpo.process_advantages). --process_outcome last_step also counts the outcome reward r_i as
    one more step, ending at the last token (not the paper's form: a switch to study, docs).
    """
    B, G = roll.rewards.shape
    if cfg.supervision == "outcome":
        A = grpo.group_advantages(roll.rewards, cfg.adv_scale, cfg.std_ddof)  # (B, G)
        return grpo.broadcast_outcome_advantage(A.flatten(), roll.mask)  # (N, T)
    T, lengths, out = roll.ids.size(1), roll.mask.sum(-1).tolist(), []
    for b in range(B):
        step_r, step_end = [], []
        for g in range(G):
            n = b * G + g
            ids = [t for t in roll.ids[n, :lengths[n]].tolist() if t != tasks.EOS_ID]  # the tokens of roll.texts[n]
            spans = tasks.token_spans(tok, ids)  # each token's characters in that text
            steps = rewards.step_rewards(roll.texts[n])
            step_r.append([s.reward for s in steps])
            step_end.append([rewards.char_to_token_index(s.end - 1, spans) for s in steps])  # index(j): its '>>'
            if cfg.process_outcome == "last_step":
                step_r[-1].append(roll.rewards[b, g].item())
                step_end[-1].append(lengths[n] - 1)
        out.append(grpo.process_advantages(step_r, step_end, T, cfg.std_ddof))
    return torch.cat(out) * roll.mask  # (N, T)


@dataclass
class RLModels:
    """What the RL stage holds besides its data: the policy and its AdamW, the frozen reference pi_ref, and with
    PPO the critic V_psi and its AdamW. The reward is rule-based (rewards.py), so it is no model."""
    policy: Transformer
    ref: Transformer
    optimizer: torch.optim.Optimizer
    critic: Critic | None = None
    critic_optimizer: torch.optim.Optimizer | None = None


def make_rl_models(policy, cfg: TrainConfig) -> RLModels:
    """pi_ref starts as a frozen copy of the policy (the SFT model); PPO's critic as a copy of its weights with a
    zero value head (model.py choice 5)."""
    ref = copy.deepcopy(policy).requires_grad_(False).eval()
    models = RLModels(policy, ref, make_optimizer(policy, cfg, cfg.rl_lr))
    if cfg.rl == "ppo":
        models.critic = Critic.from_policy(policy).train()
        models.critic_optimizer = make_optimizer(models.critic, cfg, cfg.critic_lr)
    return models


@dataclass
class Batch:
    """A step's rollout on the device, with what every update of it reuses (computed once, without gradient)."""
    prompt_ids: torch.Tensor  # (N, P) left-padded prompts
    prompt_valid: torch.Tensor  # (N, P) bool
    ids: torch.Tensor  # (N, T) completions
    mask: torch.Tensor  # (N, T) bool, the rollout's mask: real completion tokens
    loss_mask: torch.Tensor  # (N, T) bool, the losses' mask: without truncated rows under --overlong_filter
    old_logp: torch.Tensor | None = None  # (N, T) log pi_old; None where it equals the policy's own, detached
    ref_logp: torch.Tensor | None = None  # (N, T) log pi_ref; None with kl_coef = 0
    logprob_s: float = 0.0  # seconds spent on old_logp and ref_logp

    def logprobs(self, model, rows, temperature: float) -> torch.Tensor:
        """log pi(o_t) of the completions in `rows` under `model`, (n, T) (grpo.completion_logprobs)."""
        return grpo.completion_logprobs(model, self.prompt_ids[rows], self.prompt_valid[rows], self.ids[rows],
                                        self.mask[rows], temperature)

    def values(self, critic, rows) -> torch.Tensor:
        """V(s_t) before each completion token in `rows`, (n, T) (grpo.completion_values)."""
        return grpo.completion_values(critic, self.prompt_ids[rows], self.prompt_valid[rows], self.ids[rows],
                                      self.mask[rows])

    def all_rows(self, per_rows, chunk: int) -> torch.Tensor:
        """per_rows(rows) for every row, at most `chunk` rows per call (0: one call), concatenated: (N, T)."""
        N = self.ids.size(0)
        if not chunk or chunk >= N:
            return per_rows(slice(None))  # all N rows, without copying
        return torch.cat([per_rows(slice(i, i + chunk)) for i in range(0, N, chunk)])


def rollout_batch(policy, ref, roll: Rollouts, cfg: TrainConfig, device: str, need_old: bool) -> Batch:
    """The rollout as a Batch, with pi_old's log-probs (if need_old) and pi_ref's (if kl_coef > 0) under no_grad.

    pi_old is the policy that sampled (choice 10 of grpo.py): its log-probs are recomputed before any update.
    """
    prompt_ids, prompt_valid = left_pad(roll.prompts, tasks.PAD_ID, device)
    ids, mask = roll.ids.to(device), roll.mask.to(device)
    batch = Batch(prompt_ids, prompt_valid, ids, mask,
                  grpo.completion_mask(mask, roll.truncated.to(device), cfg.overlong_filter))
    t = time.perf_counter()
    with torch.no_grad(), autocast(device):
        if need_old:  # pi_old, before any update
            batch.old_logp = batch.all_rows(lambda rows: batch.logprobs(policy, rows, cfg.temperature),
                                            cfg.forward_chunk)
        if cfg.kl_coef > 0:  # pi_ref, never with gradient
            batch.ref_logp = batch.all_rows(lambda rows: batch.logprobs(ref, rows, cfg.temperature), cfg.forward_chunk)
    batch.logprob_s = time.perf_counter() - t
    return batch


def clip_and_step(model, optimizer, grad_clip: float) -> float:
    """Clip the gradients already in model (the global norm, to grad_clip; 0: no clip), one optimizer step;
    the norm before the clip. A NaN or inf norm stops the run before the step (choice 18)."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or float("inf")).item()
    check_finite("gradient norm", norm)
    optimizer.step()
    return norm


def micro_batches(rows: torch.Tensor, size: int) -> tuple[torch.Tensor, ...]:
    """A minibatch's rows in micro-batches of at most `size` rows (0: one micro-batch, the whole)."""
    return rows.split(size) if size else (rows,)


def accumulate(model, optimizer, rows: torch.Tensor, size: int, loss_of, weight_of, grad_clip: float):
    """One optimizer step on the loss of a minibatch, by gradient accumulation over its micro-batches:

        grad = sum_k w_k * grad loss(part_k),  w_k = grpo.aggregate_weight(part_k, whole)

    which is the gradient of loss(whole rows) exactly (up to float rounding), while only one micro-batch's
    activations are held at a time. loss_of(part) -> (loss, stats); weight_of(part) -> w_k.
    Returns (sum_k w_k * loss_k, [(w_k, stats_k)], the gradient norm before the clip).
    """
    optimizer.zero_grad(set_to_none=True)
    total, parts = 0.0, []
    for part in micro_batches(rows, size):
        w = weight_of(part)
        loss, stats = loss_of(part)
        check_finite("loss", loss)
        (w * loss).backward()
        total += w * loss.item()
        parts.append((w, stats))
    return total, parts, clip_and_step(model, optimizer, grad_clip)


def combine_stats(parts: list[tuple[float, dict]]) -> dict:
    """The statistics of a minibatch from those of its micro-batches: the objective as the loss (weighted by
    w_k), the token counts summed, the ratio's extremes as extremes, the rest (token means) weighted by tokens."""
    if len(parts) == 1:
        return dict(parts[0][1])
    stats = [s for _, s in parts]
    tokens = [s["tokens"] for s in stats]
    out = {}
    for key in stats[0]:
        values = [s[key] for s in stats]
        if key == "tokens":
            out[key] = sum(values)
        elif key in ("ratio_min", "ratio_max"):
            out[key] = (min if key == "ratio_min" else max)(values)
        elif key == "objective":
            out[key] = sum(w * v for (w, _), v in zip(parts, values))
        else:
            out[key] = sum(t * v for t, v in zip(tokens, values)) / max(sum(tokens), 1)
    return out


def minibatches(n_rows: int, k: int, generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
    """The n_rows rows of a rollout in random order, cut into exactly min(k, n_rows) minibatches whose sizes
    differ by at most one (120 rows into 16: 8 of 8 and 8 of 7), so every minibatch is one optimizer step."""
    device = generator.device if generator is not None else "cpu"
    return torch.randperm(n_rows, generator=generator, device=device).tensor_split(min(k, n_rows))


def minibatch_updates(models: RLModels, batch: Batch, policy_loss, cfg: TrainConfig, generator,
                      critic_loss=None) -> dict:
    """mu epochs over the rollout's N rows in `minibatches` random minibatches, and on each minibatch:

        one AdamW step of the policy on policy_loss(logp, old_logp, rows) -> (loss, stats)
        with PPO, then one AdamW step of the critic on vf_coef * critic_loss(values, rows)

    each step's gradient accumulated over micro-batches of at most cfg.micro_batch rows (`accumulate`).

    Returns the mean of each statistic over the updates (the ratio's extremes: min and max), the number of
    optimizer steps of the policy (updates) and the seconds of its updates (update_s) and of the critic's
    (critic_s).
    """
    device = batch.ids.device.type
    N = batch.ids.size(0)
    logs, seconds = [], {"update_s": 0.0, "critic_s": 0.0}
    entropy = []  # sum of -log pi_old over the sampled tokens, per micro-batch of the current minibatch

    def policy_part(part):  # the policy's loss on one micro-batch
        with autocast(device):
            logp = batch.logprobs(models.policy, part, cfg.temperature)  # log pi_theta, with gradient
            old = logp.detach() if batch.old_logp is None else batch.old_logp[part]
            entropy.append(grpo.masked_sum(-old.double(), batch.mask[part]).item())  # E[-log pi], sampled tokens
            return policy_loss(logp, old, part)

    def critic_part(part):  # the critic's loss on one micro-batch, scaled by vf_coef
        with autocast(device):
            v_loss = critic_loss(batch.values(models.critic, part), part)  # L_V, with gradient
            return cfg.vf_coef * v_loss, {"value_loss": v_loss.item()}

    for _ in range(cfg.mu):  # for GRPO iteration = 1..mu
        for rows in minibatches(N, cfg.minibatches, generator):
            rows = rows.to(batch.ids.device)
            t = time.perf_counter()
            entropy.clear()
            weight = lambda part: grpo.aggregate_weight(batch.loss_mask[part], batch.loss_mask[rows], cfg.agg)
            loss, parts, norm = accumulate(models.policy, models.optimizer, rows, cfg.micro_batch, policy_part,
                                           weight, cfg.grad_clip)
            stats = {**combine_stats(parts), "grad_norm": norm, "loss": loss,
                     "entropy": sum(entropy) / max(int(batch.mask[rows].sum()), 1)}
            seconds["update_s"] += time.perf_counter() - t
            if critic_loss is not None:  # the value loss is a token mean (grpo.value_loss)
                t = time.perf_counter()
                weight = lambda part: grpo.aggregate_weight(batch.loss_mask[part], batch.loss_mask[rows], "token_mean")
                _, parts, stats["critic_grad_norm"] = accumulate(models.critic, models.critic_optimizer, rows,
                                                                 cfg.micro_batch, critic_part, weight, cfg.grad_clip)
                stats["value_loss"] = sum(w * s["value_loss"] for w, s in parts)
                seconds["critic_s"] += time.perf_counter() - t
            logs.append(stats)
    # mean over the updates, except the extremes of the ratio
    out = {k: sum(d[k] for d in logs) / len(logs) for k in logs[0] if k not in ("ratio_min", "ratio_max")}
    out["ratio_min"] = min(d["ratio_min"] for d in logs)
    out["ratio_max"] = max(d["ratio_max"] for d in logs)
    return {**out, "updates": len(logs), **{k: round(v, 3) for k, v in seconds.items()}}


def policy_update(policy, ref, optimizer, roll: Rollouts, adv: torch.Tensor, cfg: TrainConfig, device: str,
                  generator) -> dict:
    """GRPO's update: mu epochs over the rollout in `minibatches` minibatches, one AdamW step each, maximising
    J_GRPO (grpo.grpo_loss: the clipped surrogate minus beta k3 inside the token average).

    pi_old's log-probs are recomputed under no_grad before the first update, except with a single update per
    rollout (mu = 1, one minibatch, DeepSeekMath's setting), where they equal the policy's own, detached, so
    the ratio is exactly 1 and the forward pass is saved. Then only with mu > 1 or several minibatches does
    the clip act.
    """
    single = cfg.mu == 1 and cfg.minibatches == 1
    batch = rollout_batch(policy, ref, roll, cfg, device, need_old=not single)
    adv = adv.to(device)
    ref_logp = lambda rows: None if batch.ref_logp is None else batch.ref_logp[rows]
    grpo_loss = lambda logp, old, rows: grpo.grpo_loss(logp, old, ref_logp(rows), adv[rows], batch.loss_mask[rows],
                                                       cfg.kl_coef, cfg.clip_eps_low, cfg.clip_eps_high, cfg.agg,
                                                       cfg.max_new_tokens)
    out = minibatch_updates(RLModels(policy, ref, optimizer), batch, grpo_loss, cfg, generator)
    del out["critic_s"]  # GRPO has no critic
    return {**out, "logprob_s": round(batch.logprob_s, 3)}


def ppo_update(models: RLModels, roll: Rollouts, cfg: TrainConfig, device: str, generator) -> dict:
    """PPO's update, where GRPO has `advantages` and `policy_update` (DeepSeekMath Eqs. 1-2, GAE as DAPO Eqs. 2-3):

        r_t = score(q, o) on the last token - beta (log pi_old(o_t) - log pi_ref(o_t))   Eq. 2, ppo_token_rewards
        A_t = sum_l (gamma lam)^l delta_{t+l},  R_t = A_t + V_old(s_t)                   grpo.gae
        A_t <- (A_t - mean A) / std A over the batch's tokens (--whiten_adv)            grpo.whiten
        mu epochs x minibatches: the policy on -J_PPO (Eq. 1, grpo.ppo_loss), the critic on
        vf_coef * L_V (grpo.value_loss, clipped around V_old)

    V_old are the critic's values at rollout time, like pi_old. Logs the critic's value loss, the explained
    variance of V_old, and the time split: log-probs, advantages (rewards, GAE), critic (its forward at
    rollout time plus its forward, backward and AdamW steps), update (the policy's).
    """
    batch = rollout_batch(models.policy, models.ref, roll, cfg, device, need_old=True)  # Eq. 2 needs pi_old
    t = time.perf_counter()
    with torch.no_grad(), autocast(device):
        old_values = batch.all_rows(lambda rows: batch.values(models.critic, rows), cfg.forward_chunk)  # V_old(s_t)
    check_finite("critic's values", old_values)
    values_s, t = time.perf_counter() - t, time.perf_counter()
    score = roll.rewards.flatten().to(device)  # (N,) the rule-based reward r_phi(q, o) of each completion
    ref_logp = batch.old_logp if batch.ref_logp is None else batch.ref_logp  # kl_coef 0: no reference, k1 = 0
    token_rewards = grpo.ppo_token_rewards(score, batch.old_logp, ref_logp, batch.mask, cfg.kl_coef)  # r_t
    adv, returns = grpo.gae(token_rewards, old_values, batch.mask, cfg.gamma, cfg.lam)  # A_t, R_t = A_t + V_old
    if cfg.whiten_adv:
        adv = grpo.whiten(adv, batch.loss_mask)  # batch-level normalisation (choice 11)
    check_finite("advantages", adv)
    adv_s = time.perf_counter() - t
    ppo_loss = lambda logp, old, rows: grpo.ppo_loss(logp, old, adv[rows], batch.loss_mask[rows], cfg.clip_eps_low,
                                                     cfg.clip_eps_high, cfg.agg, cfg.max_new_tokens)
    value_loss = lambda values, rows: grpo.value_loss(values, old_values[rows], returns[rows], batch.loss_mask[rows],
                                                      cfg.value_clip or None)
    out = minibatch_updates(models, batch, ppo_loss, cfg, generator, value_loss)
    mask = batch.loss_mask
    kl = float("nan") if batch.ref_logp is None else grpo.masked_mean(
        grpo.kl_k3(batch.old_logp, batch.ref_logp), mask).item()  # choice 9
    returns_mean = grpo.masked_mean(returns, mask)
    return {**out, "kl": kl, "kl_k1": grpo.masked_mean(grpo.kl_k1(batch.old_logp, ref_logp), mask).item(),
            "explained_var": grpo.explained_variance(old_values, returns, mask),
            "value_mean": grpo.masked_mean(old_values, mask).item(), "return_mean": returns_mean.item(),
            "return_std": grpo.masked_mean((returns - returns_mean) ** 2, mask).sqrt().item(),
            "logprob_s": round(batch.logprob_s, 3), "adv_s": round(adv_s, 3),
            "critic_s": round(out["critic_s"] + values_s, 3)}


def rl_update(models: RLModels, roll: Rollouts, tok, cfg: TrainConfig, device: str, generator) -> dict:
    """Learn from one step's rollout: the only place where GRPO and PPO differ (grpo.py's table)."""
    if cfg.rl == "ppo":  # a critic and GAE; the KL is in the reward
        return ppo_update(models, roll, cfg, device, generator)
    t = time.perf_counter()
    adv = advantages(roll, tok, cfg)  # GRPO: group-relative advantages; the KL is in the loss
    check_finite("advantages", adv)
    adv_s = round(time.perf_counter() - t, 3)
    return {**policy_update(models.policy, models.ref, models.optimizer, roll, adv, cfg, device, generator),
            "adv_s": adv_s}


def model_table(models: RLModels) -> list[dict]:
    """One row per model the RL stage holds, with its parameter count and the MiB its tensors take.

    A trained model holds its weights, their gradients and AdamW's two moments (4 tensors of its size); a frozen
    one only its weights. Activations, the sampler's KV cache and the Python + torch runtime are not counted:
    `memory_record` measures the process.
    """
    rows = [("policy", "pi_theta, trained", models.policy, True), ("reference", "pi_ref, frozen", models.ref, False)]
    if models.critic is not None:
        rows.append(("critic", "V_psi, trained", models.critic, True))
    out = []
    for name, role, model, trained in rows:
        n_bytes = sum(p.numel() * p.element_size() for p in model.parameters()) * (4 if trained else 1)
        out.append(dict(model=name, role=role, params=sum(p.numel() for p in model.parameters()),
                        mib=round(n_bytes / 2 ** 20, 2)))
    return out + [dict(model="reward", role="rule-based: rewards.py", params=0, mib=0.0)]


def format_model_table(rows: list[dict]) -> str:
    """The model_table as a Markdown table with a total row."""
    lines = [f"| {'model':<9} | {'role':<22} | {'parameters':>10} | {'MiB (weights, grads, AdamW)':>27} |",
             f"|{'-' * 11}|{'-' * 24}|{'-' * 12}|{'-' * 29}|"]
    for r in rows + [dict(model="total", role="", params=sum(r["params"] for r in rows),
                          mib=sum(r["mib"] for r in rows))]:
        lines.append(f"| {r['model']:<9} | {r['role']:<22} | {r['params']:>10,} | {r['mib']:>27.2f} |")
    return "\n".join(lines)


def rss_mib() -> float:
    """This process's resident memory now, in MiB (Linux: /proc/self/statm; NaN where that is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20, 1)
    except (OSError, ValueError, AttributeError):
        return float("nan")


def peak_rss_mib() -> float:
    """The process's peak resident memory so far, in MiB: getrusage's ru_maxrss (KiB on Linux, bytes on macOS)."""
    if resource is None:  # Windows
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)


def reset_peak_rss() -> bool:
    """Lower the kernel's peak-RSS mark (VmHWM, which ru_maxrss reports) to the RSS now, so that the next
    ru_maxrss is the peak since this call: Linux >= 4.0, /proc/self/clear_refs. False where that fails."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak RSS; nothing else is cleared
        return True
    except OSError:
        return False


def memory_baseline(device: str) -> dict:
    """Memory just before the RL stage creates its models (reference, critic, optimizers): the RSS now and the
    process's peak so far (SFT's, when it ran here); then the peak marks are reset, RSS (reset_peak_rss) and
    on CUDA torch's peak counter, so that memory_record's peaks are the RL stage's own."""
    out = {"peak_rss_before_mib": peak_rss_mib(), "peak_rss_reset": reset_peak_rss(), "rss_before_mib": rss_mib()}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        out["cuda_allocated_before_mib"] = round(torch.cuda.memory_allocated() / 2 ** 20, 1)
    return out


def memory_record(device: str, baseline: dict) -> dict:
    """Peak memory of the RL stage, and what the stage added to the process.

    The 0.84M-parameter default model is 3.2 MiB of fp32 weights, 13 MiB with gradients and AdamW's moments,
    while importing Python, torch and tokenizers alone takes ~230 MiB of RSS (torch 2.13 CPU, Linux): the
    process's peak RSS says little about the algorithm. So the RSS just before the stage's models are
    created is recorded (memory_baseline), and rss_increase_mib = the stage's peak RSS - that RSS is the
    stage's own cost (models, optimizer states, activations, the sampler's KV cache). peak_rss_mib is
    getrusage's ru_maxrss after the stage: the stage's own peak where the mark could be reset
    (peak_rss_reset), else the whole process's, and then the increase is an upper bound. And a lower bound
    when SFT ran in the same process: memory SFT freed may still be mapped (the allocator keeps it) and RL
    reuse it; start RL with --init_from for a clean figure. On CUDA: torch.cuda.max_memory_allocated over
    the stage, and its increase over the allocation before it.
    """
    out = {**baseline, "peak_rss_mib": peak_rss_mib()}
    out["rss_increase_mib"] = round(out["peak_rss_mib"] - baseline["rss_before_mib"], 1)
    if device == "cuda":
        out["cuda_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
        out["cuda_increase_mib"] = round(out["cuda_peak_allocated_mib"] - baseline["cuda_allocated_before_mib"], 1)
    return out


def evaluate_policy(model, tok, problems, cfg: TrainConfig, generator) -> dict:
    """Held-out greedy pass@1, and from k samples per problem at eval_temperature / eval_top_p: pass@k (the
    unbiased estimator of Chen et al. 2021, grpo.pass_at_k with n = k), sampled pass@1 and cons@k (majority
    vote, grpo.majority_vote: the greedy pass@1 that sharpening alone could reach). "shows_work" is the
    fraction of greedy completions with a non-empty <think> block (choice 15: what GRPO changes first)."""
    chunk = cfg.forward_chunk or 256  # rows sampled at once
    texts = complete(model, tok, [p.question for p in problems], cfg.template, cfg.max_new_tokens, batch_size=chunk)
    out = {"pass_at_1": pass_rate(texts, problems),  # greedy_pass_at_1, reusing the texts for shows_work
           "shows_work": sum(split_completion(t)[0] != "" for t in texts) / len(problems)}
    k = cfg.pass_k
    if k > 1:
        texts = complete(model, tok, [p.question for p in problems for _ in range(k)], cfg.template,
                         cfg.max_new_tokens, temperature=cfg.eval_temperature, top_p=cfg.eval_top_p,
                         generator=generator, batch_size=chunk)
        hits = [sum(rewards.accuracy_reward(texts[i * k + j], p.answer) for j in range(k))
                for i, p in enumerate(problems)]
        out[f"pass_at_{k}"] = sum(grpo.pass_at_k(k, int(c), k) for c in hits) / len(problems)
        out["sampled_pass_at_1"] = sum(hits) / (k * len(problems))
        values = [rewards.parse_number(rewards.extract_answer(t)) for t in texts]  # "12" and "12.0": one vote
        votes = [grpo.majority_vote(values[i * k:(i + 1) * k]) for i in range(len(problems))]
        out[f"cons_at_{k}"] = sum(v is not None and v == rewards.parse_number(p.answer)
                                  for v, p in zip(votes, problems)) / len(problems)
    return out


def reset_reference(step: int, cfg: TrainConfig) -> bool:
    """Whether pi_ref <- pi_theta before GRPO step `step` (0-based; the reference starts as the SFT model):
    at the start of each of the `iterations` outer iterations of Algorithm 1 (DeepSeekMath), and every
    ref_reset_every steps if that is set (R1: "every 400 steps")."""
    steps_per_iteration = math.ceil(cfg.rl_steps / cfg.iterations)
    return step > 0 and (step % steps_per_iteration == 0 or bool(cfg.ref_reset_every)
                         and step % cfg.ref_reset_every == 0)


def step_line(r: dict) -> str:
    """The one log line of an RL step (the full record goes to metrics.jsonl); PPO adds its critic's numbers."""
    nan = float("nan")
    critic = (f"vloss {r['value_loss']:.4f} ev {r['explained_var']:.2f} | " if "value_loss" in r else "")
    return (f"{r['stage']} {r['step']:4d} | reward {r['reward']:.3f} acc {r['accuracy']:.3f} std {r['reward_std']:.3f} "
            f"zero-std {r['zero_std_frac']:.2f} | len {r['length']:.1f} trunc {r['truncated_frac']:.2f} | "
            f"kl {r.get('kl', nan):.4f} clip {r.get('clip_frac', nan):.3f} ent {r.get('entropy', nan):.3f} "
            f"gnorm {r.get('grad_norm', nan):.2f} | {critic}{r['step_s']:.2f}s, rollout {r['rollout_s']:.2f}s "
            f"{r['rollout_tok_s']} tok/s")


def set_lr(optimizer, lr: float) -> None:
    """Every parameter group of the optimizer to this learning rate."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def rl_step(models: RLModels, train, run: Run, step: int) -> dict:
    """One step of the RL stage (0-based `step`), DeepSeekMath Algorithm 1's inner loop; its metrics record.

    pi_ref <- pi_theta if an outer iteration starts -> B questions, G completions each from pi_old = pi_theta
    (collect_rollouts: one batched KV-cache generate(), rule-based rewards) -> rl_update: GRPO's group-relative
    advantages and mu x minibatches updates of its loss, or PPO's critic, GAE and updates.
    """
    cfg, t_step = run.cfg, time.perf_counter()
    if reset_reference(step, cfg):  # Algorithm 1: pi_ref <- pi_theta
        models.ref.load_state_dict(models.policy.state_dict())
        # (Algorithm 1 would now retrain the reward model with replay; rule-based rewards need nothing)
    warm_up = min(1.0, (step + 1) / cfg.rl_warmup_steps)
    lr = cfg.rl_lr * warm_up
    set_lr(models.optimizer, lr)
    if models.critic_optimizer is not None:
        set_lr(models.critic_optimizer, cfg.critic_lr * warm_up)
    rng, generator = step_rng(cfg.seed, "rl", step), step_generator(cfg.seed, "rl", step, run.device)
    timer = {}
    roll, first = collect_rollouts(models.policy, run.tok, train, cfg, rng, generator, timer)  # 1. rollout + rewards
    update = rl_update(models, roll, run.tok, cfg, run.device, generator) if roll.rewards.numel() else {}  # 2-3.
    lengths = first.mask.sum(-1).float()
    length_where = lambda keep: grpo.masked_mean(lengths, keep).item() if keep.any() else None  # null: none
    return dict(
        stage=cfg.rl, step=step + 1, lr=lr, reward=first.rewards.mean().item(), accuracy=first.correct.mean().item(),
        reward_std=first.rewards.std(-1, correction=cfg.std_ddof).mean().item(),
        zero_std_frac=(~grpo.dynamic_sampling_filter(first.rewards)).float().mean().item(),
        groups_used=roll.rewards.size(0), length=lengths.mean().item(),
        length_right=length_where(first.correct.flatten() > 0), length_wrong=length_where(first.correct.flatten() <= 0),
        truncated_frac=first.truncated.float().mean().item(), rollout_s=round(timer["rollout"], 3),
        reward_s=round(timer["reward"], 3), step_s=round(time.perf_counter() - t_step, 3),
        rollout_tok_s=round(timer["tokens"] / max(timer["rollout"], 1e-9)), **update)


def run_rl(policy, train, test, run: Run, point: checkpoint.ResumePoint | None = None) -> dict:
    """The RL stage, GRPO or PPO (cfg.rl): DeepSeekMath Algorithm 1 with rule-based rewards.

    Both algorithms share this loop: the questions of each step and their B x G rollouts, the rewards, the
    reference resets, the learning-rate warm-up, the log, the checkpoints and the evaluations; they differ
    only in `rl_update`. Every rl_eval_every steps (and before the first): a checkpoint, then greedy pass@1
    and sampled pass@k on held-out problems. With a resume point of this stage (the policy's weights already
    loaded), the reference, the optimizers and the critic are restored and the stage continues from there.
    Returns "models" (model_table) and "memory" (memory_record).
    """
    cfg, stage = run.cfg, run.cfg.rl
    held_out = test[:cfg.rl_eval_n]
    baseline = memory_baseline(run.device)
    models = make_rl_models(policy, cfg)
    named = {"policy": models.policy, "reference": models.ref, **({"critic": models.critic} if models.critic else {})}
    optimizers = {"optimizer": models.optimizer,
                  **({"critic_optimizer": models.critic_optimizer} if models.critic_optimizer else {})}
    start = 0
    if point is not None:
        for name, model in named.items():
            checkpoint.restore_model(point, name, model)
        for name, optimizer in optimizers.items():
            checkpoint.restore_optimizer(point, name, optimizer)
        start = point.step
    table = model_table(models)
    print(f"models held in memory for {stage.upper()}:\n{format_model_table(table)}")
    if point is None:
        run.metrics.log(stage=stage, models=table, **baseline)

    def evaluate(step: int) -> None:
        t = time.perf_counter()
        result = evaluate_policy(policy, run.tok, held_out, cfg, step_generator(cfg.seed, "eval", step, run.device))
        shown = " | ".join(f"{k} {v:.3f}" for k, v in result.items())
        tqdm.write(f"{stage} step {step}: held-out {shown} on {len(held_out)} ({time.perf_counter() - t:.0f}s)")
        run.metrics.log(stage=stage, step=step, eval_n=len(held_out), **{f"eval_{k}": v for k, v in result.items()})

    save = lambda step, **kw: run.save(stage, step, named, optimizers, **kw)
    if point is None or point.evaluate:
        evaluate(start)  # the SFT model before any RL step, or the evaluation a kill interrupted
    if point is not None and point.done:
        return {"models": table, "memory": memory_record(run.device, baseline)}
    t0 = time.perf_counter()
    with StopRequest() as stop:
        bar = tqdm(range(start, cfg.rl_steps), desc=stage, initial=start, total=cfg.rl_steps, dynamic_ncols=True,
                   file=sys.stdout)
        for step in bar:
            if stop.requested:
                save(step, evaluate=False, done=False)
                raise Interrupted(f"{stage.upper()} step {step}")
            if cfg.rl_minutes and time.perf_counter() - t0 > 60 * cfg.rl_minutes:
                tqdm.write(f"rl_minutes={cfg.rl_minutes} reached after {step} of {cfg.rl_steps} steps")
                save(step, evaluate=True, done=True)
                evaluate(step)
                break
            try:
                record = rl_step(models, train, run, step)
            except NonFiniteError as e:
                raise NonFiniteError(f"{e} at {stage.upper()} step {step + 1}") from None
            run.metrics.log(**record)
            tqdm.write(step_line(record))
            if (step + 1) % cfg.rl_eval_every == 0 or step + 1 == cfg.rl_steps:
                save(step + 1, evaluate=True, done=step + 1 == cfg.rl_steps)  # save, then evaluate
                evaluate(step + 1)
    return {"models": table, "memory": memory_record(run.device, baseline)}


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load_start(cfg: TrainConfig, device: str):
    """(model, tokenizer) of --init_from, after checking it was trained on this run's task and split."""
    try:
        model, meta = load_checkpoint(cfg.init_from, device)
        tok = Tokenizer.from_file(os.path.join(cfg.init_from, "tokenizer.json"))
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: --init_from: {e}") from None
    except Exception as e:  # tokenizers raises its own exception type for a corrupt tokenizer.json
        raise SystemExit(f"error: --init_from {cfg.init_from}/tokenizer.json: not a readable tokenizer ({e})") from None
    trained = (meta or {}).get("train_config") or {}
    for name in ("task", "seed", "digits", "mul_digits", "min_ops", "max_ops", "n_test", "template", "gsm8k_dir"):
        if name in trained and trained[name] != getattr(cfg, name):
            raise SystemExit(f"error: --init_from {cfg.init_from} was trained with --{name} {trained[name]!r}, "
                             f"this run has {getattr(cfg, name)!r}: pass the same value, so that the held-out "
                             "split and the prompts are the ones it was trained for")
    return model, tok


def stage_evaluations(records: list[dict], stage: str) -> list[dict]:
    """The held-out evaluations of one stage in metrics records, as {metric: value} (the 'eval_' prefix dropped)."""
    return [{k[5:]: v for k, v in r.items() if k.startswith("eval_") and k != "eval_n"}
            for r in records if r.get("stage") == stage and "eval_pass_at_1" in r]


def print_table(before: dict, after: dict, n: int, label: str = "GRPO") -> None:
    print(f"\nheld-out results on {n} problems")
    print(f"| {'metric':<18} | {'SFT':>6} | {label:>6} | {'change':>7} |")
    print(f"|{'-' * 20}|{'-' * 8}|{'-' * 8}|{'-' * 9}|")
    for k in before:
        print(f"| {k:<18} | {before[k]:6.3f} | {after[k]:6.3f} | {after[k] - before[k]:+7.3f} |")


def resume_point(cfg: TrainConfig) -> checkpoint.ResumePoint | None:
    """The run's resume point if --resume is on and out_dir holds one, else None (then metrics.jsonl starts over).
    With --resume false an old resume point is deleted first: a kill before the new run's first checkpoint
    must not leave the old run's point behind, to be resumed against the new run's metrics."""
    if not cfg.resume:
        path = os.path.join(cfg.out_dir, checkpoint.RESUME_FILE)
        if os.path.exists(path):
            os.remove(path)
        return None
    return checkpoint.load(cfg.out_dir)


def plan_run(cfg: TrainConfig, tok, train, test, start_model=None) -> tuple[list, list]:
    """Fill in cfg.max_new_tokens and cfg.max_seq_len from the data (plan_lengths); (train prompts, worked
    solutions) as token ids. With --init_from the model's positions are fixed: its max_seq_len is the run's."""
    prompts, worked = tokenize(tok, train, cfg.template)
    longest_prompt = max(map(len, prompts + tokenize(tok, test, cfg.template)[0]))
    fixed = start_model.cfg.max_seq_len if start_model is not None else 0
    if fixed and cfg.max_seq_len not in (0, fixed):
        raise ValueError(f"--max_seq_len {cfg.max_seq_len}: --init_from {cfg.init_from} fixes it at {fixed}")
    new, seq = plan_lengths(longest_prompt, max(map(len, worked)), cfg.max_new_tokens, fixed or cfg.max_seq_len)
    if cfg.overlong_cache > new:
        raise ValueError(f"--overlong_cache {cfg.overlong_cache} must be <= --max_new_tokens {new} (L_cache is the "
                         "last part of the generation budget L_max)")
    cfg.max_new_tokens, cfg.max_seq_len = new, seq
    print(f"lengths: longest prompt {longest_prompt} tokens, longest worked solution {max(map(len, worked))}; "
          f"max_new_tokens {new}, max_seq_len {seq}")
    return prompts, worked


def main(argv=None) -> dict:
    """Run the pipeline; returns the final metrics record. Errors a user can fix end in one line (SystemExit)."""
    cfg = parse_config(argv)
    command = "python train.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    os.makedirs(cfg.out_dir, exist_ok=True)
    try:
        return pipeline(cfg, device)
    except Interrupted as e:
        print(f"\nstopped after {e}: the run is saved in {cfg.out_dir}; resume it with the same command:\n  {command}")
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        print(f"\nstopped at once: the last checkpoint in {cfg.out_dir} is kept; resume it with the same command:\n"
              f"  {command}")
        raise SystemExit(130) from None
    except NonFiniteError as e:
        raise SystemExit(f"error: {e}; nothing was updated with it. The last checkpoint in {cfg.out_dir} is "
                         "kept: a lower learning rate (--lr, --rl_lr) or --grad_clip may help") from None


def pipeline(cfg: TrainConfig, device: str) -> dict:
    """Data -> tokenizer -> lengths -> model -> SFT -> RL (or the final SFT evaluation) -> the final record."""
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)  # the model's initial weights
    # 1. problems, split into train and a held-out test set that shares no question with it
    try:
        train, test = load_problems(cfg)
        point = resume_point(cfg)
    except (FileNotFoundError, ValueError) as e:  # a malformed data file names its file and line
        raise SystemExit(f"error: {e}") from None
    print(f"{len(train)} training problems, {len(test)} held-out test problems ({cfg.task})")
    rss_before_policy = rss_mib()  # the runtime and the data, before any model exists
    # 2. the tokenizer: trained on the training corpus, every digit its own token (or the start's, or the run's)
    model = None
    if point is not None:
        tok = Tokenizer.from_str(point.tokenizer_json)
    elif cfg.init_from:
        model, tok = load_start(cfg, device)
    else:  # merges learnt from the first 20k problems: the corpus is repetitive, more adds nothing
        tok = tasks.train_tokenizer(tasks.corpus_texts(train[:20_000], cfg.template), cfg.vocab_size)
    # 3. sequence lengths from the data
    try:
        prompts, worked = plan_run(cfg, tok, train, test, model)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if point is not None:
        changed = checkpoint.config_differences(point.train_config, asdict(cfg))
        if changed:
            raise SystemExit(f"error: {cfg.out_dir} holds a run with another config ({'; '.join(changed)}): give the "
                             "same flags to resume it, another --out_dir, or --resume false to start it over")
        if point.finished:
            print(f"{cfg.out_dir}: this run has finished (its final record is in metrics.jsonl); nothing to do. "
                  "Give another --out_dir, or --resume false to run it again")
            return next(r for r in reversed(read_jsonl(os.path.join(cfg.out_dir, "metrics.jsonl")))
                        if r.get("stage") == "final")
        print(f"resuming {cfg.out_dir} from {point.stage} step {point.step}")
    print(json.dumps(asdict(cfg), indent=1))
    metrics = Metrics(os.path.join(cfg.out_dir, "metrics.jsonl"), point.metrics_bytes if point else 0)
    run = Run(cfg, tok, metrics, device)
    # 4. the model
    if point is not None:
        model = Transformer(ModelConfig.from_dict(point.model_config)).to(device)
        checkpoint.restore_model(point, "policy", model)
    elif model is None:
        model = Transformer(ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=cfg.n_layer, n_head=cfg.n_head,
                                        n_embd=cfg.n_embd, max_seq_len=cfg.max_seq_len)).to(device)
    print(f"model: {model.num_params():,} parameters, {model.cfg}; device {device}")
    # 5. stage 1: cold-start SFT (unless --init_from, or the run resumes in its RL stage)
    if not cfg.init_from and (point is None or point.stage == "sft"):
        examples = sft_examples(train, prompts, worked, tok, cfg.max_seq_len, cfg.sft_direct_frac, cfg.seed)
        sft(model, examples, test, run, point)
    if cfg.rl == "none":  # 6. the final held-out evaluation, on the whole test split
        acc = greedy_pass_at_1(model, tok, test, cfg.template, cfg.max_new_tokens)
        minutes = (time.perf_counter() - t_start) / 60
        metrics.log(stage="final", eval_pass_at_1=acc, eval_n=len(test), minutes=round(minutes, 2))
        checkpoint.mark_finished(cfg.out_dir, metrics.size())
        print(f"final held-out greedy pass@1: {acc:.3f} on {len(test)} problems | total {minutes:.1f} min")
        print(f"checkpoint: {os.path.join(cfg.out_dir, 'sft')} (model.safetensors and tokenizer.json)")
        return metrics.records()[-1]
    # 6. stage 2: GRPO (or PPO) from the SFT model, evaluated before and after
    rl = run_rl(model, train, test, run, point if point is not None and point.stage == cfg.rl else None)
    evals = stage_evaluations(metrics.records(), cfg.rl)
    before, after, memory = evals[0], evals[-1], rl["memory"]
    memory["rss_before_policy_mib"] = rss_before_policy  # then the increase counts the policy's weights too
    memory["rss_increase_with_policy_mib"] = round(memory["peak_rss_mib"] - rss_before_policy, 1)
    minutes = (time.perf_counter() - t_start) / 60
    n = min(cfg.rl_eval_n, len(test))
    metrics.log(stage="final", eval_n=n, sft=before, **{cfg.rl: after}, models=rl["models"], memory=memory,
                minutes=round(minutes, 2))
    checkpoint.mark_finished(cfg.out_dir, metrics.size())
    print_table(before, after, n, cfg.rl.upper())
    print(f"memory: RSS {memory['rss_before_mib']:.0f} MiB when the {cfg.rl.upper()} stage began, "
          f"{memory['peak_rss_mib']:.0f} MiB at its peak (+{memory['rss_increase_mib']:.0f} MiB"
          + ("" if memory["peak_rss_reset"] else "; the process's peak") + ")"
          + (f"; CUDA peak {memory['cuda_peak_allocated_mib']:.0f} MiB" if "cuda_peak_allocated_mib" in memory else ""))
    start = cfg.init_from or os.path.join(cfg.out_dir, "sft")
    print(f"total {minutes:.1f} min | checkpoints: {start} (SFT), {os.path.join(cfg.out_dir, cfg.rl)} "
          f"({cfg.rl.upper()})")
    return metrics.records()[-1]


if __name__ == "__main__":
    main()
