"""The classroom: solution regions, the student copy and the graders (classroom/).

On the solution every grader scores full points; on a generated student copy each assignment scores zero,
no line that only a solution holds is left, and what does not depend on the blanked code still runs.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "classroom"))

import grade  # noqa: E402
import make_student_copy  # noqa: E402
import regions  # noqa: E402

SOURCE = '''def f(x):
    """doc"""
    # BEGIN SOLUTION demo: return twice x
    y = 2 * x
    return y
    # END SOLUTION demo


def g():
    return 1
'''


def test_a_region_is_found_and_blanked_to_a_stub_with_its_hint():
    (r,) = regions.find_regions(SOURCE, "demo.py")
    assert (r.name, r.hint, r.start, r.end, r.body) == ("demo", "return twice x", 2, 5, ("    y = 2 * x", "    return y"))
    blanked = regions.blank(SOURCE, "demo.py")
    assert "2 * x" not in blanked and "def g():\n    return 1" in blanked
    space: dict = {}
    exec(blanked, space)  # noqa: S102 - the blanked module still defines everything
    assert space["g"]() == 1
    with pytest.raises(NotImplementedError, match="demo: return twice x"):
        space["f"](3)


@pytest.mark.parametrize("text, error", [
    ("    # BEGIN SOLUTION a: hint\n    x = 1\n", "no '# END SOLUTION a'"),
    ("    # BEGIN SOLUTION a: hint\n    x = 1\n  # END SOLUTION a\n", "no '# END SOLUTION a'"),  # other indentation
    ("    # BEGIN SOLUTION a: h\n    # BEGIN SOLUTION b: h\n    # END SOLUTION b\n    # END SOLUTION a\n", "a marker inside"),
    ("    # BEGIN SOLUTION a: hint\n\n    # END SOLUTION a\n", "is empty"),
    ("    x = 1\n    # END SOLUTION a\n", "demo.py:2: "),
    ("    # BEGIN SOLUTION a\n    x = 1\n    # END SOLUTION a\n", "malformed"),  # no hint
])
def test_a_malformed_region_is_an_error_naming_the_file_and_line(text, error):
    with pytest.raises(ValueError, match=error):
        regions.find_regions(text, "demo.py")


def test_every_assignment_has_a_statement_a_grader_and_solution_regions():
    statements = {os.path.basename(p)[3:-3].replace("_", "-")
                  for p in glob.glob(os.path.join(ROOT, "classroom", "assignments", "[0-9][0-9]_*.md"))}
    graders = set(grade.assignments(ROOT))
    marked = {r.name for p in glob.glob(os.path.join(ROOT, "*.py"))
              for r in regions.find_regions(open(p, encoding="utf-8").read(), p)}
    assert len(graders) >= 6 and statements == graders == marked


@pytest.fixture(scope="module")
def student_copy(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("student") / "tiny-grpo")
    blanked = make_student_copy.make_copy(out, ROOT)
    return out, blanked


def test_every_grader_scores_full_points_on_the_solution():
    parts = grade.grade(ROOT)
    assert parts and all(p["passed"] for p in parts), [p["test"] for p in parts if not p["passed"]]
    assert set(grade.scores(parts)) == set(grade.assignments(ROOT))


def test_on_the_student_copy_every_assignment_scores_zero(student_copy):
    out, _ = student_copy
    got = grade.scores(grade.grade(out))
    assert set(got) == set(grade.assignments(ROOT)) and all(points == 0 and total > 0 for points, total in got.values())


def test_the_student_copy_holds_no_solution_line_and_no_history(student_copy):
    out, blanked = student_copy
    secrets = make_student_copy.solution_lines(ROOT, make_student_copy.source_files(ROOT))
    assert len(secrets) > 20 and make_student_copy.leaked(out, secrets) == []
    assert not os.path.exists(os.path.join(out, ".git")) and sum(blanked.values()) >= 6
    assert not any(regions.find_regions(open(os.path.join(out, p), encoding="utf-8").read(), p) for p in blanked)


def test_the_student_copy_imports_and_runs_what_does_not_use_the_blanked_code(student_copy):
    out, _ = student_copy
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = lambda *args: subprocess.run([sys.executable, *args], cwd=out, env=env, capture_output=True, text=True)
    imports = run("-c", "import train, sft, rollouts, ppo, optim, checkpoint, memory, config, sample, bench, explain, "
                        "tasks, word_problems, model, grpo, rewards")
    assert imports.returncode == 0, imports.stderr
    assert run("train.py", "--help").returncode == 0
    model_tests = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_model.py")
    assert model_tests.returncode == 0, model_tests.stdout[-2000:]
    assert "NotImplementedError" in run("-c", "import grpo; grpo.pass_at_k(5, 2, 1)").stderr


def test_the_copy_refuses_an_existing_folder(tmp_path):
    with pytest.raises(SystemExit, match="exists"):
        make_student_copy.make_copy(str(tmp_path), ROOT)
