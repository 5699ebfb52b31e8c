"""Every command README.md and docs/*.md list runs, at a tiny size, so that a listed command that breaks fails here.

The commands are READ from README.md's ```bash / ```sh / ```console blocks (`readme_commands`), never copied,
so a command added to the README is tested without touching this file. Each `python train.py / sample.py /
bench.py ...` command runs in-process (`main(argv)`) as the README writes it, with flags appended that make it
take seconds (`tiny_train_argv`, `tiny_sample_argv`, `tiny_bench_argv`; a flag given later wins in argparse).

Paths: each command runs in its own temporary folder (its cwd), so `runs/...` and every relative --out_dir /
--out land there. A path under runs/ that a command reads (--init_from, --sft_from, sample.py's checkpoint) must be
written by an EARLIER README command: that command runs once, tiny, in a shared folder (module fixture
`workspace`), and its run folder is copied into the reader's folder under the same relative path. So each
command sees what a user would have after running the README commands it depends on, and nothing else (the
commands that all write runs/default do not meet each other). A path no earlier README command writes fails
the case with that message. `PATH` after --gsm8k_dir is a folder of GSM8K-format files written here; `MODEL_DIR`
after --init_from a Hugging Face model folder, the tiny Qwen2 fixture of tests/fixtures/pretrained/.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import importlib.metadata
import io
import json
import math
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import torch

import bench
import compute
import pretrained
import distill
import curves
import explain
import inference
import rejection
import reward_model
import sample
import verifier
import config
import tasks
import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "classroom"))
import grade  # noqa: E402  (classroom/grade.py)
import make_student_copy  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHELL_BLOCKS = ("bash", "sh", "shell", "console")
PROGRAMS = ("python", "pip")


# ---------------------------------------------------------------------------------------------
# 1. The commands, read from README.md
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    source: str  # the Markdown file that lists it: README.md or docs/....md
    line: int  # its line there, where the command starts
    argv: tuple[str, ...]  # shell words, comments dropped: ("python", "train.py", "--rl", "ppo", ...)

    @property
    def text(self) -> str:
        return shlex.join(self.argv)

    @property
    def args(self) -> list[str]:
        """What the program's main() gets: the words after `python SCRIPT` (after `python -m MODULE`)."""
        return list(self.argv[3:] if self.argv[1] == "-m" else self.argv[2:])

    @property
    def program(self) -> str:
        return " ".join(self.argv[1:3]) if self.argv[1] == "-m" else self.argv[1]


def readme_commands(text: str, programs: tuple[str, ...] = PROGRAMS, source: str = "README.md",
                    seen: set | None = None) -> list[Command]:
    """The commands of the shell code blocks (```bash, ```sh, ```shell, ```console) of a Markdown text that start
    with one of `programs`: backslash-continued lines joined, `# comments` dropped (shell rules: a # inside quotes
    stays), a console `$ ` prompt dropped. In order; a command listed twice is kept once, at its first line."""
    commands, seen = [], set() if seen is None else seen
    fence, pending, start = None, "", 0
    for no, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else (stripped[3:].strip().split() or [""])[0].lower()
            pending = ""
            continue
        if fence not in SHELL_BLOCKS:
            continue
        if not pending:
            start = no
            if stripped.startswith("$ "):
                stripped = stripped[2:].lstrip()
        joined = (pending + " " + stripped).strip()
        if joined.endswith("\\"):  # continued on the next line
            pending = joined[:-1]
            continue
        pending = ""
        if joined.split(maxsplit=1)[:1] and joined.split(maxsplit=1)[0] not in programs:
            continue  # not a command of ours (and maybe not shlex-splittable: `echo "it's`)
        words = shlex.split(joined, comments=True)
        if len(words) > 1 and tuple(words) not in seen:
            seen.add(tuple(words))
            commands.append(Command(source, start, tuple(words)))
    return commands


DOCS = [README] + sorted((REPO / "docs").glob("*.md"))  # the README first: the docs' commands may read its runs
_SEEN: set = set()
def place(c: Command) -> tuple[int, int]:
    """Where a command stands in the reading order: README.md first, then docs/*.md; within a file, its line."""
    files = [str(doc.relative_to(REPO)) for doc in DOCS]
    return (files.index(c.source) if c.source in files else len(files), c.line)


COMMANDS = [c for doc in DOCS for c in readme_commands(doc.read_text(encoding="utf-8"), PROGRAMS,
                                                       str(doc.relative_to(REPO)), _SEEN)]
PYTHON = [c for c in COMMANDS if c.argv[0] == "python"]
TRAIN = [c for c in PYTHON if c.program == "train.py"]
REWARD_MODEL = [c for c in PYTHON if c.program == "reward_model.py"]
VERIFIER = [c for c in PYTHON if c.program == "verifier.py"]
SCALAR_HEAD = REWARD_MODEL + VERIFIER  # commands that save a scalar-head model in their --out_dir


def case_id(c: Command) -> str:
    text = shlex.join(c.argv[1:])
    return text if len(text) <= 70 else text[:67] + "..."


def test_commands_are_read_from_shell_blocks_with_continuations_comments_and_quotes():
    text = "\n".join([
        "```bash",
        "pip install -r requirements.txt   # the deps",
        "python train.py --a 1 \\",
        "    --b 2     # a comment",
        'python sample.py runs/x --question "What is #3?"  # hash in quotes',
        "python train.py --a 1 --b 2",  # the same command again: kept once
        "cd somewhere",
        "```",
        "```python",
        "python not_a_shell_block.py",
        "```",
        "```console",
        "$ python bench.py grpo",
        "```",
        "    python indented.py   # outside any block",
    ])
    got = readme_commands(text)
    assert [c.argv for c in got] == [
        ("pip", "install", "-r", "requirements.txt"),
        ("python", "train.py", "--a", "1", "--b", "2"),
        ("python", "sample.py", "runs/x", "--question", "What is #3?"),
        ("python", "bench.py", "grpo"),
    ]
    assert [c.line for c in got] == [2, 3, 5, 13]
    assert got[2].args == ["runs/x", "--question", "What is #3?"] and got[3].program == "bench.py"


