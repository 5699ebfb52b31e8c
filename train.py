"""Train a tiny reasoning model: problems -> tokenizer -> cold-start SFT -> GRPO (or PPO) -> evaluation.

    python train.py                   # SFT then GRPO on 3-digit arithmetic, a 0.84M-parameter model (~12 min, CPU)
    python train.py --preset sft      # SFT only, every target a worked solution
    python train.py --rl ppo --out_dir runs/ppo        # the same with PPO, the baseline GRPO improves on
    python train.py --preset r1       # R1's four stages on arithmetic and word problems, and a table of them
    python train.py --preset r1_zero  # R1-Zero: pretraining on plain text, then GRPO from that base
    python train.py --help            # every flag (config.py), with its help line

Read it top to bottom, the DeepSeek-R1 recipe (arXiv 2501.12948) in miniature:
  1. Data: generated problems (tasks.py), a BPE tokenizer trained on them, sequence lengths from the data.
  2. Stage 1, cold-start SFT (`sft.run_sft`): the worked solution in the R1 format, `<think> steps </think>
     <answer> N </answer>`, learnt by next-token prediction on the completion tokens. The model is trained
     from scratch, so this stage is also its pre-training. With --pipeline r1_zero (R1-Zero) it is replaced by
     pretraining on plain text with no template and no tags (pretrain.py), and RL starts from that base.
  3. Stage 2, reasoning RL (`run_rl`): DeepSeekMath's Algorithm 1 (arXiv 2402.03300), one step per
     `rl_step`: sample G completions per question -> rule rewards -> group-relative advantages -> log-probs
     of pi_old and pi_ref -> mu epochs of minibatch updates of the GRPO loss (`minibatch_updates`) -> log.
     `--rl ppo` swaps in the critic, GAE and PPO's loss (ppo.py); the loop is the same.
  4. Evaluation: held-out greedy pass@1, sampled pass@k and cons@k, before and after RL.
  5. With --pipeline r1, stage 3 (rejection.py): sample the RL model on training questions, keep the right,
     well-formed, readable completions, and SFT on them plus non-reasoning examples from the stage-1 start.
     Then stage 4 (`run_stage4`), RL for all scenarios: stage 2's RL on a mixture of tasks (--stage4_mix), with
     a learned reward model (reward_model.py) beside the rule rewards. A learned reward (--reward_rm) can also
     join the rule rewards in stage 2.
Every stage stops on step counts, so the same seed gives the same run; a checkpoint is written before each
evaluation, and running the same command again continues a stopped run (checkpoint.py).
Where this departs from the papers, or a choice the papers leave open, see docs/design.md.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass

import torch
from tokenizers import Tokenizer
from tqdm import tqdm

import checkpoint
import distributed
import grpo
import memory
import ppo
import pretrain
import pretrained
import rejection
import reward_model
import rollouts
import sft
import tasks
from checkpoint import Interrupted, Run, StopRequest, step_generator, step_rng
from config import TrainConfig, parse_config, stage1_folder
from model import Critic, ModelConfig, Transformer, load_checkpoint
from optim import NonFiniteError, autocast, check_finite, clip_and_step, make_optimizer, rl_lr_scale, set_lr
from sample import evaluate, greedy_pass_at_1, rebuild_splits


# ---------------------------------------------------------------------------------------------
# 1. Data: problems -> token ids -> sequence lengths
# ---------------------------------------------------------------------------------------------
def load_problems(cfg: TrainConfig) -> tuple[list[tasks.Problem], list[tasks.Problem]]:
    """(train, test): generated, or GSM8K's files; no test question is in train. With --recheck_frac, that share
    of the training solutions catch a slip (tasks.with_rechecks); the answers, and the test split, are unchanged.
    Built by sample.rebuild_splits, the one place splits are made, so a checkpoint's splits rebuild exactly."""
    return rebuild_splits(asdict(cfg), cfg.n_train)


def plan_lengths(longest_prompt: int, longest_solution: int, max_new_tokens: int = 0,
                 max_seq_len: int = 0) -> tuple[int, int]:
    """(max_new_tokens, max_seq_len) of a run, from its data (design: Sequence lengths from the data).

        max_new_tokens = 16 * ceil(1.25 * longest_solution / 16)                    when 0 (auto)
        max_seq_len    = longest_prompt + max(max_new_tokens, longest_solution)     when 0 (auto)

    A max_seq_len given by hand that cannot hold the longest prompt plus the generation budget is a ValueError
    naming the numbers and the flags.
    (20, 70) -> (96, 116);   (20, 70, 48) -> (48, 90);   (349, 70, 96, 160) -> ValueError (349 + 96 > 160)
    """
    new = max_new_tokens or 16 * math.ceil(1.25 * longest_solution / 16)
    need = longest_prompt + new
    if max_seq_len and max_seq_len < need:
        raise ValueError(f"--max_seq_len {max_seq_len} cannot hold the longest prompt ({longest_prompt} tokens) plus "
                         f"--max_new_tokens {new} = {need}: raise --max_seq_len to at least {need}, or give 0 to size "
                         "it from the data")
    return new, max_seq_len or longest_prompt + max(new, longest_solution)


