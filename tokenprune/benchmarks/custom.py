"""``custom``: your own data as a benchmark: one table with an image, a question and an answer per row,
scored by one of the built-in scorers.

The table is a .jsonl/.json/.csv/.parquet/.arrow file or a folder (``save_to_disk`` or the hub layout);
images are ``datasets`` Image features or file paths relative to the data file (or folder). Options and
errors: docs/benchmarks.md, "Your own data".
"""
from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..params import Param
from ._data import BenchmarkDataError, load_table, peek_columns
from ._dataset import DatasetBenchmark
from ._prompts import OPTION_LETTER, SHORT_ANSWER, lettered
from .base import Sample
from .scoring.aggregate import accuracy_with_breakdowns, percent
from .scoring.choice import extract_mcq_answer
from .scoring.ocr import ocrbench_hit
from .scoring.vqa import exact_match, vqa_accuracy
from .scoring.yesno import binary_metrics, mme_label_lmms

SCORERS = ("exact", "vqa", "yes_no", "choice", "ocr")
SUFFIXES = {"exact": SHORT_ANSWER, "vqa": SHORT_ANSWER, "yes_no": SHORT_ANSWER, "choice": OPTION_LETTER, "ocr": ""}
GENERATION = {"ocr": 128}  # max_new_tokens per scorer; 16 otherwise
VQA_MIN_ANSWERS = 4  # leave-one-out over n answers: below 4, even an answer all annotators gave scores < 1
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".arrow")
OPTION_LINE = r"^\s*\(?([A-Z])[.):]\s"  # "A. cat", "(B) dog", "C) x", "D: y"


class Custom(DatasetBenchmark):
    """Your own table of image, question and answer, scored by exact match, VQA accuracy, yes/no,
    multiple choice or OCR substring match."""

    name = "custom"
    protocols = ("custom",)
    params = {
        "path": Param(None, "your data: a .jsonl/.json/.csv/.parquet/.arrow file, a save_to_disk folder or a "
                            "folder in the hub layout (required)", str, nullable=True),
        "image_column": Param("image", "column holding the image: an Image feature or a path relative to the "
                                       "data file", str),
        "question_column": Param("question", "column holding the question", str),
        "answer_column": Param("answer", "column holding the answer (a list of answers for vqa)", str),
        "scorer": Param("exact", "how an answer is scored", str, choices=SCORERS),
        "options_column": Param(None, "choice: column holding the option texts (a list, or a JSON list in "
                                      "CSV); without it the question carries lettered options", str, nullable=True),
        "id_column": Param(None, "column naming each row (unique); default: the row number", str, nullable=True),
        "category_column": Param(None, "column whose values get their own accuracy (category/<value>)",
                                 str, nullable=True),
        "split": Param(None, "split of a folder (default: its only split)", str, nullable=True),
        "config": Param(None, "configuration of a hub-layout folder", str, nullable=True),
        "prompt_suffix": Param(None, "text after each question (default: the scorer's instruction, see "
                                     "docs/benchmarks.md)", str, nullable=True),
    }

    def __init__(self, **options):
        super().__init__(**options)
        cfg = self.cfg
        if cfg.path is None:
            raise ConfigError("benchmark 'custom': option 'path' is required: your data file or folder")
        self.id_field = cfg.id_column
        self.max_new_tokens = GENERATION.get(cfg.scorer, type(self).max_new_tokens)
        self.suffix = SUFFIXES[cfg.scorer] if cfg.prompt_suffix is None else cfg.prompt_suffix
        self._check_path()
        self._columns = self._peek_columns()  # kept for table(): the file is read for its columns once
        if self._columns is not None:  # else checked when the data loads
            self._require(self._columns)

    # --- where the data is ---------------------------------------------------------
    @property
    def path(self) -> Path:
        return Path(self.cfg.path).expanduser()

    def _check_path(self):
        path = self.path
        if not path.exists():
            raise ConfigError(f"benchmark 'custom': path {self.cfg.path!r} does not exist "
                              f"(resolved: {str(path.resolve())!r})")
        if path.is_file() and path.suffix.lower() not in FILE_SUFFIXES:
            raise ConfigError(f"benchmark 'custom': path {self.cfg.path!r}: a data file must end in one of "
                              f"{', '.join(FILE_SUFFIXES)}, or be a folder")

    def _peek_columns(self) -> list[str] | None:
        """The data's columns, read without loading it (when the format allows)."""
        try:
            return peek_columns(self.name, self.path, self.cfg.config, self.cfg.split)
        except BenchmarkDataError:
            raise
        except Exception as exc:  # noqa: BLE001 - a file its format's reader refuses
            why = f"{type(exc).__name__}: {exc}"
            raise ConfigError(f"benchmark 'custom': cannot read {str(self.path)!r}: {why}") from None

    def columns_used(self) -> dict[str, str]:
        """{option: column} of every column the options name."""
        names = ("image_column", "question_column", "answer_column", "options_column", "id_column",
                 "category_column")
        return {name: self.cfg[name] for name in names if self.cfg[name] is not None}

    def _require(self, columns: list[str]):
        for option, column in self.columns_used().items():
            if column not in columns:
                raise ConfigError(f"benchmark 'custom': {option} {column!r} is not a column of {str(self.path)!r} "
                                  f"(its columns: {', '.join(columns) or 'none'})")

    def location(self):
        return str(self.path), self.cfg.config, self.cfg.split, None

    def table(self):
        if self._table is None:
            options = {}
            if self.path.suffix.lower() == ".csv":  # read as written: "007" stays "007", "2" is not 2.0
                import datasets

                options["features"] = datasets.Features({c: datasets.Value("string") for c in self._columns})
            table = load_table(self.name, *self.location(), **options)
            if self._columns is None:  # columns peeked in __init__ were checked there
                self._require(table.column_names)
            if self.cfg.id_column:
                _check_unique(self.cfg.id_column, [str(v) for v in table[self.cfg.id_column]], self.path)
            self._table = table
        return self._table

    def source(self) -> dict[str, Any]:
        return {**super().source(), "scorer": self.cfg.scorer, "prompt_suffix": self.suffix,
                "columns": self.columns_used()}

    # --- samples -----------------------------------------------------------------------
    def build_sample(self, row, check):
        cfg = self.cfg
        question = _scalar_text(check, cfg.question_column).strip()
        meta: dict[str, Any] = {}
        if cfg.category_column:
            meta["category"] = _scalar_text(check, cfg.category_column, optional=True)
        if cfg.scorer == "choice":
            question, references, meta["letters"] = self._choice(check, question)
        elif cfg.scorer == "yes_no":
            references = _yes_no(check, cfg.answer_column)
        else:
            references = _texts(check, cfg.answer_column)
            if cfg.scorer == "vqa" and len(references) < VQA_MIN_ANSWERS:
                check.fail(cfg.answer_column, f"holds {len(references)} answer(s); the vqa scorer needs the "
                                              f"annotators' answers (at least {VQA_MIN_ANSWERS}: an answer scores "
                                              "min(1, others who gave it / 3) with each one left out in turn); "
                                              "use scorer: exact for one answer")
        return Sample(id=self.sample_id(check), prompt=question + self.suffix, references=references,
                      images=[check.image(cfg.image_column)], meta=meta)

    def _choice(self, check, question: str) -> tuple[str, str, str]:
        """(question with its options, the answer's letter, the options' letters)."""
        column = self.cfg.options_column
        if column:
            options = _texts(check, column)
            if len(options) < 2 or len(options) > 26:
                check.fail(column, f"should hold 2 to 26 options, got {len(options)}")
            letters = string.ascii_uppercase[:len(options)]
            question = f"{question}\n{lettered(options)}"
        else:
            letters = "".join(dict.fromkeys(re.findall(OPTION_LINE, question, flags=re.MULTILINE)))
            options = []
            if len(letters) < 2:
                check.fail(self.cfg.question_column, "has no lettered options (lines such as 'A. cat'); give "
                                                     "them in the question or name an options_column")
        answer = _scalar_text(check, self.cfg.answer_column).strip()
        if len(answer) == 1 and answer.upper() in letters:
            return question, answer.upper(), letters
        if answer in options:
            return question, letters[options.index(answer)], letters
        check.fail(self.cfg.answer_column, f"= {answer!r} should be one of the letters {', '.join(letters)}"
                                           + (" or the text of an option" if options else ""))

    # --- scores ---------------------------------------------------------------------------
    def score(self, sample, prediction):
        scorer, refs = self.cfg.scorer, sample.references
        if scorer == "exact":
            return {"correct": float(any(exact_match(prediction.strip(), ref) for ref in refs))}
        if scorer == "vqa":
            return {"correct": vqa_accuracy(prediction, refs)}
        if scorer == "ocr":
            return {"correct": float(ocrbench_hit(prediction, refs, dataset=""))}
        if scorer == "yes_no":
            label = mme_label_lmms(prediction)
            return {"pred": label, "gt": refs, "correct": float(label == refs)}
        letter = extract_mcq_answer(prediction, list(sample.meta["letters"]))
        return {"pred": letter, "correct": float(letter == refs)}

    def aggregate(self, records):
        out = accuracy_with_breakdowns(records, "category")
        if self.cfg.scorer == "yes_no" and records:
            pairs = [(r["score"]["pred"], r["score"]["gt"]) for r in records]
            out.update({k: 100.0 * v for k, v in binary_metrics(pairs).items() if k != "accuracy"})
            out["yes_ratio"] = percent(float(p == "yes") for p, _ in pairs)  # of the predictions
        return out