def test_the_readme_lists_train_commands_and_only_programs_this_file_can_run():
    assert TRAIN, "README.md lists no `python train.py` command in a ```bash block"
    unknown = [c.text for c in PYTHON if c.program not in RUNNERS]
    assert not unknown, f"README commands of a program this file has no runner for (add one to RUNNERS): {unknown}"


# ---------------------------------------------------------------------------------------------
# Install: the README's pip line, and requirements.txt against the imports
# ---------------------------------------------------------------------------------------------
def test_the_readme_installs_requirements_txt():
    pips = [c.argv for c in COMMANDS if c.argv[0] == "pip"]
    assert ("pip", "install", "-r", "requirements.txt") in pips, f"README pip commands: {pips}"


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(canonical(re.match(r"[A-Za-z0-9._-]+", line).group()))
    return names


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def optional_import_lines(tree: ast.AST) -> set[int]:
    """Lines of imports inside a `try:` whose handler catches ImportError: optional (bench.py's matplotlib)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try):
            caught = {n.id for h in node.handlers if h.type is not None
                      for n in ast.walk(h.type) if isinstance(n, ast.Name)}
            if caught & {"ImportError", "ModuleNotFoundError"}:
                lines |= {n.lineno for stmt in node.body for n in ast.walk(stmt)
                          if isinstance(n, (ast.Import, ast.ImportFrom))}
    return lines


def project_imports() -> dict[str, set[str]]:
    """{top-level module imported: the project files importing it}, over every .py file of the repository,
    without the standard library, the project's own modules and optional imports."""
    files = [p for p in REPO.rglob("*.py") if not any(part.startswith(".") or part in ("runs", "venv", "__pycache__")
                                                      for part in p.relative_to(REPO).parts)]
    local = {p.stem for p in files} | {p.parent.name for p in files if p.name == "__init__.py"}
    found: dict[str, set[str]] = {}
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        optional = optional_import_lines(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if node.lineno not in optional and top not in sys.stdlib_module_names and top not in local:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


# Import name -> distribution name where they differ and the package is not installed to say so itself.
IMPORT_TO_DISTRIBUTION = {"yaml": "PyYAML", "PIL": "Pillow", "sklearn": "scikit-learn", "cv2": "opencv-python"}


def test_requirements_txt_lists_every_third_party_package_the_project_imports():
    installed = importlib.metadata.packages_distributions()  # import name -> distributions, where installed
    required = requirement_names(REPO / "requirements.txt")
    missing = {}
    for module, where in sorted(project_imports().items()):
        dists = installed.get(module) or [IMPORT_TO_DISTRIBUTION.get(module, module)]
        if not {canonical(d) for d in dists} & required:
            missing[module] = sorted(where)
    assert not missing, f"imported but not in requirements.txt ({sorted(required)}): {missing}"


# ---------------------------------------------------------------------------------------------
# Running a command in-process, in a folder of its own
# ---------------------------------------------------------------------------------------------
@dataclass
class Ran:
    result: object
    out: str
    err: str
    seconds: float


def run_main(main, argv: list[str], cwd: Path, what: str) -> Ran:
    """main(argv) with cwd as the working directory, its stdout/stderr captured; torch's thread count put back
    (train.py --threads sets it for the process). A SystemExit (a refused flag, a missing file: the one-line
    errors of the scripts) fails the case with the message and the end of the output; any other exception
    propagates with its traceback, the output printed first."""
    out, err = io.StringIO(), io.StringIO()
    threads, old_cwd, t0 = torch.get_num_threads(), os.getcwd(), time.perf_counter()
    os.chdir(cwd)
    torch.set_num_threads(1)  # as THREADS: sample.py has no --threads (train.py and bench.py get --threads 1)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            result = main(list(argv))
    except SystemExit as e:
        pytest.fail(f"{what}\n  ran as: {shlex.join(argv)}\n  in {cwd}\n  exited with {e.code!r}\n"
                    f"--- stderr (end)\n{err.getvalue()[-3000:]}\n--- stdout (end)\n{out.getvalue()[-3000:]}",
                    pytrace=False)
    except BaseException:
        print(f"{what}\n  ran as: {shlex.join(argv)}\n--- stdout (end)\n{out.getvalue()[-4000:]}\n"
              f"--- stderr (end)\n{err.getvalue()[-4000:]}")
        raise
    finally:
        os.chdir(old_cwd)
        torch.set_num_threads(threads)
    return Ran(result, out.getvalue(), err.getvalue(), time.perf_counter() - t0)


def last_value(argv: list[str], flag: str) -> str | None:
    """The value of the last `flag VALUE` (or `flag=VALUE`) in argv; None if absent."""
    value = None
    for i, word in enumerate(argv):
        if word == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif word.startswith(flag + "="):
            value = word.split("=", 1)[1]
    return value


def sets(argv: list[str], flag: str) -> bool:
    return last_value(argv, flag) is not None


def loose_config(argv: list[str]) -> config.TrainConfig:
    """The TrainConfig config.parse_config reads from argv (presets, defaults, later flags winning), without
    check_config: for what a command writes and which budget flags act in it, before its inputs exist."""
    err = io.StringIO()
    try:
        with mock.patch.object(config, "check_config"), contextlib.redirect_stderr(err):
            return config.parse_config(argv)
    except SystemExit:
        pytest.fail(f"train.py cannot parse {shlex.join(argv)}:\n{err.getvalue()}", pytrace=False)


def train_outputs(argv: list[str]) -> set[str]:
    """The paths a train.py command writes: its out_dir, out_dir/sft (unless --init_from) and out_dir/<rl>."""
    cfg = loose_config(argv)
    out = {cfg.out_dir} | ({os.path.join(cfg.out_dir, train.stage1_name(cfg))} if not cfg.init_from else set())
    out |= {os.path.join(cfg.out_dir, cfg.rl)} if cfg.rl != "none" else set()
    return {os.path.normpath(p) for p in out}


def split_train_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """bench.py's own words, and the train.py flags after `--`."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def bench_seeds(argv: list[str]) -> list[int]:
    head, _ = split_train_args(argv)
    if "--seeds" not in head:
        return [0]
    seeds = []
    for word in head[head.index("--seeds") + 1:]:
        if word.startswith("-"):
            break
        seeds.append(int(word))
    return seeds


def input_paths(c: Command, args: list[str]) -> list[str]:
    """The paths under runs/ a command reads: every runs/ path it is given except as its --out_dir / --out
    ({seed} filled in with each seed of a bench sweep)."""
    outputs = {args[i + 1] for i, w in enumerate(args[:-1]) if w in ("--out_dir", "--out")}
    paths = []
    for word in args:
        if word.startswith("runs/") and word not in outputs:
            if "{seed}" in word:
                paths += [word.format(seed=s) for s in bench_seeds(args)]
            else:
                paths.append(word)
    return [os.path.normpath(p) for p in paths]


PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$")  # PATH, DIR: a word the user replaces


# ---------------------------------------------------------------------------------------------
# The workspace: the GSM8K fixture, and the README commands other commands read from, run once
# ---------------------------------------------------------------------------------------------
LONG_PREAMBLE = ("Before the market opened on a cold and windy Saturday morning, the careful farmer counted "
                 "every crate of produce in the old red barn twice, just to be completely sure of the numbers. ")


def write_gsm8k_fixture(folder: Path, n_train: int = 40, n_test: int = 12) -> None:
    """train.jsonl and test.jsonl in GSM8K's format ({"question", "answer": "steps with <<expr=value>>\\n#### N"}),
    from the project's word-problem generator; two training questions and one test question open with a long
    preamble, so that the longest prompt is several hundred tokens, and the longest of all is a test question (the
    run must size its lengths from both splits)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_split, test_split = tasks.make_splits("word", n_train, n_test, seed=0)
    for name, problems, repeats in (("train", train_split, {0: 3, 1: 4}), ("test", test_split, {0: 6})):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            for i, p in enumerate(problems):
                question = LONG_PREAMBLE * repeats.get(i, 0) + p.question
                f.write(json.dumps({"question": question, "answer": tasks.gsm8k_solution(p)}) + "\n")


def write_pretrained_fixture(folder: Path) -> Path:
    """The tiny Qwen2 fixture (a Hugging Face folder), its config.json allowing 4096 positions instead of 512: with
    its vocabulary of ~100 tokens the GSM8K fixture's longest prompt is ~1500 (RoPE has no weights: the same model)."""
    shutil.copytree(REPO / "tests" / "fixtures" / "pretrained" / "qwen2", folder)
    config_json = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config_json, "max_position_embeddings": 4096}))
    return folder


