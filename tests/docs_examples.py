"""The plugin modules that docs/*.md show, run as written: the first Python block after a heading,
executed as a module and registered with the plugin manager for the duration of a test."""
from __future__ import annotations

import contextlib
import re
import types
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


@contextlib.contextmanager
def plugin_from_docs(page: str, heading: str):
    """The module of ``page``'s first ```python block after ``heading``, registered as a plugin."""
    from tokenprune import registry
    from tokenprune.plugins import pm

    path = DOCS / page
    found = re.search(rf"{re.escape(heading)}.*?```python\n(.*?)```", path.read_text(), re.S)
    assert found, f"{path}: no python block after {heading!r}"
    module = types.ModuleType(f"docs_example_{path.stem}")
    exec(compile(found.group(1), str(path), "exec"), module.__dict__)
    pm.register(module, name=f"docs-example-{path.stem}")
    registry.clear_caches()
    try:
        yield module
    finally:
        pm.unregister(module)
        registry.clear_caches()
