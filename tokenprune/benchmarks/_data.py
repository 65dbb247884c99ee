"""Loading benchmark tables with ``datasets``, from the hub or a local copy,
and checking rows with errors that name the benchmark, the field and the row."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import TokenpruneError

# Single files load with the builder their suffix names.
_BUILDERS = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv", ".arrow": "arrow"}


class BenchmarkDataError(TokenpruneError, ValueError):
    """A dataset that cannot be loaded, or a row that lacks a field or has a bad value."""


def load_table(benchmark: str, dataset: str, config: str | None, split: str | None, revision: str | None,
               **file_options):
    """A ``datasets.Dataset`` from a hub id, a local folder laid out like the
    hub repository (or written by ``save_to_disk``), or one local
    parquet/JSON/JSONL/CSV/arrow file (which is the whole split).

    ``split`` None: a folder's only split. ``file_options`` go to the builder of a single file
    (e.g. ``features``)."""
    import datasets

    path = Path(dataset).expanduser()
    try:
        if path.is_file():
            builder = _BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise BenchmarkDataError(
                    f"benchmark {benchmark!r}: cannot read {dataset!r}; a local file must be one of "
                    f"{', '.join(sorted(_BUILDERS))}"
                )
            return datasets.load_dataset(builder, data_files=str(path), split="train", **file_options)
        if is_saved_dataset(path):
            return one_split(benchmark, dataset, datasets.load_from_disk(str(path)), split)
        # A hub id, or a local folder in the hub layout (parquet files plus a README config).
        table = datasets.load_dataset(str(path) if path.is_dir() else dataset, name=config,
                                      split=split, revision=revision)
        return one_split(benchmark, dataset, table, split)
    except BenchmarkDataError:
        raise
    except Exception as exc:
        where = f"{dataset!r}" + (f" config {config!r}" if config else "") + (f" split {split!r}" if split else "")
        hint = "" if path.exists() else " Point the benchmark's 'dataset' option at a local copy (see docs/benchmarks.md)."
        raise BenchmarkDataError(
            f"benchmark {benchmark!r}: could not load {where}: {type(exc).__name__}: {exc}.{hint}"
        ) from exc


def is_saved_dataset(path: Path) -> bool:
    """A folder written by ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return path.is_dir() and ((path / "state.json").exists() or (path / "dataset_dict.json").exists())


def one_split(benchmark: str, dataset: str, table, split: str | None):
    """``split`` of a DatasetDict (its only split when ``split`` is None); a Dataset as it is."""
    import datasets

    if not isinstance(table, datasets.DatasetDict):
        return table
    if split is None and len(table) == 1:
        return next(iter(table.values()))
    if split is None or split not in table:
        asked = "names no split" if split is None else f"has no split {split!r}"
        raise BenchmarkDataError(f"benchmark {benchmark!r}: {dataset!r} {asked}; it has {', '.join(table)} "
                                 "(set the 'split' option)")
    return table[split]


def peek_columns(benchmark: str, path: Path, config: str | None, split: str | None) -> list[str] | None:
    """The columns of a local copy, read without loading it: a file's header or schema, a saved dataset's
    features, a hub-layout folder's card; None when they are only known once the data is loaded."""
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_schema(path).names
        if suffix == ".csv":
            import csv

            with open(path, newline="", encoding="utf-8") as f:
                return next(csv.reader(f), [])
        if suffix in (".json", ".jsonl"):
            return _first_json_keys(path)
        return None  # .arrow: read when loaded
    if is_saved_dataset(path):
        import datasets

        return one_split(benchmark, str(path), datasets.load_from_disk(str(path)), split).column_names
    import datasets

    features = datasets.load_dataset_builder(str(path), name=config).info.features
    return list(features) if features else None


def _first_json_keys(path: Path) -> list[str] | None:
    """The keys of the first record of a JSON-lines file (or of a JSON list of records)."""
    import json

    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                break
        else:
            return []
        try:
            first = json.loads(line)
        except ValueError:  # not JSON lines: one JSON document
            f.seek(0)
            first = json.load(f)
            first = first[0] if isinstance(first, list) and first else first
    return list(first) if isinstance(first, dict) else None


def describe_source(dataset: str, config: str | None, split: str, revision: str | None, table=None) -> dict:
    """Provenance recorded with every result."""
    local = Path(dataset).expanduser().exists()
    source: dict[str, Any] = {
        "dataset": str(Path(dataset).expanduser().resolve()) if local else dataset,
        "local": local,
        "config": config,
        "split": split,
        "revision": revision,
    }
    if table is not None:
        source["rows"] = len(table)
        source["fingerprint"] = getattr(table, "_fingerprint", None)
    return source


class RowChecker:
    """Checks fields of one row; errors name the benchmark, the row and the field."""

    def __init__(self, benchmark: str, row: dict, index: int, row_id: Any = None, base: Path | None = None):
        self.benchmark, self.row, self.index, self.row_id = benchmark, row, index, row_id
        self.base = base  # folder that relative image paths of a local copy start from

    def fail(self, field: str, problem: str):
        which = f"row {self.index}" + (f" (id {self.row_id!r})" if self.row_id is not None else "")
        raise BenchmarkDataError(f"benchmark {self.benchmark!r}: {which}: field {field!r} {problem}")

    def get(self, field: str, kind: type | tuple[type, ...] | None = None, *, optional: bool = False,
            nullable: bool = False):
        """The field's value; ``optional``: the column may be absent or the value None;
        ``nullable``: the column must exist, its value may be None."""
        if field not in self.row:
            if optional:
                return None
            # every row of a table has every column: a missing field is a missing column
            self.fail(field, f"is missing: the data has no column {field!r} "
                             f"(its columns: {', '.join(sorted(self.row)) or 'none'})")
        value = self.row[field]
        if value is None:
            if optional or nullable:
                return None
            self.fail(field, "is empty (None)")
        if kind is not None and not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            self.fail(field, f"should be {names}, got {type(value).__name__} {value!r:.80}")
        return value

    def text(self, field: str, *, optional: bool = False, nullable: bool = False) -> str | None:
        return self.get(field, str, optional=optional, nullable=nullable)

    def texts(self, field: str, *, min_len: int = 1) -> list[str]:
        value = self.get(field, (list, tuple))
        if len(value) < min_len or not all(isinstance(v, str) for v in value):
            self.fail(field, f"should be a list of at least {min_len} strings, got {value!r:.120}")
        return list(value)

    def choice(self, field: str, allowed: tuple, *, transform=lambda v: v):
        value = self.get(field)
        if transform(value) not in allowed:
            self.fail(field, f"should be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return transform(value)

    def image(self, field: str = "image"):
        """An RGB PIL image from a decoded image, or (local JSON copies) a file
        path or {"path"/"bytes"} record, relative paths starting at the data file."""
        value = self.get(field)
        if hasattr(value, "convert"):
            return value.convert("RGB")
        from PIL import Image

        if isinstance(value, dict) and value.get("bytes"):
            import io

            return Image.open(io.BytesIO(value["bytes"])).convert("RGB")
        path = value.get("path") if isinstance(value, dict) else value
        if isinstance(path, str) and path:
            full = Path(path) if self.base is None else self.base / path
            try:
                found = full.is_file()
            except OSError:  # e.g. a name too long to be a path: not a file either
                found = False
            if not found:
                self.fail(field, f"names {str(full)!r:.200}, which is not a file")
            return Image.open(full).convert("RGB")
        self.fail(field, f"should be an image or an image path, got {type(value).__name__}")