class Workspace:
    """A shared folder where the README commands that others read from run once (tiny, in README order of need),
    and the GSM8K fixture."""

    def __init__(self, root: Path):
        self.root, self.shared, self.gsm8k = root, root / "shared", root / "gsm8k"
        self.shared.mkdir()
        write_gsm8k_fixture(self.gsm8k)
        self.pretrained = write_pretrained_fixture(root / "pretrained")
        self.ran: dict[Command, Ran] = {}

    def substitute(self, c: Command, args: list[str]) -> list[str]:
        """Placeholders (`--gsm8k_dir PATH`, `--init_from MODEL_DIR`) replaced by the fixtures written here."""
        fixtures = {"--gsm8k_dir": str(self.gsm8k), "--init_from": str(self.pretrained)}
        out = list(args)
        for i, word in enumerate(out[1:], start=1):
            if PLACEHOLDER.match(word) and out[i - 1].startswith("--"):
                if out[i - 1] not in fixtures:
                    pytest.fail(f"{c.source}:{c.line}: `{c.text}`: no fixture for the placeholder {word} after "
                                f"{out[i - 1]} (tests/test_readme.py Workspace.substitute)", pytrace=False)
                out[i] = fixtures[out[i - 1]]
        return out

    def producer(self, c: Command, path: str) -> Command:
        """The first README command before c that writes `path` (a train.py run folder or stage checkpoint, or a
        reward model's or a verifier's folder)."""
        makers = [m for m in TRAIN if path in train_outputs(self.substitute(m, m.args))] + \
                 [m for m in SCALAR_HEAD if os.path.normpath(last_value(m.args, "--out_dir")) == path]
        earlier = [m for m in makers if place(m) < place(c)]
        if not earlier:
            later = "; only later ones do: " + ", ".join(f"{m.source}:{m.line} `{m.text}`" for m in makers) if makers else ""
            pytest.fail(f"{c.source}:{c.line}: `{c.text}` reads {path}, which no earlier README command "
                        f"creates{later}. List the command that makes it before this one, or read a path an "
                        "earlier command writes.", pytrace=False)
        return earlier[0]

    def provide_inputs(self, c: Command, args: list[str], folder: Path) -> None:
        """Copy into `folder` the run folders of the earlier README commands that write what c reads."""
        for path in input_paths(c, args):
            maker = self.producer(c, path)
            self.run_shared(maker)
            out_dir = (last_value(maker.args, "--out_dir") if maker in SCALAR_HEAD
                       else loose_config(self.substitute(maker, maker.args)).out_dir)
            if folder != self.shared:
                shutil.copytree(self.shared / out_dir, folder / out_dir, dirs_exist_ok=True)

    def run_shared(self, c: Command) -> Ran:
        """A train.py, reward_model.py or verifier.py README command, tiny, in the shared folder (once)."""
        if c not in self.ran:
            args = self.substitute(c, c.args)
            self.provide_inputs(c, args, self.shared)
            if c.program == "reward_model.py":
                main, argv = reward_model.main, args + REWARD_MODEL_TINY
            elif c.program == "verifier.py":
                main, argv = verifier.main, args + VERIFIER_TINY
            else:
                main, argv = train.main, tiny_train_argv(args)
            scripted = scripted_rejection_sampler(loose_config(argv)) if main is train.main else contextlib.nullcontext()
            with scripted:  # an R1 run that later commands read (a distillation's teacher) needs stage 3's data
                self.ran[c] = run_main(main, argv, self.shared, f"{c.source}:{c.line}: {c.text}")
        return self.ran[c]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("readme"))
    default = next((c for c in TRAIN if c.args == []), None)
    if default is not None:  # `python train.py`, which sample.py and --init_from read: first
        ws.run_shared(default)
    return ws


