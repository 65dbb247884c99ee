"""Install a bundled example plugin (examples/<name>) with pip the way a user would, but from a copy:
pip's setuptools build writes build/ and *.egg-info next to the sources, and the repository's
examples/ must stay as committed."""
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
BUILD_LEFTOVERS = ("build", "dist", "*.egg-info", "__pycache__", ".pytest_cache")


def install_example(name: str, workdir: Path) -> tuple[Path, Path]:
    """pip-install examples/<name> into workdir/site; returns (site, the copied sources, tests included)."""
    source = workdir / "src" / name
    shutil.copytree(EXAMPLES / name, source, ignore=shutil.ignore_patterns(*BUILD_LEFTOVERS))
    site = workdir / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
           "--target", str(site), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return site, source


def build_leftovers() -> list[Path]:
    """build/ and *.egg-info folders inside examples/ (there should be none)."""
    return sorted(p for pattern in ("build", "*.egg-info") for p in EXAMPLES.rglob(pattern) if p.is_dir())
