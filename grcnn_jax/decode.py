"""CTC decoders. Greedy: argmax per frame, merge repeats, drop blanks."""

from __future__ import annotations

import numpy as np

from grcnn_jax.charset import BLANK_ID, Charset


def collapse(best_path: np.ndarray) -> list[list[int]]:
    """[B, frames] argmax ids -> per example the label ids (repeats merged, blanks dropped)."""
    best_path = np.asarray(best_path)
    previous = np.pad(best_path[:, :-1], ((0, 0), (1, 0)), constant_values=BLANK_ID)
    keep = (best_path != BLANK_ID) & (best_path != previous)
    return [row[k].tolist() for row, k in zip(best_path, keep)]


def greedy_decode(best_path: np.ndarray, charset: Charset) -> list[str]:
    """[B, frames] argmax ids -> texts."""
    return [charset.decode(ids) for ids in collapse(best_path)]
