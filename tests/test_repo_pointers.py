"""Docs, code and comments point only at things a reader of this repository can open.

Method details live in docs/methods/; a pointer into a reference folder next to the checkout, or to a
numbered issue of a tracker the reader cannot see, is a dead end. Links to a public project's own
pages (``github.com/<owner>/<repo>/issues/<n>``) stay allowed. tests/data is not text we wrote.
"""
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile(r"(?<![\w-])shared[/]|\bissues?\s*#?\s*\d", re.IGNORECASE)
SKIPPED = ("tests/data/",)


def tracked_text_files():
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing tells tracked files apart")
    for name in listed.decode().split("\0"):
        path = ROOT / name
        if not name or name.startswith(SKIPPED) or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:  # images, fixtures
            continue
        yield name, data.decode("utf-8", errors="replace")


# the offending examples are glued together at run time, so that this file does not match itself
@pytest.mark.parametrize("text", ["see ../shared" + "/methods/dart.md", "Spec: shared" + "/parity/FORMAT.md",
                                  "the quality bar of issue" + " 6", "see FastV Issue" + " #14",
                                  "issues" + " 3 and 4"])
def test_pattern_catches_outside_pointers(text):
    assert OUTSIDE.search(text)


@pytest.mark.parametrize("text", ["docs/methods/fastv.md", "github.com/pkunlp-icler/FastV/issues/14",
                                  "a shared cache", "not_shared/x", "an issue with 2 threads"])
def test_pattern_leaves_in_repo_pointers_alone(text):
    assert not OUTSIDE.search(text)


def test_no_tracked_file_points_outside_the_repository():
    offenders = [f"{name}:{number}: {line.strip()}"
                 for name, text in tracked_text_files()
                 for number, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert not offenders, "point to docs/methods/ (or another in-repo doc) instead:\n" + "\n".join(offenders)