# ---------------------------------------------------------------------------------------------
# 2. Tiny versions of the commands
# ---------------------------------------------------------------------------------------------
# A few seconds of train.py: a command's own value of one of these is kept when it is no larger (it asks for
# no more work), else this value is appended after the command's flags and wins.
TRAIN_BUDGET = {"--n_train": 300, "--n_test": 12, "--sft_steps": 4, "--batch_size": 4, "--eval_n": 4,
                "--rl_steps": 2, "--prompts_per_step": 2, "--group_size": 2, "--rl_eval_n": 4, "--pass_k": 2,
                "--rs_questions": 6, "--rs_samples": 2, "--rs_batch": 4, "--rs_sft_steps": 4, "--stage4_steps": 2,
                "--rm_pairs": 40, "--rm_steps": 2}
# Flags capped only where a command gives them (absent, they mean "all"): worked solutions of the first N problems
CAP_IF_GIVEN = {"--sft_problems": 100}
# Evaluation intervals and the device: a command's own value is kept.
TRAIN_SETTINGS = {"--eval_every": 2, "--rl_eval_every": 1, "--device": "cpu"}
# One torch thread in every run, a command's own --threads overridden (a setting of the machine, free on resume):
# on a 2-core machine shared with other processes, 2 threads made the tiny runs 2-10x slower (measured).
THREADS = ["--threads", "1"]
TINY_MODEL = {"--n_layer": 1, "--n_head": 2, "--n_embd": 16, "--vocab_size": 300}
# A command that sets its own model width or depth (--preset word: 25.8M parameters, meant for a GPU) runs at
# that size, on the CPU: it must fit its own data. At that size a step and an evaluation (160 new tokens, which
# the untrained model fills) take seconds, so fewer of them: one SFT step and its evaluation, one RL step.
OWN_SIZE_BUDGET = {**TRAIN_BUDGET, "--sft_steps": 1, "--batch_size": 2, "--eval_n": 1, "--rl_steps": 1,
                   "--prompts_per_step": 1, "--rl_eval_n": 1, "--pass_k": 1}
OWN_SIZE_KEYS = ("n_layer", "n_embd")


def own_model_size(args: list[str]) -> bool:
    preset = last_value(args, "--preset") or "default"
    return any(sets(args, f"--{k}") or k in config.PRESETS.get(preset, {}) for k in OWN_SIZE_KEYS)


def tiny_train_flags(args: list[str], skip: tuple[str, ...] = ()) -> list[str]:
    """The flags that make train.py with `args` take seconds (see TRAIN_BUDGET), minus the ones that would have
    no effect in this run (train.py refuses those: ONLY_WITH, e.g. --n_train with --task gsm8k)."""
    budget = OWN_SIZE_BUDGET if own_model_size(args) else {**TRAIN_BUDGET, **TINY_MODEL}
    flags = {}
    for flag, cap in budget.items():
        own = last_value(args, flag)
        if own is None or float(own) > cap:
            flags[flag] = cap
    flags.update({flag: value for flag, value in TRAIN_SETTINGS.items() if not sets(args, flag)})
    flags.update({flag: cap for flag, cap in CAP_IF_GIVEN.items() if sets(args, flag) and float(last_value(args, flag)) > cap})
    cfg = loose_config(args + [str(w) for kv in flags.items() for w in kv])
    for flag in list(flags):
        name = flag[2:]
        if name in config.ONLY_WITH and not config.ONLY_WITH[name][0](cfg):
            del flags[flag]
    # --minibatches k splits a step's prompts_per_step x group_size completions k ways: keep enough of them
    if cfg.minibatches > cfg.prompts_per_step * cfg.group_size:
        key = "--prompts_per_step" if sets(args, "--group_size") else "--group_size"
        other = cfg.group_size if key == "--prompts_per_step" else cfg.prompts_per_step
        flags[key] = math.ceil(cfg.minibatches / other)
    return [str(w) for flag, value in flags.items() if flag not in skip for w in (flag, value)] + THREADS


