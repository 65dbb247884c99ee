"""Check an executor against `local`: the same small grid, run by both, must leave the same run directory.

Usage in any test module (docs/executors.md says what is compared and what is not)::

    from tokenprune.testing.executors import check_executor

    def test_my_executor(tmp_path):
        check_executor("my_executor", tmp_path, options={"workers": 2})

``check_executor`` runs `tokenprune run` on a grid of two model groups (the bundled model
``zoo:shapes-llava-144`` under two labels), two strategies, a benchmark that works and one whose
data breaks at its second row (failure isolation), with a latency subset; once with `local`, once
with the executor. Then it cuts one finished cell back to a partial one (its first record and a torn
line) in both directories and resumes both. After each step the stores must agree; an
AssertionError lists every difference.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import yaml

CHECKPOINT = "zoo:shapes-llava-144"

# What two runs of the same grid may differ in: timings, and the state of the host they ran on.
RECORD_IGNORED = ("timings",)  # samples.jsonl: wall times of each sample's generate call
LATENCY_IGNORED = ("timings", "span_s", "other_cpu_s")  # latency.jsonl: the times and the host load
TIMING_STATS = ("_median", "_p25", "_p75", "_p90")  # metrics.json latency / latency_accuracy_pass numbers
HOST_STATE = ("cpu_threads", "cpu_count", "load_average_1min", "other_cpu_load", "load_measure",
              "load_threshold", "timed_under_load")  # metrics.json environment, latency_accuracy_pass
MEMORY_IGNORED = ("peak_memory_bytes",)  # metrics.json memory: the process's peak, wherever it ran
RUN_INVOCATION = ("grid", "grid_file", "cli")  # run.json specs: how the run was invoked (names the executor)
CELL_FILES = ("spec.json", "samples.jsonl", "latency.jsonl", "metrics.json", "error.json", "DONE")


def check_grid(data_dir: Path, checkpoint: str = CHECKPOINT) -> dict:
    """The grid both runs execute; writes the data of its failing benchmark into ``data_dir``."""
    broken = _write_broken_data(Path(data_dir))
    return {
        "name": "executor-check",
        "models": [{"label": label, "adapter": "llava", "checkpoint": checkpoint} for label in ("a", "b")],
        "strategies": ["vanilla", "random"],
        "budgets": [16],
        "benchmarks": [{"name": "shapes", "size": 12, "limit": 3},  # a small split: quick to draw
                       {"name": "custom", "path": str(broken), "scorer": "yes_no", "prompt_suffix": ""}],
        "generation": {"max_new_tokens": 3},
        "latency": {"warmup": 1, "subset": 2, "repeats": 1},
    }


def _write_broken_data(folder: Path) -> Path:
    """Two questions; the second answer is neither yes nor no, so its cells fail once the run reads it."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (96, 96), (200, 40, 40)).save(folder / "red.png")
    rows = [{"image": "red.png", "question": "is there a red shape ?", "answer": "yes"},
            {"image": "red.png", "question": "is there a circle ?", "answer": "maybe"}]
    path = folder / "broken.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def run_grid(grid: dict, out: Path, executor: dict) -> tuple[int, dict | str]:
    """`tokenprune run` of ``grid`` with ``executor`` into ``out``: its exit code and its count of cells done,
    skipped and failed (the executor's returned statuses, as the run recorded them in invocations.jsonl)."""
    from ..cli import main
    from ..runner.store import RunStore

    out = Path(out)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump({**grid, "executor": executor}))
    before = len(RunStore(out).invocations())  # a resumed run's directory holds the earlier runs' lines
    with contextlib.redirect_stdout(io.StringIO()):  # the summary table: the stores are what is compared
        code = main(["run", str(path), "--out", str(out), "--quiet", "--no-report"])
    invocations = RunStore(out).invocations()
    if len(invocations) == before:
        return code, "no invocation recorded"
    return code, {key: invocations[-1][key] for key in ("done", "skipped", "failed")}


