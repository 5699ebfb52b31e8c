"""Grade the assignments: run their graders and print a score table.

    python classroom/grade.py                       # every assignment, in this repository
    python classroom/grade.py advantages gae        # some of them
    python classroom/grade.py --repo ../student     # a student's copy (made by classroom/make_student_copy.py)

Each assignment's grader is classroom/graders/test_NN_<name>.py: pytest tests worth points (all or nothing,
`@pytest.mark.points(n)`), including cases its statement (classroom/assignments/NN_<name>.md) does not spell out.
The project's own test command, `python -m pytest`, does not run them.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def assignments(repo: str) -> dict[str, str]:
    """name -> its grader file, in the order of their numbers."""
    files = sorted(glob.glob(os.path.join(repo, "classroom", "graders", "test_[0-9][0-9]_*.py")))
    return {os.path.basename(f)[8:-3].replace("_", "-"): f for f in files}


def grade(repo: str, names: list[str] | None = None) -> list[dict]:
    """The graded parts of the named assignments (all if None): dicts of assignment, part, points, passed."""
    known = assignments(repo)
    unknown = [n for n in names or [] if n not in known]
    if unknown:
        raise SystemExit(f"error: no assignment {', '.join(unknown)}; there are: {', '.join(known)}")
    files = [known[n] for n in (names or known)]
    with tempfile.TemporaryDirectory() as tmp:
        results = os.path.join(tmp, "results.json")
        env = {**os.environ, "CLASSROOM_RESULTS": results, "OMP_NUM_THREADS": "1"}
        ran = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                              *files], cwd=repo, env=env, capture_output=True, text=True)
        parts = json.load(open(results)) if os.path.exists(results) else []
        if not parts:  # pytest could not run a single graded test: a missing package, a syntax error, ...
            raise SystemExit(f"error: no graded test ran in {repo} (is it a copy of this repository, and are its "
                             f"requirements installed in {sys.executable}?); pytest said:\n"
                             + "\n".join((ran.stdout + ran.stderr).strip().splitlines()[-15:]))
        return parts


def scores(parts: list[dict]) -> dict[str, tuple[int, int]]:
    """assignment -> (points earned, points possible)."""
    out: dict[str, tuple[int, int]] = {}
    for p in parts:
        got, total = out.get(p["assignment"], (0, 0))
        out[p["assignment"]] = (got + p["points"] * p["passed"], total + p["points"])
    return out


def table(parts: list[dict]) -> str:
    lines = [f"{'assignment':<13} {'part':<72} {'points':>7}"]
    for p in parts:
        lines.append(f"{p['assignment']:<13} {p['part'][:72]:<72} {p['points'] * p['passed']:>3} / {p['points']}")
    lines.append("")
    for name, (got, total) in scores(parts).items():
        lines.append(f"{name:<13} {'total':<72} {got:>3} / {total}")
    got, total = map(sum, zip(*scores(parts).values())) if parts else (0, 0)
    lines.append(f"{'all':<13} {'':<72} {got:>3} / {total}")
    return "\n".join(lines)


def main(argv=None) -> dict[str, tuple[int, int]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="assignments to grade (default: all)")
    parser.add_argument("--repo", default=os.path.dirname(HERE), help="the repository or student copy to grade")
    args = parser.parse_args(argv)
    parts = grade(os.path.abspath(args.repo), args.names)
    print(table(parts))
    return scores(parts)


if __name__ == "__main__":
    main()
