"""Prompt pieces shared by several protocols (verbatim from them)."""

SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
OPTION_LETTER = "\nAnswer with the option's letter from the given choices directly."


def lettered(options: list[str]) -> str:
    """"A. first\\nB. second..." for a list of option texts."""
    return "\n".join(f"{chr(ord('A') + i)}. {text}" for i, text in enumerate(options))
