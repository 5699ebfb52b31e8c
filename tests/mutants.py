"""Break the training loop one line at a time and check that the test suite notices: `python tests/mutants.py`.

Each mutant is one small edit of the training code (train.py and the modules it calls: sft.py, rollouts.py,
ppo.py, optim.py, checkpoint.py, sample.py, model.py) that changes what a run learns: a flag not passed on,
the wrong tensor, a step skipped. For each, the repository is copied to a temporary folder, the
edit applied, and the loop's fast test files run there (`-x`: the first failure is enough). A mutant that no
test kills is a hole in the tests: the script prints MISSED and exits 1. So does a mutant whose code is no
longer found (the code moved: update its line here). Not part of `python -m pytest` (about 16 minutes on 2
cores); run it after changing the loop or its tests.

    python tests/mutants.py                       # every mutant against the default test files
    python tests/mutants.py "ppo:" tests/test_updates.py   # the mutants whose name starts "ppo:", one file
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = ["tests/test_updates.py", "tests/test_train_loop.py", "tests/test_train_grpo.py", "tests/test_ppo.py",
         "tests/test_rollouts.py", "tests/test_train.py", "tests/test_model.py"]
T, S, R, P, O, C, E, M = "train.py", "sft.py", "rollouts.py", "ppo.py", "optim.py", "checkpoint.py", "sample.py", "model.py"
J, K, F4 = "rejection.py", "tasks.py", "tests/test_stage4.py"
D, FD = "distill.py", "tests/test_distill.py"
CC, FC = "compute.py", "tests/test_compute.py"
Z, FZ = "pretrain.py", "tests/test_pretrain.py"
FA = "tests/test_recheck.py"
I, FI = "inference.py", "tests/test_inference.py"
V, FV = "verifier.py", "tests/test_verifier.py"
G = "grpo.py"
FP = "tests/test_distributed.py"
FS = "tests/test_speed.py"

# (name, file, the code as it is, the code broken[, the test files that must kill it, if not TESTS])
MUTANTS = [
 # the faster step (--prompt_once, AdamW foreach)
 ("speed: prompt_once not given to the log-prob passes", R, "                  prompt_once=cfg.prompt_once)", "                  )", [FS]),
 ("speed: prompt_once not given to the sampler", R, "max_batch=cfg.forward_chunk or None, prompt_once=cfg.prompt_once)", "max_batch=cfg.forward_chunk or None)", [FS]),
 ("speed: a prompt's keys given to the wrong rows", M, "    cache.select(row_of)", "    cache.select(first[row_of])", [FS]),
 ("speed: a prefilled prompt given to the wrong rows", M, "        cache = cache.select(row_of)", "        cache = cache.select(first[row_of])", [FS]),
 ("speed: AdamW's per-tensor loop", O, "foreach=True)", "foreach=False)", [FS]),
 # several processes (torchrun, distributed.py)
 ("ddp: SFT gradients not summed", S, "    distributed.all_reduce_grads(model)", "    pass", [FP]),
 ("ddp: SFT loss over the local tokens", S, "completion_loss(model(x), y, mask, n_tokens)", "completion_loss(model(x), y, mask)", [FP]),
 ("ddp: GRPO weights over the local minibatch", T, "whole = distributed.sum_all(grpo.aggregate_count(batch.loss_mask[rows], cfg.agg))", "whole = grpo.aggregate_count(batch.loss_mask[rows], cfg.agg)", [FP]),
 ("ddp: GRPO gradients not summed", T, "distributed.all_reduce_grads(models.policy)", "pass", [FP]),
 ("ddp: the log of one process's groups", T, "seen = rollouts.gather_rollouts(first)", "seen = first", [FP]),
 ("ddp: one stream for every shard", T, 'step_generator(cfg.seed, f"{stream}-shard{s}", step, device)', "generator", [FP]),
 ("ddp: gathered out of order", "distributed.py", "        out[r::world()] = p", "        out[r * len(parts[0]):r * len(parts[0]) + len(p)] = p", [FP]),
 # SFT loop
 ("sft: loss mask from pos 0", S, "        mask[row, n_prompt - 1:len(s) - 1] = True", "        mask[row, 0:len(s) - 1] = True"),
 ("sft: no zero_grad", S, "    optimizer.zero_grad(set_to_none=True)\n    loss.backward()\n", "    loss.backward()\n"),
 ("sft: lr not applied", S, "            set_lr(optimizer, lr)\n            idx = ", "            idx = "),
 ("sft: same batch every step", S, "sft_batch_indices(lengths, cfg.batch_size, step, cfg.seed,", "sft_batch_indices(lengths, cfg.batch_size, 0, cfg.seed,"),
 ("sft: grad clip off", S, "loss, grad_norm = sft_step(model, optimizer, x, y, mask, cfg.grad_clip, run.device, n_tokens)", "loss, grad_norm = sft_step(model, optimizer, x, y, mask, 0.0, run.device, n_tokens)"),
 ("sft: direct frac ignored", S, "sft_examples(train[:n], prompts[:n], worked[:n], tok, cfg.max_seq_len, cfg.sft_direct_frac, cfg.seed)", "sft_examples(train[:n], prompts[:n], worked[:n], tok, cfg.max_seq_len, 0.0, cfg.seed)"),
 ("sft: every problem despite sft_problems", S, "    n = cfg.sft_problems or len(train)", "    n = len(train)"),
 ("sft: weight decay on all", O, "    decay = [p for p in model.parameters() if p.dim() >= 2]", "    decay = [p for p in model.parameters()]"),
 ("sft: lr warmup off", O, "    if step < warmup_steps:\n        return lr * (step + 1) / warmup_steps", "    if False:\n        return lr"),
 # rollouts and rewards
 ("roll: temperature ignored in sampling", R, "roll = generate(policy, prompts, cfg.max_new_tokens, tasks.eos_id(tok), tasks.PAD_ID, temperature=cfg.temperature,", "roll = generate(policy, prompts, cfg.max_new_tokens, tasks.eos_id(tok), tasks.PAD_ID, temperature=1.0,"),
 ("roll: top_p ignored", R, "top_p=cfg.top_p if cfg.top_p < 1 else None, generator=generator,", "top_p=None, generator=generator,"),
 ("roll: golds not repeated G", R, "    golds = [p.answer for p in problems for _ in range(G)]", "    golds = [p.answer for _ in range(G) for p in problems]"),
 ("roll: overlong length wrong", R, "    weights, lengths = reward_weights(cfg), roll.mask.sum(-1).tolist()", "    weights, lengths = reward_weights(cfg), (roll.mask.sum(-1) - 1).tolist()"),
 ("roll: correct from reward", R, '    c = [float(p["accuracy"] == 1.0) for p in parts]', '    c = [float(p["format"] == 1.0) for p in parts]'),
 ("reward: wrong value ignored", R, "                                 accuracy_wrong=cfg.reward_wrong)", "                                 accuracy_wrong=0.0)"),
 ("reward: format weight ignored", R, "    return rewards.RewardWeights(accuracy=cfg.reward_accuracy, format=cfg.reward_format,", "    return rewards.RewardWeights(accuracy=cfg.reward_accuracy, format=1.0,"),
 # advantages
 ("adv: scale ignored", R, "        A = grpo.group_advantages(roll.rewards, cfg.adv_scale, cfg.std_ddof)  # (B, G)", "        A = grpo.group_advantages(roll.rewards, 'group', cfg.std_ddof)  # (B, G)"),
 ("adv: ddof ignored", R, "        A = grpo.group_advantages(roll.rewards, cfg.adv_scale, cfg.std_ddof)  # (B, G)", "        A = grpo.group_advantages(roll.rewards, cfg.adv_scale, 0)  # (B, G)"),
 ("adv: process last_step always", R, '            if cfg.process_outcome == "last_step":', '            if True:'),
 ("adv: process end off by one", R, "            step_end.append([rewards.char_to_token_index(s.end - 1, spans) for s in steps])", "            step_end.append([rewards.char_to_token_index(s.start, spans) for s in steps])"),
 # update
 ("upd: overlong filter not in loss mask", R, "                  grpo.completion_mask(mask, roll.truncated.to(device), cfg.overlong_filter),", "                  mask,"),
 ("upd: ref logprobs temp 1", R, "            batch.ref_logp = batch.all_rows(lambda rows: batch.logprobs(ref, rows, cfg.temperature), cfg.forward_chunk)", "            batch.ref_logp = batch.all_rows(lambda rows: batch.logprobs(ref, rows, 1.0), cfg.forward_chunk)"),
 ("upd: policy logprobs temp 1", T, "logp = batch.logprobs(models.policy, part, cfg.temperature)  # log pi_theta, with gradient", "logp = batch.logprobs(models.policy, part, 1.0)  # log pi_theta, with gradient"),
 ("upd: old_logp never computed", T, "    batch = rollouts.rollout_batch(models.policy, models.ref, roll, cfg, device, need_old=not single)", "    batch = rollouts.rollout_batch(models.policy, models.ref, roll, cfg, device, need_old=False)"),
 ("upd: eps_high ignored", T, "cfg.kl_coef, cfg.clip_eps_low, cfg.clip_eps_high, cfg.agg,", "cfg.kl_coef, cfg.clip_eps_low, cfg.clip_eps_low, cfg.agg,"),
 ("upd: agg ignored", T, "cfg.kl_coef, cfg.clip_eps_low, cfg.clip_eps_high, cfg.agg,", "cfg.kl_coef, cfg.clip_eps_low, cfg.clip_eps_high, 'seq_mean',"),
 ("upd: kl coef 0", T, "                                                  cfg.kl_coef, cfg.clip_eps_low", "                                                  0.0, cfg.clip_eps_low"),
 ("upd: mu 1", T, "    for _ in range(cfg.mu):  # for GRPO iteration = 1, ..., mu", "    for _ in range(1):"),
 ("upd: one minibatch", T, "        for rows in rollouts.minibatches(batch.ids.size(0), cfg.minibatches, generator):", "        for rows in rollouts.minibatches(batch.ids.size(0), 1, generator):"),
 ("upd: micro weight 1", T, "                (weight * loss).backward()", "                loss.backward()"),
 ("upd: no zero_grad in accumulate", T, "            models.optimizer.zero_grad(set_to_none=True)\n            parts, total, entropy", "            parts, total, entropy"),
 ("upd: grad clip ignored rl", T, "clip_and_step(models.policy, models.optimizer,\n" + " " * 81 + "cfg.grad_clip),", "clip_and_step(models.policy, models.optimizer,\n" + " " * 81 + "0.0),"),
 ("upd: adv rows wrong", T, "grpo.grpo_loss(logp, old, ref_logp(rows), adv[rows], batch.loss_mask[rows],", "grpo.grpo_loss(logp, old, ref_logp(rows), adv[rows].flip(0), batch.loss_mask[rows],"),
 # ppo
 ("ppo: kl reward from ref", P, "    token_rewards = grpo.ppo_token_rewards(score, batch.old_logp, ref_logp, batch.mask, cfg.kl_coef)  # r_t", "    token_rewards = grpo.ppo_token_rewards(score, batch.old_logp, ref_logp, batch.mask, 0.0)  # r_t"),
 ("ppo: lam ignored", P, "    adv, returns = grpo.gae(token_rewards, old_values, batch.mask, cfg.gamma, cfg.lam)", "    adv, returns = grpo.gae(token_rewards, old_values, batch.mask, cfg.gamma, cfg.gamma)"),
 ("ppo: no whitening", P, "    if cfg.whiten_adv:\n        adv = grpo.whiten", "    if False:\n        adv = grpo.whiten"),
 ("ppo: value clip off", P, "                                                      cfg.value_clip or None)", "                                                      None)"),
 ("ppo: vf_coef ignored", P, "        scaled = cfg.vf_coef * v_loss", "        scaled = v_loss"),
 ("ppo: critic not stepped", T, "            if critic_loss is not None:  # PPO: then one step of the critic on the same minibatch", "            if False:"),
 ("ppo: critic gradients never zeroed", P, "    models.critic_optimizer.zero_grad(set_to_none=True)\n", "\n"),
 # loop
 ("loop: rl rng step 0", T, 'rng, generator = step_rng(cfg.seed, stream, step), step_generator(cfg.seed, stream, step, device)', 'rng, generator = step_rng(cfg.seed, stream, 0), step_generator(cfg.seed, stream, 0, device)'),
 ("loop: ref never reset", T, "        models.ref.load_state_dict(models.policy.state_dict())\n", "        pass\n"),
 ("loop: rl warmup off", T, "    lr = cfg.rl_lr * rl_lr_scale(step, cfg.rl_warmup_steps)\n", "    lr = cfg.rl_lr\n"),
 ("loop: dyn sampling off", R, "    if not cfg.dynamic_sampling:\n        return first, first", "    if True:\n        return first, first"),
 # evaluation
 ("eval: k ignored", E, "    k = pass_k\n", "    k = 2\n"),
 ("eval: eval temperature ignored", E, "                         temperature=temperature, top_p=top_p, generator=generator,", "                         temperature=1.0, top_p=top_p, generator=generator,"),
 ("eval: cons from first sample", E, "        votes = [grpo.majority_vote(values[i * k:(i + 1) * k]) for i in range(len(problems))]", "        votes = [values[i * k] for i in range(len(problems))]"),
 ("eval: decode keeps EOS", E, "    return [tasks.decode(tok, [t for t, m in zip(ids, mask) if m and t != eos])", "    return [tasks.decode(tok, [t for t, m in zip(ids, mask) if m])"),
 ("gen: mask after EOS", M, "        alive = alive & (tok != eos_id)", "        alive = alive"),
 ("adv: step ends by per-token decoding", R, "            spans = tasks.token_spans(tok, ids)  # each token's characters in that text",
  "            spans = [(sum(len(tasks.decode(tok, [t])) for t in ids[:k]), sum(len(tasks.decode(tok, [t])) for t in "
  "ids[:k + 1])) for k in range(len(ids))]"),
 ("loop: dynamic sampling on correctness", R, "    parts, keep = [first], [grpo.dynamic_sampling_filter(first.rewards)]",
  "    parts, keep = [first], [grpo.dynamic_sampling_filter(first.correct)]"),
 ("loop: the language reward not passed on", R, "overlong=cfg.reward_overlong, language=cfg.reward_language,",
  "overlong=cfg.reward_overlong,"),
 # resuming (tests/test_resume.py runs real processes: slower)
 ("resume: metrics.jsonl not cut back", C, "            f.truncate(keep_bytes)", "            pass", ["tests/test_resume.py"]),
 ("resume: SFT optimizer not restored", S, '        checkpoint.restore_optimizer(point, "optimizer", optimizer)\n', "\n",
  ["tests/test_resume.py"]),
 ("resume: interrupted evaluation not rerun", S, "        if point.evaluate:  # the kill came before this step's evaluation was logged",
  "        if False:", ["tests/test_resume.py"]),
 ("resume: only the policy restored in RL", T, "        checkpoint.restore_model(point, name, model)",
  "        checkpoint.restore_model(point, name, model) if name == 'policy' else None", ["tests/test_resume.py"]),
 ("resume: evaluate before saving", T, "                save(step + 1, evaluate=True, done=step + 1 == cfg.rl_steps)  # save, then evaluate\n"
  "                evaluate_rl(policy, held_out, run, step + 1, stage)", "                evaluate_rl(policy, held_out, run, step + 1, stage)\n"
  "                save(step + 1, evaluate=True, done=step + 1 == cfg.rl_steps)", ["tests/test_resume.py"]),
 # the learned reward, and stage 3 of the R1 pipeline (rejection.py)
 ("rm: score not added", R, "        r = r + cfg.reward_rm * scores.flatten().to(r.dtype)\n", "", ["tests/test_rollouts.py"]),
 ("rm: weight ignored", R, "r = r + cfg.reward_rm * scores", "r = r + scores", ["tests/test_rollouts.py"]),
 ("rm: not passed to the sampler", T, "rng, generator, timer,\n                                            models.reward_model, shards", "rng, generator, timer,\n                                            None, shards", ["tests/test_reward_model.py"]),
 ("r1: a truncated sample kept", J, "    if truncated:\n        return \"truncated\"", "    if False:\n        return \"truncated\"", ["tests/test_rejection.py"]),
 ("r1: wrong steps kept", J, "    if any(s.reward < 1.0 for s in steps):", "    if False:", ["tests/test_rejection.py"]),
 ("r1: no dedupe", J, "    kept = dedupe(accepted)", "    kept = accepted", ["tests/test_rejection.py"]),
 ("r1: no non-reasoning data", J, "    examples = stage_examples(kept, direct, run.tok", "    examples = stage_examples(kept, [], run.tok", ["tests/test_rejection.py"]),
 ("r1: stage 3 from the RL policy", T, "    torch.manual_seed(cfg.seed)  # as at the start of the pipeline", "    return copy.deepcopy(policy)  # as at the start of the pipeline", ["tests/test_rejection.py"]),
 ("r1: resume runs stage 2 again", T, "    if resuming in (None, first, cfg.rl):", "    if True:", ["tests/test_rejection.py"]),
 ("r1: stage 3 SFT at stage 1's learning rate", J, "                lr=cfg.rs_lr or cfg.lr)", "                lr=cfg.lr)", ["tests/test_rejection.py"]),
 ("r1: stage 3 sampling not resumed", J, "    batches = read_candidates(path)", "    batches = []", ["tests/test_rejection.py"]),
 # stage 4 of the R1 pipeline: the task mixture, its settings, its reward model, resuming it
 ("mix: weights ignored", K, "        return [p for k in self.weights for p in rng.sample(self.pools[k], counts[k])]", "        return rng.sample(self.problems, n)", [F4]),
 ("mix: remainders not handed out", K, "    for k in by_remainder[:n - sum(counts.values())]:\n        counts[k] += 1\n", "", [F4]),
 ("mix: splits not shuffled", K, "        return (random.Random(f\"{seed}-mix\").sample(train, len(train)),", "        return (train,", [F4]),
 ("mix: test order moves with n_train", K, "                random.Random(f\"{seed}-mix-test\").sample(test, len(test)))", "                random.Random(f\"{seed}-mix-test{len(train)}\").sample(test, len(test)))", [F4]),
 ("mix: rl_mix not read", T, "    questions = tasks.Mixture(train, tasks.parse_mix(cfg.rl_mix))", "    questions = tasks.Mixture(train)", [F4]),
 ("mix: steps get the plain list", T, "record = rl_step(models, questions, run, step, stage)", "record = rl_step(models, train, run, step, stage)", [F4]),
 ("mix: sampler ignores the mixture", R, "    questions = train if isinstance(train, tasks.Mixture) else tasks.Mixture(train)", "    questions = tasks.Mixture(getattr(train, 'problems', train))", [F4]),
 ("s4: stage 2's mixture", T, "rl_mix=cfg.stage4_mix, ", "", [F4]),
 ("s4: stage 2's rm weight", T, "reward_rm=cfg.stage4_rm,", "reward_rm=cfg.reward_rm,", [F4]),
 ("s4: language flag not passed", T, "reward_language=cfg.stage4_language)", "reward_language=cfg.reward_language)", [F4]),
 ("s4: evaluates before step 1", T, "           evaluate_first=False)", "           evaluate_first=True)", [F4]),
 ("s4: rm trained again on resume", T, "    if cfg.reward_rm and point is None:", "    if cfg.reward_rm:", [F4]),
 ("s4: checkpoints record stage 4's cfg", T, "run_config=asdict(run.cfg)), point, STAGE4", "run_config=None), point, STAGE4", [F4]),
 ("s4: rm pairs of all problems", T, "        problems = tasks.Mixture(train, tasks.parse_mix(cfg.rl_mix)).draw(", "        problems = tasks.Mixture(train).draw(", [F4]),
 ("s4: resume runs stage 3 again", T, "        if resuming != STAGE4:  # stage 3", "        if True:  # stage 3", ["tests/test_rejection.py"]),
 ("s4: per-task pass@1 of the other task", E, "if k == kind]", "if k != kind]", [F4]),
 # distillation (distill.py): the student's FLOPs, the equal-compute rule, the teacher, the arms' start
 ("compute: training at 2N a token", CC, "    return 6 * n_params * train_tokens + 2 * n_params * forward_tokens", "    return 2 * n_params * train_tokens + 2 * n_params * forward_tokens", [FC]),
 ("compute: pi_ref's pass not counted", CC, "    passes = 1 + (cfg.kl_coef > 0) + (cfg.mu > 1 or cfg.minibatches > 1)", "    passes = 1 + (cfg.mu > 1 or cfg.minibatches > 1)", [FC]),
 ("compute: budget overshot", CC, "            return (s, total + f) if s == 1 or total + f - budget < budget - total else (s - 1, total)", "            return (s, total + f)", [FC]),
 ("compute: the run's start left out", CC, "    total = sum(s[\"flops\"] for s in stages.values()) + (start[\"flops\"] if start else 0)", "    total = sum(s[\"flops\"] for s in stages.values())", [FC]),
 ("compute: a start counted to its run's end, not its stage's", CC, "            start = dict(run=parent, stage=stage, flops=ends[stage])", "            start = dict(run=parent, stage=stage, flops=list(ends.values())[-1])", [FC]),
 ("compute: every SFT step of a stopped run", CC, "        done = point.step if point.stage == name else cfg.sft_steps", "        done = cfg.sft_steps", [FC]),
 ("compute: stage 1 of another command's draws", CC, "    steps, spent = equal_compute_steps((flops(n_params, sft_step_tokens(lengths, cfg, name, s), 0)", "    steps, spent = equal_compute_steps((flops(n_params, sft_step_tokens(lengths, cfg, 'rs_sft', s), 0)", [FC]),
 ("compute: the cold start's sft_problems ignored", CC, "    return \"sft\", [len(p) + len(c) for p, c in sft.cold_start_examples(train, prompts, worked, tok, cfg)]", "    return \"sft\", [len(p) + len(c) for p, c in sft.sft_examples(train, prompts, worked, tok, cfg.max_seq_len)]", [FC]),
 # R1-Zero: the base model (pretrain.py, --pipeline r1_zero)
 ("zero: cold-start SFT instead of pretraining", T, "        if first == PRETRAIN:  # next-token", "        if False:  # next-token", [FZ]),
 ("zero: pretraining not resumed", T, "    if not cfg.init_from and (point is None or point.stage == first):", "    if not cfg.init_from and (point is None or point.stage == \"sft\"):", [FZ]),
 ("zero: format share ignored", T, "pretrain.pretrain_documents(train, cfg.seed, cfg.pretrain_format_frac)", "pretrain.pretrain_documents(train, cfg.seed)", [FZ]),
 ("zero: transcripts never written", Z, "        docs.append(transcript(p) if formatted else document(p, style))", "        docs.append(document(p, style))", [FZ]),
 ("zero: loss on the separator only", Z, "    examples = [([eos], e.ids + [eos]) for e in tok.encode_batch(docs, add_special_tokens=False)]", "    examples = [([eos] + e.ids, [eos]) for e in tok.encode_batch(docs, add_special_tokens=False)]", [FZ]),
 ("roll: format statistic from accuracy", R, "                format=sum(map(rewards.format_reward, first.texts)) / max(len(first.texts), 1),", "                format=first.correct.mean().item(),"),
 ("sample: other knobs ignored", E, "    _, test = rebuild_splits({**train_config, **knobs})", "    _, test = rebuild_splits(train_config)", ["tests/test_train.py"]),
 ("sample: training questions kept", E, "        test = [p for p in test if tasks.normalise_question(p.question) not in seen]", "        test = test", ["tests/test_train.py"]),
 ("infer: vote weights ignored", I, "            totals[answer] = totals.get(answer, 0.0) + weight", "            totals[answer] = totals.get(answer, 0.0) + 1.0", [FI]),
 ("infer: the vote weighted by the scores", I, "    \"vote\": lambda answers, scores: grpo.majority_vote(answers),", "    \"vote\": lambda answers, scores: weighted_vote(answers, scores),", [FI]),
 ("infer: best of n takes the lowest", I, "    return answers[max(range(len(scores)), key=scores.__getitem__)]", "    return answers[min(range(len(scores)), key=scores.__getitem__)]", [FI]),
 ("infer: subsets with replacement", I, "                subset = rng.sample(q, n)", "                subset = rng.choices(q, k=n)", [FI]),
 ("infer: pass@N from one sample", I, "            out[n] = sum(grpo.pass_at_k(len(q), sum(c for _, c, _ in q), n) for q in samples) / len(samples)", "            out[n] = sum(grpo.pass_at_k(len(q), sum(c for _, c, _ in q), 1) for q in samples) / len(samples)", [FI]),
 ("verify: loss on the last token only", G, "    return bce[mask].mean()\n", "    return bce[:, -1].mean()\n", [FV]),
 ("verify: labels not broadcast per row", G, "    y = labels.to(values.dtype)[:, None].expand_as(values)", "    y = labels.to(values.dtype)[None, :].expand_as(values)", [FV]),
 ("verify: labels from the format reward", V, "    return [Solution(p.question, text, accuracy_reward(text, p.answer) > 0)", "    return [Solution(p.question, text, accuracy_reward(text, p.answer) >= 0)", [FV]),
 ("verify: completion mask off by one", V, "    completion_mask = torch.arange(L, device=device)[None, :] >= torch.tensor([L - len(c) for c in completions],", "    completion_mask = torch.arange(L, device=device)[None, :] >= torch.tensor([L - len(c) - 1 for c in completions],", [FV]),
 ("verify: no EOS on a solution", V, "    completions = [tasks.encode(tok, t)[:max_len - len(p) - 1] + [tasks.eos_id(tok)] for p, t in zip(prompts, texts)]", "    completions = [tasks.encode(tok, t)[:max_len - len(p) - 1] for p, t in zip(prompts, texts)]", [FV]),
 ("verify: ranking across questions", V, "        by_question.setdefault(sol.question, ([], []))[0 if sol.correct else 1].append(s)", "        by_question.setdefault(0, ([], []))[0 if sol.correct else 1].append(s)", [FV]),
 ("verify: the policy trained, not a copy", V, "    model = Critic.from_policy(policy)\n    model.train()", "    model = Critic.from_policy(policy)\n    model.trunk = policy\n    model.train()", [FV]),
 ("infer: verifier logit as the weight", I, "    probs = torch.sigmoid(verifier.verifier_scores(scorer, tok, questions, texts, template)).tolist() if scorer else None", "    probs = verifier.verifier_scores(scorer, tok, questions, texts, template).tolist() if scorer else None", [FI]),
 ("infer: flops without the prompt", I, "    flops = [sequence_flops(model.num_params(), cfg.n_layer, cfg.n_embd, len(pr) + c) for pr, c in zip(prompts, lengths)]", "    flops = [sequence_flops(model.num_params(), cfg.n_layer, cfg.n_embd, c) for pr, c in zip(prompts, lengths)]", [FI]),
 ("infer: logprob over padding", I, "        logprobs += ((roll.logprobs * roll.mask).sum(-1) / count.clamp(min=1)).tolist()", "        logprobs += (roll.logprobs.sum(-1) / roll.mask.size(1)).tolist()", [FI]),
 ("infer: the curve's weighted vote unweighted", I, "        samples = [list(zip(c[\"answers\"], c[\"correct\"], c[\"scores\"][score] if score else [1.0] * len(c[\"answers\"])))", "        samples = [list(zip(c[\"answers\"], c[\"correct\"], [1.0] * len(c[\"answers\"])))", [FI]),
 ("budget: no close forced", I, "        forced = ran_on and not closed", "        forced = False", [FI]),
 ("budget: a closed think not continued", I, "        if ran_on:\n            again.append", "        if forced:\n            again.append", [FI]),
 ("budget: continues from re-encoded text", I, "            again.append((i, prompts[i] + toks + (close if forced else [])))", "            again.append((i, prompts[i] + tasks.encode(tok, texts[-1])))", [FI]),
 ("best_of: the first sample wins", I, "        return answer, [max(range(len(weights)), key=weights.__getitem__)]", "        return answer, [0]", [FI]),
 ("aha: rebuilt splits without rechecks", E, "    return (tasks.with_rechecks(train, recheck, c[\"seed\"]) if recheck else train), test", "    return train, test", [FA]),
 ("resume: a new flag refuses old runs", C, "    defaults = defaults or {}\n", "    defaults = {}\n", ["tests/test_resume.py"]),
 ("aha: the slip written right", K, "    wrong = value + rng.choice((-1, 1)) * 10 ** rng.randrange(len(str(abs(value))))", "    wrong = value", [FA]),
 ("aha: re-checkers' accuracy over all", R, "                accuracy_recheck=accuracy_where(rechecks),", "                accuracy_recheck=accuracy_where(rechecks | ~rechecks),", [FA]),
 ("aha: difficulty not per group", R, "    steps = torch.tensor([tasks.difficulty(p) for p in first.problems]).repeat_interleave(first.rewards.size(1))", "    steps = torch.tensor([tasks.difficulty(p) for p in first.problems]).repeat(first.rewards.size(1))", [FA]),
 ("distill: arms from other weights", D, "    model = initial_student(student, cfg.seed, device)\n    if stage == DISTILL_STAGE:", "    model = initial_student(student, cfg.seed + 1, device)\n    if stage == DISTILL_STAGE:", [FD]),
 ("distill: stage 3's teacher always", D, "    stage = stage or next(", "    stage = stage or FINAL_STAGES[-1] or next(", [FD]),
 ("distill: unverified traces", D, "    examples = rejection.stage_examples(kept, [], tok, cfg.template, cfg.max_seq_len)", "    examples = rejection.stage_examples(kept + [(p, ' 0') for p in train[:50]], [], tok, cfg.template, cfg.max_seq_len)", [FD]),
]


def run(name: str, path: str, old: str, new: str, tests: list[str]) -> str:
    """'killed by <test>', 'MISSED', or 'NOT FOUND' for one mutant."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "repo")
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".git", "runs", "__pycache__"))
        with open(os.path.join(copy, path)) as f:
            code = f.read()
        if code.count(old) != 1:
            return f"NOT FOUND ({code.count(old)} matches)"
        with open(os.path.join(copy, path), "w") as f:
            f.write(code.replace(old, new))
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", *tests], cwd=copy,
                              capture_output=True, text=True)
        failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
        return ("killed by " + failed[0].split(" ", 1)[1].split(" - ")[0]) if done.returncode else "MISSED"


def main(argv: list[str]) -> int:
    prefix = argv[0] if argv and not argv[0].startswith("tests/") else ""
    tests = [a for a in argv if a.startswith("tests/")] or TESTS
    holes = 0
    for name, path, old, new, *own_tests in MUTANTS:
        if name.startswith(prefix):
            result = run(name, path, old, new, own_tests[0] if own_tests else tests)
            holes += not result.startswith("killed")
            print(f"{name:42s} {result}", flush=True)
    print(f"{holes} mutant(s) not killed" if holes else "every mutant was killed by a test")
    return 1 if holes else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