def plan_run(cfg: TrainConfig, tok, train, test, positions: int = 0) -> tuple[list, list]:
    """Fill in cfg.max_new_tokens and cfg.max_seq_len from the data (plan_lengths); (train prompts, worked
    solutions) as token ids. With --init_from the model's positions are fixed (`positions`, its max_seq_len, also
    when a run from it resumes): they are the run's. A template whose special tokens the tokenizer lacks is
    refused (tasks.check_template)."""
    tasks.check_template(tok, cfg.template)
    prompts, worked = tasks.tokenize_problems(tok, train, cfg.template)
    longest_prompt = max(map(len, prompts + tasks.tokenize_problems(tok, test, cfg.template)[0]))
    fixed = positions
    if fixed and cfg.max_seq_len not in (0, fixed):
        raise ValueError(f"--max_seq_len {cfg.max_seq_len}: --init_from {cfg.init_from} fixes it at {fixed}")
    try:
        new, seq = plan_lengths(longest_prompt, max(map(len, worked)), cfg.max_new_tokens, fixed or cfg.max_seq_len)
    except ValueError:
        if not pretrained.is_huggingface_folder(cfg.init_from):
            raise
        new = plan_lengths(longest_prompt, max(map(len, worked)), cfg.max_new_tokens)[0]
        raise ValueError(f"--init_from {cfg.init_from} is loaded with {fixed} positions, fewer than the longest prompt "
                         f"({longest_prompt} tokens) plus --max_new_tokens {new}: give --max_seq_len "
                         f"{longest_prompt + new} or more (up to its config.json's max_position_embeddings), or a "
                         "smaller --max_new_tokens") from None
    if cfg.overlong_cache > new:
        raise ValueError(f"--overlong_cache {cfg.overlong_cache} must be <= --max_new_tokens {new} (L_cache is the "
                         "last part of the generation budget L_max)")
    cfg.max_new_tokens, cfg.max_seq_len = new, seq
    print(f"lengths: longest prompt {longest_prompt} tokens, longest worked solution {max(map(len, worked))}; "
          f"max_new_tokens {new}, max_seq_len {seq}")
    return prompts, worked


# ---------------------------------------------------------------------------------------------
# 2. Stage 2: RL, DeepSeekMath Algorithm 1 (GRPO; PPO with --rl ppo)
# ---------------------------------------------------------------------------------------------
@dataclass
class RLModels:
    """The policy pi_theta and its AdamW, the frozen reference pi_ref, and with PPO the critic V_psi and its
    AdamW. The reward is rule-based (rewards.py), so it is no model."""
    policy: Transformer
    ref: Transformer
    optimizer: torch.optim.Optimizer
    critic: Critic | None = None
    critic_optimizer: torch.optim.Optimizer | None = None
    reward_model: Critic | None = None  # with --reward_rm: a learned reward r_phi, frozen (reward_model.py)


def make_rl_models(policy, cfg: TrainConfig) -> RLModels:
    """pi_ref starts as a frozen copy of the policy (the SFT model); PPO's critic as a copy of its weights with
    a zero value head (design: The critic)."""
    ref = copy.deepcopy(policy).requires_grad_(False).eval()
    models = RLModels(policy, ref, make_optimizer(policy, cfg.rl_lr, cfg.weight_decay))
    if cfg.rl == "ppo":
        models.critic = Critic.from_policy(policy).train()
        models.critic_optimizer = make_optimizer(models.critic, cfg.critic_lr, cfg.weight_decay)
    if cfg.reward_rm:
        models.reward_model = reward_model.load(cfg.reward_model, policy)
    return models


def reset_reference(step: int, cfg: TrainConfig) -> bool:
    """Whether pi_ref <- pi_theta before RL step `step` (0-based): at the start of each of the `iterations`
    outer iterations of Algorithm 1, and every ref_reset_every steps if set (R1: every 400 steps)."""
    # BEGIN SOLUTION algorithm-1: never at step 0; at multiples of ceil(rl_steps / iterations), or of ref_reset_every
    steps_per_iteration = math.ceil(cfg.rl_steps / cfg.iterations)
    return step > 0 and (step % steps_per_iteration == 0 or bool(cfg.ref_reset_every)
                         and step % cfg.ref_reset_every == 0)
    # END SOLUTION algorithm-1