def interrupt(run_dir: Path) -> str:
    """Turn the first finished cell that ran a strategy back into a partial one, as a kill mid-cell leaves it:
    its first record, then a torn line; no timings, metrics or DONE. Returns the cell id."""
    for cell in sorted((Path(run_dir) / "cells").iterdir()):
        spec = json.loads((cell / "spec.json").read_text())
        if (cell / "DONE").exists() and spec["strategy"] != "vanilla":
            first = (cell / "samples.jsonl").read_text().splitlines(keepends=True)[0]
            (cell / "samples.jsonl").write_text(first + '{"id": "tor')
            for name in ("DONE", "metrics.json", "latency.jsonl"):
                (cell / name).unlink(missing_ok=True)
            return cell.name
    raise AssertionError(f"{run_dir}: no finished cell to interrupt")


def check_executor(executor, tmp_path, *, options: dict | None = None, resume: bool = True,
                   checkpoint: str = CHECKPOINT) -> tuple[Path, Path]:
    """Run the check grid with `local` and with ``executor`` (a registered name, or an Executor class, which
    is registered for the check) and assert that both leave the same store, then the same after a resume.
    Returns the two run directories (local's, the executor's)."""
    tmp_path = Path(tmp_path)
    with registered(executor) as name:
        grid = check_grid(tmp_path / "data", checkpoint)
        ours, theirs = tmp_path / "local", tmp_path / f"executor-{name}"
        steps = ["a fresh run", "a resumed run"] if resume else ["a fresh run"]
        for step in steps:
            if step == "a resumed run":
                assert interrupt(ours) == interrupt(theirs)
            outcomes = run_grid(grid, ours, {"name": "local"}), run_grid(grid, theirs, {"name": name, **(options or {})})
            _assert_same(ours, theirs, name, outcomes, step)
    return ours, theirs


def _assert_same(ours: Path, theirs: Path, name: str, outcomes: tuple, when: str):
    problems = compare_stores(ours, theirs, name)
    (code, counts), (their_code, their_counts) = outcomes
    if their_counts != counts:
        problems.insert(0, f"cell statuses: {their_counts!r} under {name}, {counts!r} under local")
    if their_code != code:
        problems.insert(0, f"`tokenprune run` exited with {their_code} under {name}, {code} under local")
    if problems:
        raise AssertionError(f"executor {name!r} left another store than local after {when} "
                             f"({theirs} vs {ours}):\n  " + "\n  ".join(problems))


class registered:
    """``with registered(executor) as name``: the executor's registered name; a class that is not
    registered is registered for the duration (e.g. one defined in a test module)."""

    def __init__(self, executor):
        self.executor, self.plugin = executor, None

    def __enter__(self) -> str:
        from .. import registry
        from ..hookspecs import hookimpl
        from ..plugins import pm

        if isinstance(self.executor, str):
            registry.lookup("executors", self.executor)  # an unknown name lists the registered ones
            return self.executor
        cls = self.executor
        if registry.entries("executors").get(cls.name, None) is None:
            class Plugin:
                @staticmethod
                @hookimpl
                def register_executors(register):
                    register(cls)

            self.plugin = Plugin()
            pm.register(self.plugin, name=f"check-executor-{cls.name}")
            registry.clear_caches()
        elif registry.lookup("executors", cls.name) is not cls:
            raise AssertionError(f"another executor is registered as {cls.name!r}")
        return cls.name

    def __exit__(self, *exc):
        if self.plugin is not None:
            from .. import registry
            from ..plugins import pm

            pm.unregister(self.plugin)
            registry.clear_caches()


# --- comparing two run directories ----------------------------------------------------------------

def compare_stores(expected: Path, actual: Path, name: str = "the executor") -> list[str]:
    """Every difference between two run directories of the same grid, ignoring timings and host state
    (the *_IGNORED, TIMING_STATS and HOST_STATE names above); [] when they agree."""
    expected, actual = Path(expected), Path(actual)
    problems = []
    for entry in sorted(p.name for p in expected.iterdir()):
        if not (actual / entry).exists():
            problems.append(f"{entry}: missing under {name}")
    problems += _diff(_run_record(expected), _run_record(actual), "run.json", name)
    ours, theirs = _cell_dirs(expected), _cell_dirs(actual)
    for cell in sorted(set(ours) ^ set(theirs)):
        problems.append(f"cells/{cell}: only under {'local' if cell in ours else name}")
    for cell in sorted(set(ours) & set(theirs)):
        problems += _compare_cell(ours[cell], theirs[cell], name)
    return problems


def _cell_dirs(run_dir: Path) -> dict[str, Path]:
    cells = run_dir / "cells"
    return {p.name: p for p in cells.iterdir()} if cells.is_dir() else {}


