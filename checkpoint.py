"""The resume point: one file from which a stopped run continues exactly as if it had never stopped.

A run writes two kinds of checkpoint:
  - the stage checkpoints `out_dir/sft/` and `out_dir/grpo/` (or `ppo/`): a model and its tokenizer
    (`model.save_checkpoint`), what `sample.py` and `--init_from` read;
  - the resume point `out_dir/resume.safetensors` (this file's job): everything else a killed run needs.

What the resume point holds, and why that is enough:
  - the weights of every model the stage trains or compares against (the policy; in RL also the reference,
    and with PPO the critic) and the state of every AdamW (its moments and step counts);
  - the stage and the number of steps done, whether that step's evaluation still has to run, and
    whether the stage (or the run) is finished;
  - the byte length of metrics.jsonl at that moment: a resumed run cuts the file back to it, so that no
    record is written twice and none is missing;
  - the tokenizer (its JSON) and the run's config, which a resumed run must match.
  No random-number-generator state is stored: every step draws its randomness from (seed, stage, step)
  (`train.step_rng`, `train.step_generator`), so the step counter is the whole state. The learning rate
  is a function of the step too.

Atomic: the file is written under a temporary name and renamed over the old one (`os.replace`), so a kill
in the middle of a write leaves the previous resume point whole. Nothing is pickled: tensors in
safetensors, everything else JSON in its metadata.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

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


def config_differences(saved: dict, current: dict) -> list[str]:
    """'--name saved -> current' for each field that differs, except those in FREE_ON_RESUME."""
    return [f"--{k} {saved.get(k)!r} -> {current[k]!r}" for k in current
            if k not in FREE_ON_RESUME and saved.get(k) != current[k]]


def mark_finished(out_dir: str, metrics_bytes: int) -> None:
    """Rewrite the resume point (atomically) as the end of a finished run, its final record included."""
    path = os.path.join(out_dir, RESUME_FILE)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(finished="true", metrics_bytes=json.dumps(metrics_bytes))
    save_file(tensors, path + ".tmp", metadata=meta)
    os.replace(path + ".tmp", path)