def rl_step(models: RLModels, train, run: Run, step: int, stage: str | None = None) -> dict:
    """One step of DeepSeekMath's Algorithm 1 (0-based `step`) of the RL stage `stage` (default: stage 2, named
    after the algorithm); its metrics record. `train`: the training problems, or a tasks.Mixture of them."""
    cfg, device, t_step, timer = run.cfg, run.device, time.perf_counter(), {}
    stage = stage or cfg.rl
    stream = "rl" if stage == cfg.rl else stage  # the random draws of this stage's steps
    if reset_reference(step, cfg):  # 1. an outer iteration starts: pi_ref <- pi_theta
        # BEGIN SOLUTION algorithm-1: copy the policy's weights into the reference model
        models.ref.load_state_dict(models.policy.state_dict())
        # END SOLUTION algorithm-1
    lr = cfg.rl_lr * rl_lr_scale(step, cfg.rl_warmup_steps)
    set_lr(models.optimizer, lr)
    if models.critic_optimizer is not None:
        set_lr(models.critic_optimizer, cfg.critic_lr * rl_lr_scale(step, cfg.rl_warmup_steps))
    rng, generator = step_rng(cfg.seed, stream, step), step_generator(cfg.seed, stream, step, device)
    shards = cfg.rollout_shards or distributed.world()  # under torchrun each process samples its shard of the groups
    mine = range(shards) if distributed.world() == 1 else [distributed.rank()]
    shard_generators = {s: step_generator(cfg.seed, f"{stream}-shard{s}", step, device) for s in mine} \
        if shards > 1 else None
    # 2-3. B questions, G completions each from pi_old = pi_theta, and their rule-based rewards r_i
    roll, first = rollouts.collect_rollouts(models.policy, run.tok, train, cfg, rng, generator, timer,
                                            models.reward_model, shards, shard_generators)
    # 4-6. advantages, log pi_old and log pi_ref, mu epochs of minibatch updates (none if the batch is empty)
    update = rl_update(models, roll, run.tok, cfg, device, generator) if roll.rewards.numel() else {}
    seen = rollouts.gather_rollouts(first)  # the log covers the whole step: every process's groups
    used = roll if roll is not first else seen
    return dict(stage=stage, step=step + 1, lr=lr, **rollouts.rollout_stats(seen, used, cfg.std_ddof),  # the log
                rollout_s=round(timer["rollout"], 3), reward_s=round(timer["reward"], 3),
                step_s=round(time.perf_counter() - t_step, 3),
                rollout_tok_s=round(timer["tokens"] / max(timer["rollout"], 1e-9)), **update)


def rl_update(models: RLModels, roll: rollouts.Rollouts, tok, cfg: TrainConfig, device: str, generator) -> dict:
    """Steps 4-6 of an RL step (README, "The algorithm"), the only part where GRPO and PPO differ."""
    if cfg.rl == "ppo":  # a critic and GAE; the KL penalty is in the reward
        return ppo_update(models, roll, cfg, device, generator)
    t = time.perf_counter()
    adv = rollouts.advantages(roll, tok, cfg)  # 4. A_i = (r_i - mean(r)) / std(r) in its group, on every token
    check_finite("advantages", adv)
    adv_s = round(time.perf_counter() - t, 3)
    return {**grpo_update(models, roll, adv, cfg, device, generator), "adv_s": adv_s}


def grpo_update(models: RLModels, roll: rollouts.Rollouts, adv: torch.Tensor, cfg: TrainConfig, device: str,
                generator) -> dict:
    """5. log pi_old and log pi_ref of the rollout, without gradient; 6. mu epochs of minibatch updates of the
    GRPO loss, -J_GRPO (DeepSeekMath Eq. 3: the clipped surrogate minus beta k3, averaged per completion).
    With one update per rollout (mu = 1, one minibatch: DeepSeekMath's setting) pi_old is the policy itself,
    so its log-probs are the policy's own, detached: the ratio is exactly 1 and a forward pass is saved."""
    single = cfg.mu == 1 and cfg.minibatches == 1
    batch = rollouts.rollout_batch(models.policy, models.ref, roll, cfg, device, need_old=not single)
    adv = adv.to(device)
    ref_logp = lambda rows: None if batch.ref_logp is None else batch.ref_logp[rows]
    loss = lambda logp, old, rows: grpo.grpo_loss(logp, old, ref_logp(rows), adv[rows], batch.loss_mask[rows],
                                                  cfg.kl_coef, cfg.clip_eps_low, cfg.clip_eps_high, cfg.agg,
                                                  cfg.max_new_tokens)
    return {**minibatch_updates(models, batch, loss, cfg, generator), "logprob_s": round(batch.logprob_s, 3)}


