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


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set:
    return {github_anchor(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}


def test_github_anchor_matches_githubs_rule():
    assert github_anchor(" Write your own benchmark") == "write-your-own-benchmark"
    assert github_anchor(" Your own data: `custom`") == "your-own-data-custom"


def test_every_relative_link_in_the_docs_resolves():
    """README and docs links name files (and headings) that exist in the checkout."""
    broken = []
    for name, text in tracked_text_files():
        if not name.endswith(".md"):
            continue
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):  # web links, same-page anchors
                continue
            file, _, anchor = target.partition("#")
            path = (ROOT / name).parent / file
            if not path.exists():
                broken.append(f"{name}: {target} (no such file)")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
