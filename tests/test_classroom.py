"""The classroom: solution regions, the student copy and the graders (classroom/).

On the solution every grader scores full points; on a generated student copy each assignment scores zero,
no line that only a solution holds is left, and what does not depend on the blanked code still runs.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from xml.etree import ElementTree

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "classroom"))

import grade  # noqa: E402
import make_student_copy  # noqa: E402
import regions  # noqa: E402

BEGIN, END = "# BEGIN " + "SOLUTION", "# END " + "SOLUTION"  # split, so no line of this file is a marker
SOURCE = f'''def f(x):
    """doc"""
    {BEGIN} demo: return twice x
    y = 2 * x
    return y
    {END} demo


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
    assert len(graders) >= 8 and statements == graders == marked


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


def project_tests(folder: str, files: list[str], tmp_path) -> tuple[int, dict[str, str]]:
    """Run some of the project's tests in a folder: (tests passed, {failed test: its error message})."""
    report = str(tmp_path / "report.xml")
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-o", "addopts=-p no:cacheprovider", f"--junit-xml={report}",
                    *files], cwd=folder, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    cases = list(ElementTree.parse(report).getroot().iter("testcase"))
    failed = {c.get("name"): (c.find("failure") if c.find("failure") is not None else c.find("error")).get("message")
              for c in cases if c.find("failure") is not None or c.find("error") is not None}
    return sum(c.find("skipped") is None for c in cases) - len(failed), failed


PROJECT_TESTS = ["tests/test_model.py", "tests/test_rewards.py", "tests/test_grpo.py"]  # they touch every stub


def test_the_student_copy_imports_and_runs_what_does_not_use_the_blanked_code(student_copy, tmp_path):
    out, _ = student_copy
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = lambda *args: subprocess.run([sys.executable, *args], cwd=out, env=env, capture_output=True, text=True)
    imports = run("-c", "import train, sft, rollouts, ppo, optim, checkpoint, memory, config, sample, bench, explain, "
                        "tasks, word_problems, model, grpo, rewards, rejection, reward_model")
    assert imports.returncode == 0, imports.stderr
    assert run("train.py", "--help").returncode == 0
    assert "NotImplementedError" in run("-c", "import grpo; grpo.pass_at_k(5, 2, 1)").stderr
    # the project's tests: every one that fails, fails on a stub, and many do not touch one
    passed, failed = project_tests(out, PROJECT_TESTS, tmp_path)
    assert passed > 100 and len(failed) > 20
    assert all(m.startswith("NotImplementedError") and "(see classroom/assignments/)" in m
               for m in failed.values()), {k: v for k, v in failed.items() if not v.startswith("NotImplementedError")}


def test_the_student_copy_leaves_out_the_tests_that_re_derive_the_solutions(student_copy):
    out, _ = student_copy
    assert os.path.exists(os.path.join(ROOT, "tests", "test_updates.py"))
    assert make_student_copy.left_out(ROOT, "tests/test_updates.py")
    assert not os.path.exists(os.path.join(out, "tests", "test_updates.py"))
    assert os.path.exists(os.path.join(out, "tests", "test_grpo.py"))


def test_a_copy_of_one_assignment_blanks_only_its_regions(tmp_path):
    out = str(tmp_path / "hw1")
    blanked = make_student_copy.make_copy(out, ROOT, only=["kv-cache"])
    assert blanked == {"model.py": 3}
    got = grade.scores(grade.grade(out))
    assert got.pop("kv-cache")[0] == 0 and all(points == total for points, total in got.values()), got
    secrets = make_student_copy.solution_lines(ROOT, make_student_copy.source_files(ROOT), {"kv-cache"})
    assert secrets and make_student_copy.leaked(out, secrets) == []
    passed, failed = project_tests(out, ["tests/test_grpo.py", "tests/test_model.py"], tmp_path)
    assert failed and all("kv-cache:" in m for m in failed.values()) and passed > 50
    with pytest.raises(SystemExit, match="no such assignment; there are: kv-cache, rewards"):
        make_student_copy.make_copy(str(tmp_path / "x"), ROOT, only=["kv-cache", "attention"])


def test_grading_a_folder_where_no_grader_can_run_is_an_error_with_pytests_words(tmp_path):
    graders = tmp_path / "classroom" / "graders"
    graders.mkdir(parents=True)
    (graders / "conftest.py").write_text(open(os.path.join(ROOT, "classroom", "graders", "conftest.py")).read())
    (graders / "test_01_demo.py").write_text("import no_such_module\n\n\ndef test_x():\n    pass\n")
    with pytest.raises(SystemExit, match="(?s)no graded test ran in .*No module named 'no_such_module'"):
        grade.grade(str(tmp_path))


def test_the_copy_refuses_an_existing_folder(tmp_path):
    with pytest.raises(SystemExit, match="exists"):
        make_student_copy.make_copy(str(tmp_path), ROOT)