def _run_record(run_dir: Path) -> dict | None:
    path = run_dir / "run.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    record["specs"] = [{k: v for k, v in spec.items() if k not in RUN_INVOCATION} for spec in record["specs"]]
    return record


def _compare_cell(ours: Path, theirs: Path, name: str) -> list[str]:
    where = f"cells/{ours.name}"
    if (ours / "spec.json").exists():
        spec = json.loads((ours / "spec.json").read_text())
        where += f" ({spec['model']['label']} | {spec['strategy']} | {spec['benchmark']})"
    files = {p.name for p in ours.iterdir()}, {p.name for p in theirs.iterdir()}
    problems = [f"{where}: {f} only under {'local' if f in files[0] else name}" for f in sorted(files[0] ^ files[1])]
    both = files[0] & files[1]
    if "spec.json" in both:
        problems += _diff(_json(ours / "spec.json"), _json(theirs / "spec.json"), f"{where} spec.json", name)
    if "samples.jsonl" in both:
        problems += _compare_lines(ours / "samples.jsonl", theirs / "samples.jsonl", lambda r: r["id"],
                                   RECORD_IGNORED, f"{where} samples.jsonl", name)
    if "latency.jsonl" in both:
        problems += _compare_lines(ours / "latency.jsonl", theirs / "latency.jsonl",
                                   lambda r: (r["repeat"], r["sample"]), LATENCY_IGNORED, f"{where} latency.jsonl", name)
    if "metrics.json" in both:
        problems += _diff(_metrics(ours), _metrics(theirs), f"{where} metrics.json", name)
    if "error.json" in both:
        errors = [{k: _json(d / "error.json").get(k) for k in ("type", "message")} for d in (ours, theirs)]
        problems += _diff(*errors, f"{where} error.json", name)
    return problems


def _json(path: Path):
    return json.loads(path.read_text())


def _compare_lines(ours: Path, theirs: Path, key, ignored: tuple, where: str, name: str) -> list[str]:
    """One line per key on both sides, equal apart from ``ignored`` fields (the order of lines is free)."""
    problems, sides = [], []
    for path, who in ((ours, "local"), (theirs, name)):
        lines = path.read_text().splitlines(keepends=True)
        if lines and not lines[-1].endswith("\n"):
            problems.append(f"{where}: a torn last line under {who}")
        records = [json.loads(line) for line in lines if line.endswith("\n")]
        by_key = {key(r): {k: v for k, v in r.items() if k not in ignored} for r in records}
        if len(by_key) != len(records):
            problems.append(f"{where}: {len(records) - len(by_key)} repeated line(s) under {who}")
        sides.append({json.dumps(k): v for k, v in by_key.items()})
    return problems + _diff(sides[0], sides[1], where, name)


def _metrics(cell_dir: Path) -> dict:
    """metrics.json without its timings and the state of the host."""
    metrics = _json(cell_dir / "metrics.json")
    for section in ("latency", "latency_accuracy_pass"):
        if isinstance(metrics.get(section), dict):
            metrics[section] = {k: v for k, v in metrics[section].items()
                                if not k.endswith(TIMING_STATS) and k not in HOST_STATE}
    if isinstance(metrics.get("environment"), dict):
        metrics["environment"] = {k: v for k, v in metrics["environment"].items() if k not in HOST_STATE}
    if isinstance(metrics.get("memory"), dict):
        metrics["memory"] = {k: v for k, v in metrics["memory"].items() if k not in MEMORY_IGNORED}
    return metrics


def _diff(ours, theirs, where: str, name: str) -> list[str]:
    """Differences between two JSON values, one line per differing leaf (NaN equals NaN)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out = []
        for key in sorted(set(ours) | set(theirs), key=str):
            if key not in theirs or key not in ours:
                out.append(f"{where}: {key} only under {'local' if key in ours else name}")
            else:
                out += _diff(ours[key], theirs[key], f"{where} {key}", name)
        return out
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        return [line for i, (a, b) in enumerate(zip(ours, theirs)) for line in _diff(a, b, f"{where}[{i}]", name)]
    same = ours == theirs or (isinstance(ours, float) and isinstance(theirs, float)
                              and math.isnan(ours) and math.isnan(theirs))
    return [] if same else [f"{where}: {_short(theirs)} under {name}, {_short(ours)} under local"]


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:117] + "..."

