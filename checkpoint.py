"""Saving a run and continuing it: stage checkpoints, the resume point, metrics.jsonl, Ctrl-C, per-step randomness.

A run writes two kinds of checkpoint (design: The resume point):
  - the stage checkpoints `out_dir/sft/` and `out_dir/grpo/` (or `ppo/`): a model and its tokenizer
    (`model.save_checkpoint`), what `sample.py` and `--init_from` read;
  - the resume point `out_dir/resume.safetensors`: every model and AdamW state of the stage, the step, the
    byte length of metrics.jsonl, the tokenizer and the config. Written under a temporary name and renamed
    (`os.replace`), so a kill mid-write leaves the previous point whole. Nothing is pickled.
No random-number-generator state is stored: every step draws from (seed, stage, step) (`step_rng`,
`step_generator`), so the step counter is the whole state (design: Randomness per step).

    Run              what every stage shares; Run.save writes both checkpoints, before each evaluation
    Metrics          out_dir/metrics.jsonl, one JSON record a line, cut back to the resume point on resume
    StopRequest      Ctrl-C finishes the step, saves and raises Interrupted
    resume_point     the point to continue from (or None); load, restore_model, restore_optimizer
    load_start       the model and tokenizer of --init_from, checked against the run's task and split; or a
                     Hugging Face model folder (pretrained.py) with its own tokenizer
"""

from __future__ import annotations

import json
import os
import random
import signal
from dataclasses import asdict, dataclass

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer
from tqdm import tqdm

import distributed
import pretrained
import tasks
from model import load_checkpoint, save_checkpoint
from optim import NonFiniteError

RESUME_FILE = "resume.safetensors"
FORMAT = 1  # bumped when the layout changes; an older file is refused with a clear message


@dataclass
class ResumePoint:
    """What `load` read back from a resume file."""
    path: str
    stage: str  # "sft", "grpo" or "ppo"
    step: int  # steps of that stage completed
    evaluate: bool  # this step's evaluation had not been logged yet when the point was written
    done: bool  # the stage is over (its steps or its time budget ran out)
    finished: bool  # the whole run is over: its final record is in metrics.jsonl
    metrics_bytes: int  # the length of metrics.jsonl when the point was written
    train_config: dict
    model_config: dict  # the policy's architecture (model.ModelConfig)
    tokenizer_json: str
    tensors: dict  # name -> tensor, e.g. "policy/tok_emb.weight", "optimizer/3/exp_avg"
    optimizers: dict  # optimizer name -> its param_groups (hyper-parameters; the tensors are in `tensors`)