# --- reading fields --------------------------------------------------------------------

def _scalar_text(check, column: str, *, optional: bool = False) -> str | None:
    """A text field; a number (a parquet or JSON column of numbers) as its text."""
    value = check.get(column, (str, int, float), optional=optional)
    if isinstance(value, bool):
        check.fail(column, f"should be text, got {value!r}")
    return None if value is None else str(value)


def _list(check, column: str) -> list[str]:
    """A list of texts: a list, a string holding a JSON list (how CSV carries one), or one text."""
    value = check.get(column, (str, int, float, list, tuple))
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            check.fail(column, f"starts like a JSON list but is not one: {value!r:.80}")
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in items):
        check.fail(column, f"should be a text or a non-empty list of texts, got {value!r:.80}")
    return [str(v) for v in items]


def _texts(check, column: str) -> list[str]:
    return [text.strip() for text in _list(check, column)]


def _yes_no(check, column: str) -> str:
    value = check.get(column, (str, bool))
    answer = ("yes" if value else "no") if isinstance(value, bool) else value.strip().lower()
    if answer not in ("yes", "no"):
        check.fail(column, f"should be 'yes' or 'no' (or a boolean) for the yes_no scorer, got {value!r}")
    return answer


def _check_unique(option_column: str, ids: list[str], path: Path):
    seen: dict[str, int] = {}
    for index, value in enumerate(ids):
        if value in seen:
            raise ConfigError(f"benchmark 'custom': id_column {option_column!r} of {str(path)!r} repeats "
                              f"{value!r} (rows {seen[value]} and {index}); ids must be unique, or leave "
                              "id_column out to number the rows")
        seen[value] = index