def ppo_update(models: RLModels, roll: rollouts.Rollouts, cfg: TrainConfig, device: str, generator) -> dict:
    """PPO's steps 4-6 (DeepSeekMath Eqs. 1-2): log pi_old and log pi_ref first, since the reward holds the
    KL penalty; then the critic's values, the per-token rewards, GAE (ppo.advantages); then the same loop as
    GRPO's on -J_PPO (Eq. 1), each policy step followed by one of the critic on its value loss."""
    batch = rollouts.rollout_batch(models.policy, models.ref, roll, cfg, device, need_old=True)
    adv, value_loss, stats = ppo.advantages(models.critic, batch, roll.rewards, cfg)
    loss = lambda logp, old, rows: grpo.ppo_loss(logp, old, adv[rows], batch.loss_mask[rows], cfg.clip_eps_low,
                                                 cfg.clip_eps_high, cfg.agg, cfg.max_new_tokens)
    out = minibatch_updates(models, batch, loss, cfg, generator, value_loss)
    return {**out, **stats, "logprob_s": round(batch.logprob_s, 3),
            "critic_s": round(out["critic_s"] + stats["critic_s"], 3)}  # its values at rollout time and its updates


def minibatch_updates(models: RLModels, batch: rollouts.Batch, policy_loss, cfg: TrainConfig, generator,
                      critic_loss=None) -> dict:
    """mu epochs over the rollout's rows in `minibatches` random minibatches; on each, one AdamW step of the
    policy on policy_loss(logp, old_logp, rows) -> (loss, stats), its gradient accumulated over micro-batches
    of at most micro_batch rows (each loss scaled by its share of the minibatch's, so the sum is exact), then
    with PPO one step of the critic (ppo.critic_step). The mean statistics of the updates and their seconds."""
    device, logs, seconds = batch.ids.device.type, [], {"update_s": 0.0, "critic_s": 0.0}
    for _ in range(cfg.mu):  # for GRPO iteration = 1, ..., mu
        for rows in rollouts.minibatches(batch.ids.size(0), cfg.minibatches, generator):
            rows, t = rows.to(batch.ids.device), time.perf_counter()
            models.optimizer.zero_grad(set_to_none=True)
            parts, total, entropy = [], 0.0, 0.0
            # under torchrun the minibatch is every process's `rows`: w_k is taken over all of them
            whole = distributed.sum_all(grpo.aggregate_count(batch.loss_mask[rows], cfg.agg))
            for part in rollouts.micro_batches(rows, cfg.micro_batch):
                weight = grpo.aggregate_count(batch.loss_mask[part], cfg.agg) / whole if whole else 0.0
                with autocast(device):
                    logp = batch.logprobs(models.policy, part, cfg.temperature)  # log pi_theta, with gradient
                    # BEGIN SOLUTION algorithm-1: log pi_old of these rows: frozen at rollout time, if it was stored
                    old = logp.detach() if batch.old_logp is None else batch.old_logp[part]  # log pi_old
                    # END SOLUTION algorithm-1
                    entropy += grpo.masked_sum(-old.double(), batch.mask[part]).item()  # (design: Entropy)
                    loss, stats = policy_loss(logp, old, part)
                check_finite("loss", loss)
                (weight * loss).backward()
                total += weight * loss.item()
                parts.append((weight, stats))
            distributed.all_reduce_grads(models.policy)  # the minibatch's gradient: the sum of every process's
            parts = [p for ps in distributed.gather_objects(parts) for p in ps]
            tokens = distributed.sum_all(int(batch.mask[rows].sum()))
            stats = {**rollouts.combine_stats(parts), "grad_norm": clip_and_step(models.policy, models.optimizer,
                                                                                 cfg.grad_clip),
                     "loss": distributed.sum_all(total), "entropy": distributed.sum_all(entropy) / max(tokens, 1)}
            seconds["update_s"] += time.perf_counter() - t
            if critic_loss is not None:  # PPO: then one step of the critic on the same minibatch
                t = time.perf_counter()
                stats["value_loss"], stats["critic_grad_norm"] = ppo.critic_step(models, batch, rows, critic_loss, cfg)
                seconds["critic_s"] += time.perf_counter() - t
            logs.append(stats)
    if critic_loss is None:
        del seconds["critic_s"]  # GRPO has no critic
    return {**rollouts.mean_stats(logs), **{k: round(v, 3) for k, v in seconds.items()}}