def optimizer_tensors(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    """An optimizer's state as flat tensors {name/param_index/key: tensor} and its param_groups as JSON data."""
    state = optimizer.state_dict()
    tensors = {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"{name}/{index}/{key}"] = torch.as_tensor(value).detach().to("cpu").contiguous()
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, groups


def save(out_dir: str, stage: str, step: int, models: dict, optimizers: dict, *, train_config: dict, tokenizer,
         metrics_bytes: int, evaluate: bool, done: bool, finished: bool = False) -> str:
    """Write out_dir/resume.safetensors atomically. models: name -> nn.Module; optimizers: name -> Optimizer."""
    tensors, groups = {}, {}
    for name, model in models.items():
        for key, value in model.state_dict().items():
            tensors[f"{name}/{key}"] = value.detach().to("cpu").clone().contiguous()
    for name, optimizer in optimizers.items():
        opt_tensors, groups[name] = optimizer_tensors(name, optimizer)
        tensors.update(opt_tensors)
    meta = dict(format=FORMAT, stage=stage, step=step, evaluate=evaluate, done=done, finished=finished,
                metrics_bytes=metrics_bytes, train_config=train_config, optimizers=groups,
                model_config=asdict(models["policy"].cfg))
    path = os.path.join(out_dir, RESUME_FILE)
    save_file(tensors, path + ".tmp", metadata={**{k: json.dumps(v) for k, v in meta.items()},
                                                 "tokenizer": tokenizer.to_str()})
    os.replace(path + ".tmp", path)  # atomic: the old point stays whole until the new one is complete
    return path


def load(out_dir: str) -> ResumePoint | None:
    """The resume point in out_dir, None if there is none; a ValueError naming the file if it cannot be read."""
    path = os.path.join(out_dir, RESUME_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with safe_open(path, framework="pt") as f:
            raw = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = {k: (v if k == "tokenizer" else json.loads(v)) for k, v in raw.items()}
    except (SafetensorError, OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not a readable resume point ({e}); delete it, or pass --resume false to "
                         "start the run over") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: written in resume format {meta.get('format')!r}, this code reads {FORMAT}; "
                         "pass --resume false to start the run over")
    return ResumePoint(path, meta["stage"], meta["step"], meta["evaluate"], meta["done"], meta["finished"],
                       meta["metrics_bytes"], meta["train_config"], meta["model_config"], meta["tokenizer"], tensors, meta["optimizers"])


def restore_model(point: ResumePoint, name: str, model: torch.nn.Module) -> None:
    """Load the weights saved under `name` into model (same architecture; strict)."""
    prefix = f"{name}/"
    state = {k[len(prefix):]: v for k, v in point.tensors.items() if k.startswith(prefix)}
    model.load_state_dict(state)


def restore_optimizer(point: ResumePoint, name: str, optimizer: torch.optim.Optimizer) -> None:
    """Load the AdamW state saved under `name` into optimizer, built over the same parameters in the same order."""
    state: dict = {}
    for key, value in point.tensors.items():
        owner, _, rest = key.partition("/")
        if owner == name:
            index, _, slot = rest.partition("/")
            state.setdefault(int(index), {})[slot] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in point.optimizers[name]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# fields that may differ between a run and its resumption: they change how fast it runs, not what it computes
# (a time budget counts the time of the process it runs in)
FREE_ON_RESUME = ("threads", "device", "resume", "sft_minutes", "rl_minutes")


def config_differences(saved: dict, current: dict, defaults: dict | None = None) -> list[str]:
    """'--name saved -> current' for each field that differs, except those in FREE_ON_RESUME. A field the saved
    config lacks (a flag added since the run was started) counts as its value in `defaults`: a new flag's default
    is the behaviour of the code before it, so a run started before it resumes under it."""
    defaults = defaults or {}
    return [f"--{k} {saved.get(k, defaults.get(k))!r} -> {current[k]!r}" for k in current
            if k not in FREE_ON_RESUME and saved.get(k, defaults.get(k)) != current[k]]


def mark_finished(out_dir: str, metrics_bytes: int) -> None:
    """Rewrite the resume point (atomically) as the end of a finished run, its final record included (under
    torchrun, by rank 0 only)."""
    if not distributed.is_main():
        return
    path = os.path.join(out_dir, RESUME_FILE)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(finished="true", metrics_bytes=json.dumps(metrics_bytes))
    save_file(tensors, path + ".tmp", metadata=meta)
    os.replace(path + ".tmp", path)


def resume_point(out_dir: str, resume: bool) -> ResumePoint | None:
    """The run's resume point if `resume` and out_dir holds one, else None (then metrics.jsonl starts over).
    With resume false an old resume point is deleted first: a kill before the new run's first checkpoint
    must not leave the old run's point behind, to be resumed against the new run's metrics."""
    if not resume:
        path = os.path.join(out_dir, RESUME_FILE)
        if os.path.exists(path):
            os.remove(path)
        return None
    return load(out_dir)


def check_resume(point: ResumePoint, cfg: dict, defaults: dict | None = None) -> bool:
    """Check that a resume point belongs to this config (SystemExit naming the flags that differ; a flag the stored
    config lacks counts as its value in `defaults`); True if its run has finished (then there is nothing to do)."""
    changed = config_differences(point.train_config, cfg, defaults)
    if changed:
        raise SystemExit(f"error: {cfg['out_dir']} holds a run with another config ({'; '.join(changed)}): give the "
                         "same flags to resume it, another --out_dir, or --resume false to start it over")
    if point.finished:
        print(f"{cfg['out_dir']}: this run has finished (its final record is in metrics.jsonl); nothing to do. "
              "Give another --out_dir, or --resume false to run it again")
        return True
    print(f"resuming {cfg['out_dir']} from {point.stage} step {point.step}")
    return False


# ---------------------------------------------------------------------------------------------
# Randomness per step: the same (seed, stage, step), the same draws, resumed or not
# ---------------------------------------------------------------------------------------------
def step_rng(seed: int, stage: str, step: int) -> random.Random:
    """The Python RNG of one step of one stage (design: Randomness per step)."""
    return random.Random(f"{seed}-{stage}-{step}")


def step_generator(seed: int, stage: str, step: int, device: str = "cpu") -> torch.Generator:
    """The torch generator of one step of one stage, on `device` (sampling and shuffling draw from it)."""
    return torch.Generator(device=device).manual_seed(step_rng(seed, stage, step).getrandbits(63))


# ---------------------------------------------------------------------------------------------
# The run: its metrics file, its checkpoints, Ctrl-C
# ---------------------------------------------------------------------------------------------
class Metrics:
    """Appends one JSON record a line to out_dir/metrics.jsonl.

    A new run empties the file; a resumed one cuts it back to `keep_bytes`, its length when the resume point
    was written, so that the records of the steps after it, which are about to run again, are not doubled.
    """

    def __init__(self, path: str, keep_bytes: int = 0):
        self.path = path
        if distributed.is_main():  # under torchrun only rank 0 writes
            with open(path, "a") as f:
                f.truncate(keep_bytes)

    def log(self, **record):
        if not distributed.is_main():
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def size(self) -> int:
        """The file's length in bytes: what a resume point records (0 on the ranks that do not write it)."""
        return os.path.getsize(self.path) if distributed.is_main() else 0

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


def stage_evaluations(records: list[dict], stage: str) -> list[dict]:
    """The held-out evaluations of one stage in metrics records, as {metric: value} (the 'eval_' prefix dropped)."""
    return [{k[5:]: v for k, v in r.items() if k.startswith("eval_") and k != "eval_n"}
            for r in records if r.get("stage") == stage and "eval_pass_at_1" in r]


def step_line(r: dict) -> str:
    """The one log line of an RL step (the full record goes to metrics.jsonl); PPO adds its critic's numbers."""
    nan = float("nan")
    critic = (f"vloss {r['value_loss']:.4f} ev {r['explained_var']:.2f} | " if "value_loss" in r else "")
    return (f"{r['stage']} {r['step']:4d} | reward {r['reward']:.3f} acc {r['accuracy']:.3f} fmt {r.get('format', nan):.2f} "
            f"std {r['reward_std']:.3f} "
            f"zero-std {r['zero_std_frac']:.2f} | len {r['length']:.1f} trunc {r['truncated_frac']:.2f} | "
            f"kl {r.get('kl', nan):.4f} clip {r.get('clip_frac', nan):.3f} ent {r.get('entropy', nan):.3f} "
            f"gnorm {r.get('grad_norm', nan):.2f} | {critic}{r['step_s']:.2f}s, rollout {r['rollout_s']:.2f}s "
            f"{r['rollout_tok_s']} tok/s")


@dataclass
class Run:
    """What every stage of a run shares: its config (config.TrainConfig), tokenizer, metrics file and device."""
    cfg: object
    tok: Tokenizer
    metrics: Metrics
    device: str
    run_config: dict | None = None  # what checkpoints record as the run's config, if not cfg (a stage's own cfg)

    def save(self, stage: str, step: int, models: dict, optimizers: dict, *, evaluate: bool, done: bool) -> None:
        """Before an evaluation, or when stopped: the stage checkpoint out_dir/<stage>/ (what sample.py and
        --init_from read; PPO's critic in <stage>/critic/) and the resume point."""
        if not distributed.is_main():  # under torchrun rank 0 writes; every rank holds the same weights
            return
        config = asdict(self.cfg) if self.run_config is None else self.run_config
        meta = {"train_config": config, "stage": stage, "step": step}
        export = os.path.join(self.cfg.out_dir, stage)
        save_checkpoint(export, models["policy"], self.tok, meta)
        if "critic" in models:  # beside the policy, for a run that continues PPO
            save_checkpoint(os.path.join(export, "critic"), models["critic"], None, {**meta, "stage": f"{stage}_critic"})
        save(self.cfg.out_dir, stage, step, models, optimizers, train_config=config, tokenizer=self.tok,
             metrics_bytes=self.metrics.size(), evaluate=evaluate, done=done)


class Interrupted(Exception):
    """Ctrl-C stopped the run after a whole step; the resume point of that step is written."""


def run_to_the_end(body, out_dir: str, command: str, nonfinite_hint: str = ""):
    """body(), a whole run; its result. A stop (Ctrl-C after a whole step, or at once) ends the process with exit
    status 130 and the command that resumes it; a NaN or inf ends it with one line (SystemExit), before any update
    with it. Either way the last checkpoint in out_dir is kept."""
    try:
        return body()
    except Interrupted as e:
        print(f"\nstopped after {e}: the run is saved in {out_dir}; resume it with the same command:\n  {command}")
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        print(f"\nstopped at once: the last checkpoint in {out_dir} is kept; resume it with the same command:\n"
              f"  {command}")
        raise SystemExit(130) from None
    except NonFiniteError as e:
        raise SystemExit(f"error: {e}; nothing was updated with it. The last checkpoint in {out_dir} is "
                         f"kept{nonfinite_hint}") from None


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


# the flags a checkpoint given to --init_from must have been trained with: they fix the split and the prompts
SAME_DATA = ("task", "seed", "digits", "mul_digits", "min_ops", "max_ops", "n_test", "template", "gsm8k_dir")


def load_start(cfg, device: str):
    """(model, tokenizer) of --init_from, after checking it was trained on this run's task and split; a Hugging Face
    folder (config.json beside the weights) is read by load_pretrained_start instead."""
    if pretrained.is_huggingface_folder(cfg.init_from):
        return load_pretrained_start(cfg, device)
    try:
        model, meta = load_checkpoint(cfg.init_from, device)
        tok = Tokenizer.from_file(os.path.join(cfg.init_from, "tokenizer.json"))
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: --init_from: {e}") from None
    except Exception as e:  # tokenizers raises its own exception type for a corrupt tokenizer.json
        raise SystemExit(f"error: --init_from {cfg.init_from}/tokenizer.json: not a readable tokenizer ({e})") from None
    trained = (meta or {}).get("train_config") or {}
    for name in SAME_DATA:
        if name in trained and trained[name] != getattr(cfg, name):
            raise SystemExit(f"error: --init_from {cfg.init_from} was trained with --{name} {trained[name]!r}, "
                             f"this run has {getattr(cfg, name)!r}: pass the same value, so that the held-out "
                             "split and the prompts are the ones it was trained for")
    return model, tok


def load_pretrained_start(cfg, device: str):
    """(model, tokenizer) of a Hugging Face folder given to --init_from (design: GRPO from a pretrained model): the
    weights in float32 (pretrained.load_pretrained) with the run's --max_seq_len positions if given (else
    min(max_position_embeddings, 4096)), and the folder's own tokenizer, which must have an end token
    (tasks.eos_id). No data check: the folder has no training config. The run's checkpoints are this project's
    format (model.safetensors with the config, tokenizer.json): sample.py, resume and --init_from read them."""
    try:
        model, tok, info = pretrained.load_pretrained(cfg.init_from, device, cfg.max_seq_len or None)
        eos = tasks.eos_id(tok)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: --init_from {cfg.init_from}: {e}") from None
    print(f"--init_from {cfg.init_from}: a pretrained {info['model_type']} model, chat format {info['chat_format']}, "
          f"{model.cfg.max_seq_len} positions; its tokenizer ({tok.get_vocab_size()} tokens); completions end at "
          f"{tok.id_to_token(eos)}")
    if eos not in info["eos_ids"]:
        print(f"note: {tok.id_to_token(eos)} (tasks.eos_id) is not among the folder's eos_token_id "
              f"{[tok.id_to_token(i) for i in info['eos_ids']]}: the run teaches the model to stop there")
    return model, tok