def tiny_train_argv(args: list[str]) -> list[str]:
    return args + tiny_train_flags(args)


SAMPLE_CAPS = {"--n": 4, "--samples": 4, "--best_of": 4}


def tiny_sample_argv(args: list[str]) -> list[str]:
    extra = [w for flag, cap in SAMPLE_CAPS.items() if sets(args, flag) and int(last_value(args, flag)) > cap
             for w in (flag, str(cap))]
    return args + extra + ([] if sets(args, "--device") else ["--device", "cpu"])


# bench.py: each subcommand's own tiny arguments (tests/test_bench.py's sizes), appended after the command's
BENCH_TINY = {
    "sampling": dict(batch=4, new_tokens=6, prompt_len=6, n_layer=1, n_head=2, n_embd=16, vocab=64, repeats=1,
                     threads=1),
    "grpo": dict(n_layer=1, n_head=2, n_embd=16, prompts=2, group=2, max_new_tokens=8, steps=1, batches="2 4",
                 threads=1),
    "ppo": dict(n_layer=1, n_head=2, n_embd=16, prompts=2, group=2, max_new_tokens=8, steps=1, threads=1),
    "step": dict(n_layer=1, n_head=2, n_embd=16, prompts=2, group=2, max_new_tokens=8, steps=1, rounds=1, threads=1),
    "compare": dict(rl_steps=1, no_plot=True),
    "variants": dict(rl_steps=1, no_plot=True),
    "memory": dict(n_layer=1, n_head=2, n_embd=16, prompts=2, group=2, max_new_tokens=8, steps=1, micro_batch=1,
                   forward_chunk=2),
}
# memory makes its own one-step checkpoint and 1-problem evaluations: its train.py runs need only these
MEMORY_TRAIN = {"--vocab_size": 300, "--n_train": 300}


def tiny_bench_argv(args: list[str]) -> list[str]:
    head, train_args = split_train_args(args)
    sub = head[0]
    if sub not in BENCH_TINY:
        pytest.fail(f"bench.py {sub}: no tiny arguments for it in tests/test_readme.py BENCH_TINY", pytrace=False)
    if "--seeds" in head:  # one seed shows a sweep works; each further seed repeats the same runs
        i = head.index("--seeds")
        head = head[:i + 2] + head[i + 1 + len(bench_seeds(args)):]
    for key, value in BENCH_TINY[sub].items():
        flag = f"--{key}"
        if value is True:
            head += [flag] if flag not in head else []
        else:
            head += [flag, *str(value).split()]
    if sub in ("compare", "variants"):  # every train.py run of the sweep tiny; --rl_steps is the sweep's own
        train_args = train_args + tiny_train_flags(train_args, skip=("--rl_steps",))
    elif sub == "memory":
        train_args = train_args + [str(w) for f, v in MEMORY_TRAIN.items() if not sets(train_args, f)
                                   for w in (f, v)] + THREADS
    return head + (["--", *train_args] if train_args else [])


def assert_tiny(cfg: config.TrainConfig, own_size: bool) -> None:
    """What keeps this file fast, checked on every train.py run it makes (no timing assertion: the sizes)."""
    budget = OWN_SIZE_BUDGET if own_size else TRAIN_BUDGET
    for flag, cap in budget.items():
        if flag in ("--n_train", "--n_test") and cfg.task == "gsm8k":
            continue  # the fixture's files: 40 and 12 problems
        if flag[2:] in config.ONLY_WITH and not config.ONLY_WITH[flag[2:]][0](cfg):
            continue  # a flag of another kind of run (stages 3-4's: only in the R1 pipeline)
        if flag not in ("--prompts_per_step", "--group_size"):
            assert getattr(cfg, flag[2:]) <= cap, (flag, getattr(cfg, flag[2:]))
    rows = budget["--prompts_per_step"] * budget["--group_size"]
    assert cfg.prompts_per_step * cfg.group_size <= max(rows, cfg.minibatches)
    if not own_size and not pretrained.is_huggingface_folder(cfg.init_from):  # (a Hugging Face folder: the fixture's)
        assert (cfg.n_layer, cfg.n_embd) == (TINY_MODEL["--n_layer"], TINY_MODEL["--n_embd"])


REWARD_MODEL_TINY = ["--pairs", "40", "--test_pairs", "10", "--steps", "2", "--batch_size", "4", "--threads", "1"]
VERIFIER_TINY = ["--questions", "6", "--samples", "2", "--test_questions", "2", "--steps", "2", "--batch_size", "4",
                 "--threads", "1"]
# inference.py: each subcommand's tiny arguments, appended after the command's
INFERENCE_TINY = {"curve": ["--n", "4", "--questions", "3", "--resamples", "2"],
                  "budget": ["--budgets", "2,4", "--questions", "3", "--answer_tokens", "4"]}
# distill.py: a few teacher questions; the student's steps and sizes are the tiny teacher's (TRAIN_BUDGET)
DISTILL_TINY = ["--traces_questions", "12", "--traces_samples", "2", "--traces_batch", "4", "--threads", "1",
                "--student_layers", "1"]  # the tiny teacher has one block: the student keeps it, at half the width