def run_rl(policy, train, test, run: Run, point: checkpoint.ResumePoint | None = None, stage: str | None = None,
           evaluate_first: bool = True) -> dict:
    """An RL stage, GRPO or PPO: rl_steps of `rl_step` on questions drawn by --rl_mix; every rl_eval_every steps
    (and before the first, if evaluate_first) a checkpoint, then greedy pass@1, pass@k and cons@k on held-out
    problems. With a resume point of this stage (the policy's weights already loaded), the other models and the
    optimizers are restored and it continues. `stage` names the stage's checkpoints and records (default: the
    algorithm, stage 2). Returns "models" (memory.model_table) and "memory" (memory.record)."""
    cfg, stage = run.cfg, stage or run.cfg.rl
    held_out, before = test[:cfg.rl_eval_n], memory.baseline(run.device)
    questions = tasks.Mixture(train, tasks.parse_mix(cfg.rl_mix))
    models = make_rl_models(policy, cfg)
    named = {"policy": models.policy, "reference": models.ref, **({"critic": models.critic} if models.critic else {})}
    optimizers = {"optimizer": models.optimizer,
                  **({"critic_optimizer": models.critic_optimizer} if models.critic_optimizer else {})}
    for name, model in (named.items() if point is not None else ()):
        checkpoint.restore_model(point, name, model)
    for name, optimizer in (optimizers.items() if point is not None else ()):
        checkpoint.restore_optimizer(point, name, optimizer)
    start, table = point.step if point is not None else 0, memory.model_table(models)
    print(f"models held in memory for {stage.upper()}:\n{memory.format_model_table(table)}")
    if point is None:
        run.metrics.log(stage=stage, models=table, **before)
    save = lambda step, **kw: run.save(stage, step, named, optimizers, **kw)
    if point is None and evaluate_first or point is not None and point.evaluate:  # the model before any RL step,
        evaluate_rl(policy, held_out, run, start, stage)  # or the evaluation a kill interrupted
    if point is not None and point.done:
        return {"models": table, "memory": memory.record(run.device, before)}
    with StopRequest() as stop:
        t0 = time.perf_counter()
        for step in tqdm(range(start, cfg.rl_steps), desc=stage,
                         initial=start, total=cfg.rl_steps, dynamic_ncols=True, file=sys.stdout):
            if distributed.any_rank(stop.requested):  # every process stops after the same step
                save(step, evaluate=False, done=False)
                raise Interrupted(f"{stage.upper()} step {step}")
            if cfg.rl_minutes and time.perf_counter() - t0 > 60 * cfg.rl_minutes:
                tqdm.write(f"rl_minutes={cfg.rl_minutes} reached after {step} of {cfg.rl_steps} steps")
                save(step, evaluate=True, done=True)
                evaluate_rl(policy, held_out, run, step, stage)
                break
            try:
                record = rl_step(models, questions, run, step, stage)
            except NonFiniteError as e:
                raise NonFiniteError(f"{e} at {stage.upper()} step {step + 1}") from None
            run.metrics.log(**record)
            tqdm.write(checkpoint.step_line(record))
            if (step + 1) % cfg.rl_eval_every == 0 or step + 1 == cfg.rl_steps:
                save(step + 1, evaluate=True, done=step + 1 == cfg.rl_steps)  # save, then evaluate
                evaluate_rl(policy, held_out, run, step + 1, stage)
    return {"models": table, "memory": memory.record(run.device, before)}


def evaluate_rl(policy, held_out, run: Run, step: int, stage: str | None = None) -> None:
    """Held-out greedy pass@1, shows-work, and with pass_k > 1 sampled pass@k and cons@k (and the mean length in
    the R1 pipeline): a line and a record of `stage` (default: the RL stage)."""
    cfg, t, stage = run.cfg, time.perf_counter(), stage or run.cfg.rl
    result = evaluate(policy, run.tok, held_out, cfg.template, cfg.max_new_tokens, cfg.pass_k, cfg.eval_temperature,
                      cfg.eval_top_p, step_generator(cfg.seed, "eval", step, run.device), cfg.forward_chunk or 256,
                      length=cfg.pipeline == "r1")
    shown = " | ".join(f"{k} {v:.3f}" for k, v in result.items())
    tqdm.write(f"{stage} step {step}: held-out {shown} on {len(held_out)} ({time.perf_counter() - t:.0f}s)")
    run.metrics.log(stage=stage, step=step, eval_n=len(held_out), **{f"eval_{k}": v for k, v in result.items()})


