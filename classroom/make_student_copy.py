"""Make the student copy: the whole repository with every solution region replaced by a stub.

    python classroom/make_student_copy.py ../tiny-grpo-student
    python classroom/make_student_copy.py ../tiny-grpo-hw1 --only kv-cache     # one assignment's regions only

Copies the files git tracks (or, outside a git checkout, every file but runs/ and caches) into a new folder
with no git history, replaces each `# BEGIN SOLUTION ... # END SOLUTION` region (classroom/regions.py) by a
`raise NotImplementedError` with its hint, and checks that no line of any blanked solution is left anywhere in
the copy. A file whose first line is `# classroom: not in the student copy ...` is left out (tests that
re-derive the solutions independently, such as tests/test_updates.py). Hand out the folder; grade it with
`python classroom/grade.py --repo FOLDER`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from regions import blank, find_regions  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SKIP = {".git", "runs", "__pycache__", ".pytest_cache"}
LEFT_OUT = "# classroom: not in the student copy"  # the first line of a file the copy leaves out


def source_files(root: str) -> list[str]:
    """The repository's files, relative to root: git's tracked files, else a walk without SKIP."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.split("\n")
        return sorted(p for p in out if p and os.path.isfile(os.path.join(root, p)))
    except (OSError, subprocess.CalledProcessError):
        return sorted(os.path.relpath(os.path.join(d, f), root) for d, dirs, files in os.walk(root)
                      for f in files if not (SKIP & set(os.path.relpath(d, root).split(os.sep))))


def left_out(root: str, path: str) -> bool:
    """Whether the copy leaves this file out (its first line says so)."""
    try:
        with open(os.path.join(root, path), encoding="utf-8") as f:
            return f.readline().startswith(LEFT_OUT)
    except (UnicodeDecodeError, OSError):
        return False


def assignment_names(root: str) -> list[str]:
    """The assignments, from their statements: classroom/assignments/NN_<name>.md, in order."""
    folder = os.path.join(root, "classroom", "assignments")
    return [f[3:-3].replace("_", "-") for f in sorted(os.listdir(folder)) if f[:2].isdigit() and f.endswith(".md")]


def solution_lines(root: str, files: list[str], names: set[str] | None = None) -> set[str]:
    """The lines that only a solution holds (stripped, 12 characters or more, and found nowhere outside the
    regions, such as `if mode == "seq_mean":` in another function): none may be left in the copy. Only the
    regions of the assignments in `names` count (None: all); the others stay in the copy, as written."""
    inside, outside = set(), set()
    for path in files:
        try:
            text = open(os.path.join(root, path), encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        regions = find_regions(text, path) if path.endswith(".py") else []
        in_region = {k for r in regions if names is None or r.name in names for k in range(r.start, r.end + 1)}
        for k, line in enumerate(text.split("\n")):
            (inside if k in in_region else outside).add(line.strip())
    return {line for line in inside - outside if len(line) >= 12}


def make_copy(out: str, root: str = ROOT, only: list[str] | None = None) -> dict:
    """Write the student copy to `out` (which must not exist), blanking the regions of the assignments in
    `only` (None: every assignment); returns {file: regions blanked}."""
    if os.path.exists(out):
        raise SystemExit(f"error: {out} exists; give a new folder")
    known = assignment_names(root)
    unknown = [n for n in only or [] if n not in known]
    if unknown:
        raise SystemExit(f"error: --only {' '.join(unknown)}: no such assignment; there are: {', '.join(known)}")
    names = set(only) if only else None
    files, blanked = [p for p in source_files(root) if not left_out(root, p)], {}
    secrets = solution_lines(root, files, names)
    for path in files:
        src, dst = os.path.join(root, path), os.path.join(out, path)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if path.endswith(".py"):
            text = open(src, encoding="utf-8").read()
            n = sum(names is None or r.name in names for r in find_regions(text, path))
            with open(dst, "w", encoding="utf-8") as f:
                f.write(blank(text, path, names) if n else text)
            if n:
                blanked[path] = n
        else:
            shutil.copy2(src, dst)
    leaks = leaked(out, secrets)
    if leaks:
        shutil.rmtree(out)
        raise SystemExit(f"error: solution lines left in the copy, which was removed: {leaks[:5]}")
    return blanked


def leaked(out: str, secrets: set[str]) -> list[str]:
    """'file: line' for every solution line that is a line of a text file of the copy."""
    found = []
    for d, _, files in os.walk(out):
        for f in files:
            try:
                text = open(os.path.join(d, f), encoding="utf-8").read()
            except (UnicodeDecodeError, OSError):
                continue  # binary files (figures) hold no code
            lines = {line.strip() for line in text.split("\n")}
            found += [f"{os.path.relpath(os.path.join(d, f), out)}: {s}" for s in sorted(secrets & lines)]
    return found


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="a new folder for the student copy")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="blank only these assignments' regions "
                        f"(default: all of them: {', '.join(assignment_names(ROOT))})")
    args = parser.parse_args(argv)
    blanked = make_copy(os.path.abspath(args.out), only=args.only)
    n = sum(blanked.values())
    print(f"student copy in {args.out}: {n} solution region{'' if n == 1 else 's'} blanked in "
          f"{', '.join(f'{p} ({n})' for p, n in blanked.items())}; no solution line left in it")


if __name__ == "__main__":
    main()