# ---------------------------------------------------------------------------------------------
# 2. One case per README command
# ---------------------------------------------------------------------------------------------
def run_train_command(c: Command, ws: Workspace, folder: Path) -> int:
    """Runs c tiny and checks its final record, checkpoints and lengths; returns its longest prompt in tokens."""
    args = ws.substitute(c, c.args)
    argv = tiny_train_argv(args)
    cfg = loose_config(argv)
    assert_tiny(cfg, own_model_size(args))
    if c in ws.ran:  # a command others read from already ran, tiny, in the shared folder: its run is this case's
        ran, folder = ws.ran[c], ws.shared
    else:
        ws.provide_inputs(c, args, folder)
        with scripted_rejection_sampler(cfg):
            ran = run_main(train.main, argv, folder, f"{c.source}:{c.line}: {c.text}")
    record, out_dir = ran.result, folder / cfg.out_dir
    assert isinstance(record, dict) and record["stage"] == "final", ran.out[-2000:]
    lengths = re.search(r"lengths: longest prompt (\d+) tokens, longest worked solution (\d+); max_new_tokens (\d+), "
                        r"max_seq_len (\d+)", ran.out)
    assert lengths, ran.out[-2000:]
    prompt, solution, new, seq = map(int, lengths.groups())
    assert seq >= prompt + new  # every prompt fits with its whole generation budget
    stages = ([] if cfg.init_from else [train.stage1_name(cfg)]) + ([cfg.rl] if cfg.rl != "none" and cfg.rl_steps else [])
    for stage in stages:
        assert (out_dir / stage / "model.safetensors").is_file() and (out_dir / stage / "tokenizer.json").is_file()
    if cfg.pipeline == "r1":  # the stage table (--rl_steps 0: no stage-1 row), stage 3's checkpoint and samples
        first = ["sft"] if cfg.rl_steps else []
        assert list(record["stages"]) == first + [cfg.rl, "rs_sft"] + (["rl_all"] if cfg.stage4_steps else [])
        assert "| 3. rejection sampling -> SFT |" in ran.out
        assert not cfg.stage4_steps or "| 4. RL for all scenarios" in ran.out
        assert (out_dir / "rs_sft" / "model.safetensors").is_file()
        assert (out_dir / "rejection" / rejection.CANDIDATES_FILE).is_file()
    elif cfg.rl == "none":
        assert record["eval_n"] >= 1 and 0 <= record["eval_pass_at_1"] <= 1
        assert "final held-out greedy pass@1" in ran.out
    else:
        assert set(record) >= {train.stage1_name(cfg), cfg.rl, "memory", "models"} and "pass_at_1" in record[cfg.rl]
        assert f"| {'metric':<18} | {'BASE' if cfg.pipeline == 'r1_zero' else 'SFT':>6} | {cfg.rl.upper():>6} |" in ran.out
        assert cfg.rl != "ppo" or (out_dir / "ppo" / "critic" / "model.safetensors").is_file()
    if cfg.task == "gsm8k":  # the fixture's long questions: the run sized its lengths from them and ran through
        assert prompt >= 200, f"the GSM8K fixture's longest prompt is only {prompt} tokens"
    return prompt


@contextlib.contextmanager
def scripted_rejection_sampler(cfg: config.TrainConfig):
    """In the R1 pipeline, stage 3 keeps only right answers, and a tiny model trained for seconds writes none: its
    sampler is replaced by one that writes each question's worked solution and one unformatted answer. Every
    other part of the stage (verdicts, the SFT mix, the SFT, the table) is the real one."""
    if cfg.pipeline != "r1":
        yield
        return
    real = rejection.sample_batch
    rejection.sample_batch = lambda policy, tok, problems, cfg, generator: (
        [t for p in problems for t in [tasks.format_completion(p)] + [" 0"] * (cfg.rs_samples - 1)],
        [False] * cfg.rs_samples * len(problems))
    try:
        yield
    finally:
        rejection.sample_batch = real


def positional(args: list[str]) -> str:
    """sample.py's checkpoint argument: the first word that is neither a flag nor a flag's value (every
    sample.py flag takes a value)."""
    for i, word in enumerate(args):
        if not word.startswith("-") and (i == 0 or not args[i - 1].startswith("-")):
            return word
    pytest.fail(f"no checkpoint argument in sample.py {shlex.join(args)}", pytrace=False)


def run_sample_command(c: Command, ws: Workspace, folder: Path) -> None:
    args = ws.substitute(c, c.args)
    ws.provide_inputs(c, args, folder)
    argv = tiny_sample_argv(args)
    ran = run_main(sample.main, argv, folder, f"{c.source}:{c.line}: {c.text}")
    path = positional(args)
    expected = path if (folder / path / "model.safetensors").is_file() else next(
        os.path.join(path, s) for s in ("grpo", "ppo", "sft") if (folder / path / s / "model.safetensors").is_file())
    assert f"loaded {expected}:" in ran.err  # a run folder: its RL stage's checkpoint, else sft/
    if sets(args, "--best_of"):
        n = int(last_value(argv, "--best_of"))
        assert ran.out.count(" sample ") == n and f"chosen by {last_value(args, '--select') or 'vote'}: " in ran.out
    elif sets(args, "--question"):
        samples = int(last_value(argv, "--samples") or 1)
        assert ran.out.count("answer:") == samples and ran.out.count("reasoning:") == samples
        assert samples == 1 or f"--- sample {samples}" in ran.out
    if sets(args, "--n"):
        n = int(last_value(argv, "--n"))
        assert re.search(rf"greedy pass@1 on {n} held-out problems: [01]\.\d{{3}}", ran.out), ran.out


