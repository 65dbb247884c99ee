"""MMBench-EN (dev) with CircularEval and a regex-only extractor (lmms-eval's
``mmbench_en_dev_static``: no API judge).

Rows whose ``index`` agrees modulo 1e6 are the same question with its options
rotated; a question counts as right only when every variant is right. The
letter is read by MMBench's rule-based inference, else by the regex extractor.
"""
from __future__ import annotations

import math
from collections import defaultdict

from ._dataset import DatasetBenchmark, dataset_params
from ._prompts import OPTION_LETTER
from .base import Sample
from .scoring.aggregate import percent
from .scoring.choice import extract_mcq_answer, mmbench_prefetch

CIRCULAR = 1_000_000
LETTERS = "ABCDE"
SCORED = "ABCD"  # MMBench's judge (build_choices) only looks at A-D


def _na(value) -> bool:
    """None or NaN: what pandas' isna, which lmms-eval's scorer uses, calls missing."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def shown(value) -> bool:
    """An option or hint lmms-eval puts in the prompt: not None, NaN, empty or the string "nan"."""
    return not _na(value) and value != "" and str(value) != "nan"


def scored_options(row: dict) -> dict[str, str]:
    """The options lmms-eval's scorer matches an answer against. It drops only None
    and NaN, so an option stored as the string "nan" (as the hub copy stores a
    missing one) or "" stays an option there even though the prompt leaves it out;
    an absent column reads as "nan" (process_results' default)."""
    return {c: str(row.get(c, "nan")) for c in SCORED if not _na(row.get(c, "nan"))}


class MMBench(DatasetBenchmark):
    name = "mmbench"
    max_new_tokens = 1024
    stop = ("ASSISTANT:",)
    hub_id, hub_config, hub_split = "lmms-lab-encoder/MMBench", "en", "dev"
    id_field = "index"
    params = dataset_params(hub_id, hub_config, hub_split)

    def group_key(self, table):
        # The circular variants of one question stay together under ``limit``.
        return [int(i) % CIRCULAR for i in self.column(table, "index")]

    def build_sample(self, row, check):
        index = int(check.get("index", int))
        options = {c: str(row[c]) for c in LETTERS if c in row and shown(row[c])}
        if len(options) < 2:
            check.fail("A", f"and the other options give {len(options)} option(s); at least 2 are needed")
        listing = "There are several options:\n" + "\n".join(f"{c}. {t}" for c, t in options.items())
        hint = check.get("hint", nullable=True)
        # An empty hint still counts (lmms-eval only drops None/NaN/"nan").
        lead = f"{hint} " if shown(hint) or hint == "" else ""
        scored = scored_options(row)
        answer = check.choice("answer", tuple(sorted({*options, *scored})))
        return Sample(
            id=str(index),
            # lmms-eval joins its post-prompt (which starts with a newline) with
            # another newline, so the instruction follows a blank line.
            prompt=f"{lead}{check.text('question')} {listing}\n{OPTION_LETTER}",
            references=answer,
            images=[check.image()],
            meta={
                "index": index,
                "circular": index % CIRCULAR,
                "category": check.text("category", optional=True),
                "l2_category": check.text("L2-category", optional=True),
                "options": scored,
            },
        )

    def score(self, sample, prediction):
        answer = self.clean(prediction).strip()
        options = sample.meta["options"]
        letter = mmbench_prefetch(answer, options)
        how = "rule"
        if not letter:
            letter = extract_mcq_answer(answer, sorted(options)) or None
            how = "regex" if letter else "none"
        return {"pred": letter, "how": how, "correct": float(letter == sample.references)}

    def resample_unit(self, record):
        return record["meta"]["circular"]

    def resample_copy(self, record, copy):
        return {**record, "meta": {**record["meta"], "circular": f"{record['meta']['circular']}#{copy}"}}

    def aggregate(self, records):
        groups = defaultdict(list)
        main = {}
        for record in records:
            meta = record["meta"]
            groups[meta["circular"]].append(record["score"]["correct"])
            if meta["index"] < CIRCULAR:
                main[meta["circular"]] = meta
        # As in lmms-eval, a question is scored through its main row (index < 1e6).
        hits = {key: float(all(c == 1.0 for c in groups[key])) for key in main}
        out = {
            "accuracy": percent(hits.values()),
            "questions": float(len(hits)),
            "single_pass_accuracy": percent(r["score"]["correct"] for r in records),
        }
        for field in ("category", "l2_category"):
            by = defaultdict(list)
            for key, hit in hits.items():
                by[main[key].get(field) or "uncategorized"].append(hit)
            out.update({f"{field}/{name}": percent(v) for name, v in sorted(by.items())})
        return out
