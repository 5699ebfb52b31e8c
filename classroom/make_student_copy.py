"""Make the student copy: the whole repository with every solution region replaced by a stub.

    python classroom/make_student_copy.py ../tiny-grpo-student

Copies the files git tracks (or, outside a git checkout, every file but runs/ and caches) into a new folder
with no git history, replaces each `# BEGIN SOLUTION ... # END SOLUTION` region (classroom/regions.py) by a
`raise NotImplementedError` with its hint, and checks that no line of any solution is left anywhere in the
copy. Hand out the folder; grade it with `python classroom/grade.py --repo FOLDER`.
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


def source_files(root: str) -> list[str]:
    """The repository's files, relative to root: git's tracked files, else a walk without SKIP."""
    try:
        out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True,
                             text=True, check=True).stdout.split("\n")
        return sorted(p for p in out if p and os.path.isfile(os.path.join(root, p)))
    except (OSError, subprocess.CalledProcessError):
        return sorted(os.path.relpath(os.path.join(d, f), root) for d, dirs, files in os.walk(root)
                      for f in files if not (SKIP & set(os.path.relpath(d, root).split(os.sep))))


def solution_lines(root: str, files: list[str]) -> set[str]:
    """The lines that only a solution holds (stripped, 12 characters or more, and found nowhere outside the
    regions, such as `if mode == "seq_mean":` in another function): none may be left in the copy."""
    inside, outside = set(), set()
    for path in files:
        try:
            text = open(os.path.join(root, path), encoding="utf-8").read()
        except (UnicodeDecodeError, OSError):
            continue
        regions = find_regions(text, path) if path.endswith(".py") else []
        in_region = {k for r in regions for k in range(r.start, r.end + 1)}
        for k, line in enumerate(text.split("\n")):
            (inside if k in in_region else outside).add(line.strip())
    return {line for line in inside - outside if len(line) >= 12}


def make_copy(out: str, root: str = ROOT) -> dict:
    """Write the student copy to `out` (which must not exist); returns {file: regions blanked}."""
    if os.path.exists(out):
        raise SystemExit(f"error: {out} exists; give a new folder")
    files, blanked = source_files(root), {}
    secrets = solution_lines(root, files)
    for path in files:
        src, dst = os.path.join(root, path), os.path.join(out, path)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if path.endswith(".py"):
            text = open(src, encoding="utf-8").read()
            n = len(find_regions(text, path))
            with open(dst, "w", encoding="utf-8") as f:
                f.write(blank(text, path) if n else text)
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
    args = parser.parse_args(argv)
    blanked = make_copy(os.path.abspath(args.out))
    print(f"student copy in {args.out}: {sum(blanked.values())} solution regions blanked in "
          f"{', '.join(f'{p} ({n})' for p, n in blanked.items())}; no solution line left in it")


if __name__ == "__main__":
    main()