BENCH_HEADLINES = {
    "sampling": ["same greedy tokens: True", "speed-up"],
    "grpo": ["GRPO step", "completion tokens/s", "fixed overhead"],
    "ppo": ["seconds per step", "PPO / GRPO seconds per step", "models held in memory for PPO"],
    "step": ["GRPO step", "| round | naive (s) | --prompt_once (s) | ratio |", "| 1 |"],
    "compare": ["held-out greedy pass@1 by RL step", "seconds per RL step by phase", "GRPO / PPO:"],
    "variants": ["held-out greedy pass@1 by RL step", "seconds per RL step by phase"],
    "memory": ["peak memory of an RL step", "GRPO / PPO: peak RSS"],
}


def run_bench_command(c: Command, ws: Workspace, folder: Path) -> None:
    args = ws.substitute(c, c.args)
    ws.provide_inputs(c, args, folder)
    argv = tiny_bench_argv(args)
    ran = run_main(bench.main, argv, folder, f"{c.source}:{c.line}: {c.text}")
    sub = argv[0]
    for words in BENCH_HEADLINES[sub]:
        assert words in ran.out, (words, ran.out[-3000:])
    if sub in ("compare", "variants"):
        runs = bench.COMPARE if sub == "compare" else bench.VARIANTS
        for name in runs:
            assert f"| {name} |" in ran.out, name
        sft_runs = 0 if sets(args, "--sft_from") else 1
        assert ran.out.count("$ ") == len(bench_seeds(argv)) * (sft_runs + len(runs))  # the train.py processes
        out = last_value(split_train_args(argv)[0], "--out") or f"runs/{sub}"
        assert (folder / out / "summary.json").is_file()
    if sub == "memory":
        assert ran.out.count("$ ") == 3  # the checkpoint, then GRPO and PPO, each its own train.py process


EXPLAIN_CAPS = {"--max_new_tokens": 8}  # a checkpoint's own budget (the tiny run's) would print every token it samples


def run_explain_command(c: Command, ws: Workspace, folder: Path) -> None:
    """explain.py: a run folder under runs/ is the tiny run of the README command that writes it (as for sample.py);
    sampled completions are capped at EXPLAIN_CAPS tokens. It must print the rewards, the token rows and the loss."""
    args = ws.substitute(c, c.args)
    ws.provide_inputs(c, args, folder)
    argv = args + [w for flag, cap in EXPLAIN_CAPS.items()
                   if not sets(args, flag) or int(last_value(args, flag)) > cap for w in (flag, str(cap))]
    ran = run_main(explain.main, argv, folder, f"{c.source}:{c.line}: {c.text}")
    assert "1. Rewards r_i = " in ran.out and "\ncompletion 1: r = " in ran.out, ran.out[-2000:]
    assert re.search(r"(policy )?loss = -J = -?\d+\.\d{4}", ran.out), ran.out[-2000:]
    if any(w.startswith("runs/") for w in args):
        assert "policy: runs/" in ran.out  # the checkpoint it was given, not the tiny untrained model


def run_classroom_command(c: Command, ws: Workspace, folder: Path) -> None:
    """classroom/make_student_copy.py OUT and classroom/grade.py [--repo OUT] [names], run from a folder `repo`
    inside the case's folder, so that OUT (e.g. ../tiny-grpo-student) lands in the case's folder. grade.py on this
    repository must give full points; with --repo, on a student copy made there first, zero."""
    here = folder / "repo"
    here.mkdir()
    if c.program == "classroom/make_student_copy.py":
        ran = run_main(make_student_copy.main, c.args, here, f"{c.source}:{c.line}: {c.text}")
        assert "no solution line left in it" in ran.out and (here / positional(c.args) / "grpo.py").is_file()
        return
    repo = last_value(c.args, "--repo")
    if repo:
        make_student_copy.make_copy(str(here / repo))
    ran = run_main(grade.main, c.args, here, f"{c.source}:{c.line}: {c.text}")
    assert ran.result and all((got == 0) if repo else (got == total) for got, total in ran.result.values()), ran.out


def run_reward_model_command(c: Command, ws: Workspace, folder: Path) -> None:
    """reward_model.py CHECKPOINT --out_dir DIR, tiny (REWARD_MODEL_TINY), from the README run that wrote the
    checkpoint: it must report its pair accuracy and save the model."""
    ran = ws.run_shared(c)
    out = ws.shared / last_value(c.args, "--out_dir")
    assert "held-out pair accuracy: all " in ran.out and (out / "model.safetensors").is_file(), ran.out[-2000:]
    assert 0 <= ran.result["pair_accuracy"] <= 1


def run_verifier_command(c: Command, ws: Workspace, folder: Path) -> None:
    """verifier.py CHECKPOINT --out_dir DIR, tiny (VERIFIER_TINY), from the README run that wrote the checkpoint:
    it must report its held-out accuracy and save the verifier."""
    ran = ws.run_shared(c)
    out = ws.shared / last_value(c.args, "--out_dir")
    assert "held-out: accuracy " in ran.out and (out / "model.safetensors").is_file(), ran.out[-2000:]
    assert 0 <= ran.result["accuracy"] <= 1


def run_inference_command(c: Command, ws: Workspace, folder: Path) -> None:
    """inference.py curve|budget CHECKPOINT..., tiny (INFERENCE_TINY), from the README runs (and verifiers) it
    reads: a table for every checkpoint it names."""
    args = ws.substitute(c, c.args)
    ws.provide_inputs(c, args, folder)
    ran = run_main(inference.main, args + INFERENCE_TINY[args[0]], folder, f"{c.source}:{c.line}: {c.text}")
    header = "| N | MFLOPs | pass@N | vote |" if args[0] == "curve" else "| think budget | pass@1 |"
    first_flag = next((i for i, w in enumerate(args) if w.startswith("-")), len(args))
    checkpoints = args[1:first_flag]
    assert ran.out.count(header) == len(checkpoints) == len(ran.result), ran.out[-2000:]


