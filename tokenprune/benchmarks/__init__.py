"""Benchmarks, one module per benchmark; registered through ``register_benchmarks``.

Scorers live in ``scoring/`` (pure functions); ``_dataset`` holds the shared
loading, sub-sampling and provenance machinery.
"""
from ..hookspecs import hookimpl
from .base import Benchmark, Sample

__all__ = ["Benchmark", "Sample", "BUILTIN"]

# (module, class) of every paper benchmark; imported when registered.
BUILTIN = (
    ("gqa", "GQA"),
    ("mmbench", "MMBench"),
    ("mme", "MME"),
    ("pope", "POPE"),
    ("scienceqa", "ScienceQAImg"),
    ("textvqa", "TextVQA"),
    ("ocrbench", "OCRBench"),
    ("seedbench", "SEEDBench"),
    ("okvqa", "OKVQA"),
    ("egoschema", "EgoSchema"),
    ("nextqa", "NExTQA"),
    ("videomme", "VideoMME"),
    ("egoplan", "EgoPlan"),
)


@hookimpl
def register_benchmarks(register):
    import importlib

    for module, cls in BUILTIN:
        register(getattr(importlib.import_module(f"{__name__}.{module}"), cls))
    from .custom import Custom  # your own data
    from .shapes import Shapes  # synthetic and offline: the benchmark of the bundled tiny model

    register(Shapes)
    register(Custom)
