"""README command 1 (`tokenprune run experiments/sweep.yaml`) leaves a clean clone clean: results and report
go under runs/ (ignored), never over tracked files such as the committed reports/sweep/."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# the installed tokenprune (this checkout's), run from the clone's root as the README's command is
RUN = "import sys; sys.path.pop(0); from tokenprune.cli import main; sys.exit(main(sys.argv[1:]))"


def test_readme_command_one_leaves_git_status_clean(tmp_path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    # the default sweep's whole grid, one sample per cell (the limit changes the cells, not where files go)
    # one torch thread: the tiny model gains nothing from more, and shared cores make them crawl
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", RUN, "run", "experiments/sweep.yaml", "--limit", "1"],
                          cwd=clone, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (clone / "runs" / "sweep" / "report" / "report.md").is_file()
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=clone,
                            capture_output=True, text=True, check=True).stdout
    assert status == "", status