def run_curves_command(c: Command, ws: Workspace, folder: Path) -> None:
    """curves.py RUN, on the README run it reads: a row for its RL steps."""
    args = ws.substitute(c, c.args)
    ws.provide_inputs(c, args, folder)
    ran = run_main(curves.main, args, folder, f"{c.source}:{c.line}: {c.text}")
    assert ran.result and "| steps | reward | accuracy |" in ran.out, ran.out[-2000:]


def run_distill_command(c: Command, ws: Workspace, folder: Path) -> None:
    """distill.py TEACHER_RUN, tiny (DISTILL_TINY), from the README run that wrote the teacher, with the scripted
    sampler (the tiny teacher answers nothing right): both arms in the table, at equal student FLOPs."""
    args = ws.substitute(c, c.args)
    ws.provide_inputs(c, args, folder)
    with scripted_rejection_sampler(config.TrainConfig(pipeline="r1")):
        ran = run_main(distill.main, args + DISTILL_TINY, folder, f"{c.source}:{c.line}: {c.text}")
    record = ran.result
    assert isinstance(record, dict) and record["stage"] == "final", ran.out[-2000:]
    assert set(record["arms"]) == {"rl_cold_start", "rl", "distill"} and "| distill: SFT on the teacher's traces |" \
        in ran.out
    out = folder / (last_value(c.args, "--out_dir") or "runs/distill")
    assert (out / "distill" / "model.safetensors").is_file() and (out / "grpo" / "model.safetensors").is_file()


def run_compute_command(c: Command, ws: Workspace, folder: Path) -> None:
    """compute.py RUN..., on the README runs it reads: a table row with the FLOPs of each."""
    args = ws.substitute(c, c.args)
    ws.provide_inputs(c, args, folder)
    ran = run_main(compute.main, args, folder, f"{c.source}:{c.line}: {c.text}")
    runs = input_paths(c, args)
    assert len(ran.result) == len(runs) and all(r["total"] > 0 for r in ran.result), ran.out[-2000:]
    assert all(f"| {run} |" in ran.out for run in runs), ran.out[-2000:]
    if "--evaluations" in args:
        assert "| held-out pass@1 |" in ran.out and all(r["evaluations"] for r in ran.result), ran.out[-2000:]


def run_pytest_command(c: Command, ws: Workspace, folder: Path) -> None:
    """`python -m pytest -q` is the suite this file belongs to (running it here would recurse): check that it
    collects this file."""
    assert c.args == ["-q"], c.text
    ini = configparser.ConfigParser()
    ini.read(REPO / "pytest.ini")
    testpaths = ini.get("pytest", "testpaths", fallback=".").split()
    assert any((REPO / p).resolve() in Path(__file__).resolve().parents for p in testpaths), testpaths


RUNNERS = {"train.py": run_train_command, "sample.py": run_sample_command, "bench.py": run_bench_command,
           "explain.py": run_explain_command, "classroom/grade.py": run_classroom_command,
           "classroom/make_student_copy.py": run_classroom_command, "reward_model.py": run_reward_model_command,
           "distill.py": run_distill_command, "verifier.py": run_verifier_command,
           "inference.py": run_inference_command, "curves.py": run_curves_command, "compute.py": run_compute_command,
           "-m pytest": run_pytest_command}


@pytest.mark.parametrize("command", PYTHON, ids=[case_id(c) for c in PYTHON])
def test_readme_command_runs_at_a_tiny_size(command, workspace, tmp_path):
    runner = RUNNERS.get(command.program)
    assert runner, f"{command.source}:{command.line}: no runner for `{command.text}`"
    if {"-h", "--help"} & set(command.args):  # `python train.py --help`: prints its usage, exits 0
        main = {"train.py": train.main, "sample.py": sample.main, "bench.py": bench.main,
                "explain.py": explain.main}[command.program]
        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_:
            main(command.args)
        assert exit_.value.code in (0, None) and "usage:" in out.getvalue()
        return
    runner(command, workspace, tmp_path)


def test_the_default_command_runs_with_the_r1_template(workspace, tmp_path):
    """The R1 template (DeepSeek-R1 Table 1) makes every prompt ~60 words longer: the run must size for it."""
    if any(last_value(c.args, "--template") == "r1" for c in TRAIN):
        pytest.skip("the README lists a --template r1 command: its own case runs it")
    c = Command("(this test)", 0, ("python", "train.py", "--template", "r1"))
    longest_prompt = run_train_command(c, workspace, tmp_path)
    assert longest_prompt >= 150  # the template alone is ~90 words
    metrics = [json.loads(line) for line in open(tmp_path / "runs" / "default" / "metrics.jsonl")]
    assert metrics[-1]["stage"] == "final" and any("eval_pass_at_1" in r for r in metrics if r.get("stage") == "sft")


# ---------------------------------------------------------------------------------------------
# 3. Every train.py command parses at its full size
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", TRAIN, ids=[case_id(c) for c in TRAIN])
def test_readme_train_command_parses_at_full_size(command, workspace):
    args = workspace.substitute(command, command.args)
    workspace.provide_inputs(command, args, workspace.shared)  # --init_from must exist
    err = io.StringIO()
    old = os.getcwd()
    os.chdir(workspace.shared)
    try:
        with contextlib.redirect_stderr(err):
            cfg = config.parse_config(args)
    except SystemExit:
        pytest.fail(f"{command.source}:{command.line}: `{command.text}` is refused:\n{err.getvalue()}", pytrace=False)
    finally:
        os.chdir(old)
    assert cfg.sft_steps >= 1 and cfg.out_dir