# ---------------------------------------------------------------------------------------------
# 3. The pipeline
# ---------------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    """Run the pipeline; returns the final metrics record. Errors a user can fix end in one line (SystemExit)."""
    cfg = parse_config(argv)
    command = "python train.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = "cuda" if cfg.device == "auto" and torch.cuda.is_available() else cfg.device.replace("auto", "cpu")
    device = distributed.setup(device)  # under torchrun: join the other processes (distributed.py)
    os.makedirs(cfg.out_dir, exist_ok=True)
    result = checkpoint.run_to_the_end(lambda: pipeline(cfg, device), cfg.out_dir, command,
                                       ": a lower learning rate (--lr, --rl_lr) or --grad_clip may help")
    distributed.teardown()
    return result


def pipeline(cfg: TrainConfig, device: str) -> dict:
    """Data -> tokenizer -> lengths -> model -> SFT -> RL (or the final SFT evaluation) -> in the R1 pipeline,
    stages 3 and 4 -> the final record."""
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)  # the model's initial weights
    try:
        train, test = load_problems(cfg)  # no test question is in train
        point = checkpoint.resume_point(cfg.out_dir, cfg.resume)
    except (FileNotFoundError, ValueError) as e:  # a malformed data file names its file and line
        raise SystemExit(f"error: {e}") from None
    print(f"{len(train)} training problems, {len(test)} held-out test problems ({cfg.task})")
    rss_before_policy = memory.rss_mib()  # the runtime and the data, before any model exists
    model, tok = checkpoint.load_start(cfg, device) if cfg.init_from and point is None else (None, None)
    if point is not None:
        tok = Tokenizer.from_str(point.tokenizer_json)
    elif tok is None:
        tok = tasks.run_tokenizer(train, cfg.template, cfg.vocab_size) if distributed.is_main() else None
        if distributed.world() > 1:  # under torchrun rank 0's tokenizer, the same on every process
            tok = Tokenizer.from_str(distributed.broadcast(tok.to_str() if tok is not None else None))
    # the positions of the model RL starts from (--init_from, or the run from it being resumed) are the run's
    positions = model.cfg.max_seq_len if model is not None else \
        point.model_config["max_seq_len"] if point is not None and cfg.init_from else 0
    try:
        prompts, worked = plan_run(cfg, tok, train, test, positions)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if point is not None and checkpoint.check_resume(point, asdict(cfg), asdict(TrainConfig())):
        records = checkpoint.read_jsonl(os.path.join(cfg.out_dir, "metrics.jsonl"))
        return next(r for r in reversed(records) if r.get("stage") == "final")
    print(json.dumps(asdict(cfg), indent=1))
    run = Run(cfg, tok, checkpoint.Metrics(os.path.join(cfg.out_dir, "metrics.jsonl"),
                                           point.metrics_bytes if point else 0), device)
    if point is not None:
        model = Transformer(ModelConfig.from_dict(point.model_config)).to(device)
        checkpoint.restore_model(point, "policy", model)
    elif model is None:
        model = Transformer(ModelConfig(vocab_size=tok.get_vocab_size(), n_layer=cfg.n_layer, n_head=cfg.n_head,
                                        n_embd=cfg.n_embd, max_seq_len=cfg.max_seq_len)).to(device)
    print(f"model: {model.num_params():,} parameters, {model.cfg}; device {device}")
    first = stage1_name(cfg)  # stage 1: R1-Zero's base, or the cold start
    if not cfg.init_from and (point is None or point.stage == first):
        if first == PRETRAIN:  # next-token prediction on plain text: no template, no tags (pretrain.py)
            docs = pretrain.pretrain_documents(train, cfg.seed, cfg.pretrain_format_frac)
            sft.run_sft(model, pretrain.pretrain_examples(docs, tok, cfg.max_seq_len), test, run, point, PRETRAIN)
        else:  # cold-start SFT on the worked solutions in the R1 format
            sft.run_sft(model, sft.cold_start_examples(train, prompts, worked, tok, cfg), test, run, point)
        stage_end(run, first, t_start)
    if cfg.rl == "none":  # the final held-out evaluation, on the whole test split
        acc = greedy_pass_at_1(model, tok, test, cfg.template, cfg.max_new_tokens)
        minutes = round((time.perf_counter() - t_start) / 60, 2)
        run.metrics.log(stage="final", eval_pass_at_1=acc, eval_n=len(test), minutes=minutes)
        checkpoint.mark_finished(cfg.out_dir, run.metrics.size())
        print(f"final held-out greedy pass@1: {acc:.3f} on {len(test)} problems | total {minutes:.1f} min")
        print(f"checkpoint: {os.path.join(cfg.out_dir, 'sft')} (model.safetensors and tokenizer.json)")
        return run.metrics.records()[-1] if distributed.is_main() else {}
    resuming = point.stage if point is not None else None
    if resuming in (None, first, cfg.rl):  # stage 2: reasoning RL
        rl = run_rl(model, train, test, run, point if resuming == cfg.rl else None)
        stage_end(run, cfg.rl, t_start)
    if cfg.pipeline == "r1":
        if resuming != STAGE4:  # stage 3: rejection sampling -> SFT
            start = stage3_start(model, cfg, device) if resuming != "rs_sft" else model
            model = rejection.run_rejection_sft(run, model, train, test, point if resuming == "rs_sft" else None, start)
            evaluate_rl(model, test[:cfg.rl_eval_n], run, cfg.rs_sft_steps, "rs_sft")
            stage_end(run, "rs_sft", t_start)
        if cfg.stage4_steps:  # stage 4: RL for all scenarios
            run_stage4(model, train, test, run, point if resuming == STAGE4 else None)
            stage_end(run, STAGE4, t_start)
        return r1_report(run, min(cfg.rl_eval_n, len(test)), t_start)
    return final_report(run, rl, min(cfg.rl_eval_n, len(test)), rss_before_policy, t_start)


