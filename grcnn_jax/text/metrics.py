"""Word accuracy and normalized edit distance under the standard scene-text protocol."""

from __future__ import annotations

import re
from typing import Sequence

_NOT_ALNUM = re.compile(r"[^0-9a-zA-Z]+")


def normalize(text: str, case_sensitive: bool = False, alnum_only: bool = True) -> str:
    """The standard protocol: ASCII letters and digits only, compared case-insensitively."""
    if alnum_only:
        text = _NOT_ALNUM.sub("", text)
    return text if case_sensitive else text.lower()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


class WordMetrics:
    """Accumulates word accuracy and normalized edit distance (ED / max(len), 0 = perfect)."""

    def __init__(self, case_sensitive: bool = False, alnum_only: bool = True):
        self.case_sensitive, self.alnum_only = case_sensitive, alnum_only
        self.count = 0
        self.correct = 0
        self.ned_sum = 0.0

    def update(self, predictions: Sequence[str], targets: Sequence[str]) -> None:
        for p, t in zip(predictions, targets, strict=True):
            p = normalize(p, self.case_sensitive, self.alnum_only)
            t = normalize(t, self.case_sensitive, self.alnum_only)
            self.count += 1
            self.correct += p == t
            self.ned_sum += edit_distance(p, t) / max(len(p), len(t), 1)

    def result(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {"word_accuracy": self.correct / n, "normalized_edit_distance": self.ned_sum / n,
                "count": self.count}
