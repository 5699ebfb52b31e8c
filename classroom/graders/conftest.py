"""The graders' points: `@pytest.mark.points(n)` on a test gives it n points, all or nothing.

The assignment of a test is its file's name: test_03_advantages.py -> advantages. When the environment variable
CLASSROOM_RESULTS names a file, every graded test's result is written there as JSON (classroom/grade.py reads it).
"""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)  # the project's modules, from the repository (or the student copy) that holds this file

RESULTS: list[dict] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): the points this grader test is worth")


def assignment_of(path: str) -> str:
    return re.sub(r"^test_\d+_", "", os.path.splitext(os.path.basename(path))[0]).replace("_", "-")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("points")
    if marker is None or (report.when != "call" and report.passed):
        return  # only the call phase decides, unless setup failed
    doc = (item.function.__doc__ or item.name).strip().splitlines()[0]
    RESULTS.append(dict(assignment=assignment_of(str(item.fspath)), part=doc, test=item.nodeid,
                        points=marker.args[0], passed=report.passed))


def pytest_sessionfinish(session, exitstatus):
    path = os.environ.get("CLASSROOM_RESULTS")
    if path:
        with open(path, "w") as f:
            json.dump(RESULTS, f, indent=1)
