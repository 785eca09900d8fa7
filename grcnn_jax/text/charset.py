"""The character set: text <-> label ids, shared by data, loss, decoders and checkpoints.

Id 0 is the CTC blank; character ``chars[i]`` has id ``i + 1``. The paper's
default is the 36 lowercase alphanumerics, so ``num_classes`` is 37.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

BLANK_ID = 0
DEFAULT_CHARS = "0123456789abcdefghijklmnopqrstuvwxyz"


class CharsetError(ValueError):
    """A text that the charset cannot encode, or an invalid charset definition."""


class Charset:
    """An ordered set of characters, with blank = 0 and ``chars[i]`` -> ``i + 1``.

    Args:
      chars: the characters in id order (each at most once, no blank-like empty).
    """

    def __init__(self, chars: str = DEFAULT_CHARS):
        if not isinstance(chars, str) or not chars:
            raise CharsetError(f"a charset needs a non-empty string of characters, got {chars!r}")
        seen: dict[str, int] = {}
        for i, c in enumerate(chars):
            if c in seen:
                raise CharsetError(
                    f"character {c!r} appears twice in the charset (positions {seen[c]} and {i})")
            seen[c] = i
        self.chars = chars
        self._ids = {c: i + 1 for i, c in enumerate(chars)}

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Charset":
        """Reads a charset file: either one character per line, or the characters on one line.

        Line endings are dropped; a space character is given as a line holding one space.
        """
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise CharsetError(f"cannot read charset file {os.fspath(path)!r}: {e}") from e
        lines = [ln for ln in lines if ln != ""]
        if not lines:
            raise CharsetError(f"charset file {os.fspath(path)!r} is empty")
        chars = lines[0] if len(lines) == 1 else "".join(lines)
        if len(lines) > 1 and any(len(ln) != 1 for ln in lines):
            bad = next(i for i, ln in enumerate(lines) if len(ln) != 1)
            raise CharsetError(
                f"charset file {os.fspath(path)!r}: line {bad + 1} holds {lines[bad]!r}; give one "
                "character per line, or all characters on a single line")
        try:
            return cls(chars)
        except CharsetError as e:
            raise CharsetError(f"charset file {os.fspath(path)!r}: {e}") from None

    @classmethod
    def from_spec(cls, spec: str) -> "Charset":
        """``'file:PATH'`` reads a file; any other string is the characters themselves."""
        if spec.startswith("file:"):
            return cls.from_file(spec[len("file:"):])
        return cls(spec)

    # -- properties -------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of model outputs: the characters plus the blank."""
        return len(self.chars) + 1

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, char: str) -> bool:
        return char in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Charset) and other.chars == self.chars

    def __hash__(self) -> int:
        return hash(self.chars)

    def __repr__(self) -> str:
        return f"Charset({self.chars!r})"

    # -- text <-> ids -----------------------------------------------------------------------
    def unknown_chars(self, text: str) -> list[str]:
        """The distinct characters of ``text`` that are not in the charset, in order."""
        return list(dict.fromkeys(c for c in text if c not in self._ids))

    def encode(self, text: str) -> list[int]:
        """Text -> ids (each >= 1). Raises CharsetError naming the first unknown character."""
        try:
            return [self._ids[c] for c in text]
        except KeyError:
            pos = next(i for i, c in enumerate(text) if c not in self._ids)
            raise CharsetError(
                f"character {text[pos]!r} at position {pos} of {text!r} is not in the charset "
                f"{self.chars!r}") from None

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text. Blanks (0) are dropped; no CTC merging of repeats (see decoders)."""
        out = []
        for i in ids:
            i = int(i)
            if i == BLANK_ID:
                continue
            if not 0 < i <= len(self.chars):
                raise CharsetError(f"label id {i} is outside 0..{len(self.chars)}")
            out.append(self.chars[i - 1])
        return "".join(out)

    def encode_batch(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> (labels int32 [B, max_len], label_paddings float32 [B, max_len]).

        Padded positions hold id 0 and padding 1.0 (optax's CTC convention).
        Raises CharsetError if a text is longer than ``max_len`` or has unknown characters.
        """
        labels = np.zeros((len(texts), max_len), np.int32)
        paddings = np.ones((len(texts), max_len), np.float32)
        for b, text in enumerate(texts):
            ids = self.encode(text)
            if len(ids) > max_len:
                raise CharsetError(f"text {text!r} has {len(ids)} characters, more than max_len={max_len}")
            labels[b, :len(ids)] = ids
            paddings[b, :len(ids)] = 0.0
        return labels, paddings
