"""Pure, stateless scorers shared by the benchmarks (one idea per module).

- ``vqa``: answer normalisation, leave-one-out VQA accuracy, exact match.
- ``yesno``: yes/no parsing (POPE, MME) and the binary metrics built on it.
- ``choice``: option-letter extraction from free-form answers.
- ``ocr``: OCRBench substring matching.
- ``aggregate``: percentages and per-group breakdowns over per-sample records.
"""