def stage3_start(policy: Transformer, cfg: TrainConfig, device: str) -> Transformer:
    """The model stage 3's SFT starts from (--rs_init): 'base', the starting point of stage 1 (R1 fine-tunes
    DeepSeek-V3-Base again; here the same seeded initial weights); 'sft', the stage-1 model (stage1_folder:
    out_dir/sft, or with --init_from that run's); 'rl', a copy of the stage-2 policy."""
    if cfg.rs_init == "rl":
        return copy.deepcopy(policy)
    if cfg.rs_init == "sft":
        return load_checkpoint(stage1_folder(cfg), device)[0]
    torch.manual_seed(cfg.seed)  # as at the start of the pipeline, before stage 1's model was built
    return Transformer(policy.cfg).to(device)


STAGE4 = "rl_all"  # the name of stage 4's checkpoints and records
PRETRAIN = "pretrain"  # the name of R1-Zero's stage 1: the base model's checkpoints and records


def stage1_name(cfg: TrainConfig) -> str:
    """The name of stage 1's checkpoints and records: 'pretrain' in R1-Zero (--pipeline r1_zero), else 'sft'."""
    return PRETRAIN if cfg.pipeline == "r1_zero" else "sft"


def stage4_config(cfg: TrainConfig) -> TrainConfig:
    """Stage 4 is stage 2's RL with these settings in place: its own steps, the --stage4_mix of tasks, the learned
    reward out_dir/reward_model at weight --stage4_rm beside the rule rewards, and --stage4_language."""
    return dataclasses.replace(cfg, rl_steps=cfg.stage4_steps, rl_mix=cfg.stage4_mix, reward_rm=cfg.stage4_rm,
                               reward_model=os.path.join(cfg.out_dir, "reward_model") if cfg.stage4_rm else "",
                               reward_language=cfg.stage4_language)


