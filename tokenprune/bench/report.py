"""Writing benchmark results as JSON + a markdown table, labelled with where they were measured."""
from __future__ import annotations

import json
import platform
from pathlib import Path

import torch

from .. import timing


def environment(device: str) -> dict:
    import transformers

    from .. import __version__

    env = {"device": device, "torch": torch.__version__, "transformers": transformers.__version__,
           "tokenprune": __version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
           "cpu": platform.processor() or platform.machine()}
    if (average := timing.load_average()) is not None:  # other work on the machine skews CPU timings: keep the evidence
        env["load_average_1min"] = average
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return "—" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write(out_dir, stem: str, payload: dict, table_md: str) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / f"{stem}.json"
    md_path = out / f"{stem}.md"
    json_path.write_text(json.dumps(payload, indent=2, default=str))
    env = payload["environment"]
    label = ", ".join(f"{k} {v}" for k, v in env.items())
    md_path.write_text(f"# {stem}\n\nMeasured on: {label}\n\n{table_md}")
    return json_path, md_path