def run_stage4(policy, train, test, run: Run, point: checkpoint.ResumePoint | None = None) -> None:
    """Stage 4, RL for all scenarios (DeepSeek-R1 §2.3.4): the RL of stage 2 (`run_rl`) on the stage-3 model, its
    questions drawn from a mixture of tasks, rewarded by the rule rewards plus a learned reward for a second goal
    (R1: human preferences; here conciseness, format and one language). The reward model starts from the stage-3
    model and learns from preference pairs of the mixture's training questions (reward_model.build); it is
    written before stage 4's first checkpoint, so a resumed stage 4 reads it back. The reference pi_ref is the
    stage-3 model; no evaluation before the first step (stage 3's last one is of the same model)."""
    cfg = stage4_config(run.cfg)
    if cfg.reward_rm and point is None:
        problems = tasks.Mixture(train, tasks.parse_mix(cfg.rl_mix)).draw(random.Random(f"{cfg.seed}-rm"),
                                                                          min(cfg.rm_pairs, len(train)))
        try:
            stats = reward_model.build(policy, run.tok, problems, cfg.reward_model, asdict(run.cfg),
                                       n_test=max(cfg.rm_pairs // 10, 1), steps=cfg.rm_steps, seed=cfg.seed)
        except ValueError as e:
            raise SystemExit(f"error: stage 4's reward model: {e}; raise --rm_pairs, or --stage4_rm 0 for the "
                             "rules alone") from None
        run.metrics.log(stage="reward_model", **stats)
    run_rl(policy, train, test, dataclasses.replace(run, cfg=cfg, run_config=asdict(run.cfg)), point, STAGE4,
           evaluate_first=False)


def stage_end(run: Run, stage: str, t_start: float) -> None:
    """In the R1 pipeline, a record of the minutes since the run started (in this process: a resumed run counts
    from its resume), for the stage table."""
    if run.cfg.pipeline == "r1":
        run.metrics.log(stage="stage_end", of=stage, minutes=round((time.perf_counter() - t_start) / 60, 2))


def r1_report(run: Run, n: int, t_start: float) -> dict:
    """The R1 pipeline's table: each stage's model on the same held-out problems (greedy pass@1, pass@k, cons@k,
    shows-work, mean length) and the minutes at its end; the final record (returned)."""
    cfg, records = run.cfg, run.metrics.records()
    rl_evals = checkpoint.stage_evaluations(records, cfg.rl)
    rows = {**({"sft": rl_evals[0]} if cfg.rl_steps else {}),  # --rl_steps 0: the --init_from model is stage 2's
            cfg.rl: rl_evals[-1], "rs_sft": checkpoint.stage_evaluations(records, "rs_sft")[-1],
            **({STAGE4: checkpoint.stage_evaluations(records, STAGE4)[-1]} if cfg.stage4_steps else {})}
    ends = {r["of"]: r["minutes"] for r in records if r.get("stage") == "stage_end"}
    minutes = round((time.perf_counter() - t_start) / 60, 2)
    run.metrics.log(stage="final", pipeline="r1", eval_n=n, stages=rows,
                    stage_minutes=ends, minutes=minutes)
    checkpoint.mark_finished(cfg.out_dir, run.metrics.size())
    keys = list(rows["rs_sft"])
    print(f"\nthe R1 pipeline, held-out on {n} problems (minutes: since the start, at the end of each stage)")
    print("| stage | " + " | ".join(keys) + " | minutes |")
    print("|---|" + "---|" * (len(keys) + 1))
    names = {"sft": "1. cold-start SFT", cfg.rl: f"2. reasoning RL ({cfg.rl.upper()})" if cfg.rl_steps else
             f"2. --init_from {cfg.init_from} (no RL steps here)",
             "rs_sft": "3. rejection sampling -> SFT", STAGE4: f"4. RL for all scenarios ({cfg.rl.upper()})"}
    cell = lambda k, v: f"{v:.1f}" if k == "length" else f"{v:.3f}"
    for stage, row in rows.items():
        end = ends.get(stage)
        print(f"| {names[stage]} | " + " | ".join(cell(k, row[k]) for k in keys)
              + f" | {'' if end is None else f'{end:.1f}'} |")
    return run.metrics.records()[-1]


def final_report(run: Run, rl: dict, n: int, rss_before_policy: float, t_start: float) -> dict:
    """The table of the n held-out problems before and after RL, the memory, the final record (returned; under
    torchrun rank 0 reports, the other ranks return {})."""
    cfg = run.cfg
    if not distributed.is_main():
        return {}
    evals = checkpoint.stage_evaluations(run.metrics.records(), cfg.rl)
    before, after, mem = evals[0], evals[-1], rl["memory"]
    mem["rss_before_policy_mib"] = rss_before_policy  # then the increase counts the policy's weights too
    mem["rss_increase_with_policy_mib"] = round(mem["peak_rss_mib"] - rss_before_policy, 1)
    minutes, label = (time.perf_counter() - t_start) / 60, cfg.rl
    first = stage1_name(cfg)  # the model RL started from: R1-Zero's base, or SFT's
    run.metrics.log(stage="final", eval_n=n, **{first: before, label: after}, models=rl["models"], memory=mem,
                    minutes=round(minutes, 2))
    checkpoint.mark_finished(cfg.out_dir, run.metrics.size())
    name = "BASE" if first == PRETRAIN else "SFT"
    print(f"\nheld-out results on {n} problems\n| {'metric':<18} | {name:>6} | {label.upper():>6} | {'change':>7} |")
    print(f"|{'-' * 20}|{'-' * 8}|{'-' * 8}|{'-' * 9}|")
    for k in before:
        print(f"| {k:<18} | {before[k]:6.3f} | {after[k]:6.3f} | {after[k] - before[k]:+7.3f} |")
    print(f"memory: RSS {mem['rss_before_mib']:.0f} MiB when the {label.upper()} stage began, {mem['peak_rss_mib']:.0f} "
          f"MiB at its peak (+{mem['rss_increase_mib']:.0f} MiB" + ("" if mem["peak_rss_reset"] else "; the process's peak")
          + ")" + (f"; CUDA peak {mem['cuda_peak_allocated_mib']:.0f} MiB" if "cuda_peak_allocated_mib" in mem else ""))
    start = cfg.init_from or os.path.join(cfg.out_dir, first)
    print(f"total {minutes:.1f} min | checkpoints: {start} ({name}), {os.path.join(cfg.out_dir, label)} "
          f"({label.upper()})")
    return run.metrics.records()[-1]


if __name__ == "__main__":
    main()
