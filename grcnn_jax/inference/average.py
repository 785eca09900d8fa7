"""One reader from several: the mean of their weights, parameter by parameter.

Fine-tunes of one reader (different seeds, data mixes or lengths from the same start) stay
in one basin of the loss, so their mean reads as well as the best of them or better, at
no cost when reading (a "model soup", Wortsman et al. 2022). Batch statistics are averaged
the same way. Readers of different architectures, input sizes or charsets are refused,
naming the source and what differs.

    grcnn-pretrained --workdir runs/a --average runs/b,pretrained --out runs/soup
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from flax import traverse_util

from grcnn_jax.models import NEUTRAL_FIELDS
from grcnn_jax.workdir.checkpoints import InferenceCheckpoint

# Config entries that fix the meaning of every weight (the rest, such as the data or the
# optimizer, may differ between the averaged runs).
SAME_CONFIG = ("image_height", "image_width")


class AverageError(ValueError):
    """The readers cannot be averaged (the message names the source and what differs)."""


def _flat(tree) -> dict:
    return traverse_util.flatten_dict(tree, sep="/")


def _check_compatible(first: InferenceCheckpoint, other: InferenceCheckpoint,
                      first_name: str, name: str) -> None:
    if other.charset.chars != first.charset.chars:
        raise AverageError(f"{name}: its charset ({len(other.charset)} characters) differs "
                           f"from {first_name}'s ({len(first.charset)})")
    for key in SAME_CONFIG:
        if other.config.get(key) != first.config.get(key):
            raise AverageError(f"{name}: config.{key}={other.config.get(key)!r} differs from "
                               f"{first_name}'s {first.config.get(key)!r}")
    model_a = _flat(first.config.model.to_dict())
    model_b = _flat(other.config.model.to_dict())
    for key in sorted((set(model_a) | set(model_b)) - set(NEUTRAL_FIELDS)):
        if model_a.get(key) != model_b.get(key):
            raise AverageError(f"{name}: config.model.{key.replace('/', '.')}="
                               f"{model_b.get(key)!r} differs from {first_name}'s "
                               f"{model_a.get(key)!r}")
    for group in ("params", "batch_stats"):
        a, b = _flat(getattr(first, group)), _flat(getattr(other, group))
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b or np.shape(a[key]) != np.shape(b[key]):
                shape = lambda d: np.shape(d[key]) if key in d else "missing"  # noqa: E731
                raise AverageError(f"{name}: {group}/{key} is {shape(b)}, {first_name}'s "
                                   f"is {shape(a)}")


def average(sources: Sequence[InferenceCheckpoint],
            names: Sequence[str] | None = None) -> InferenceCheckpoint:
    """The uniform mean of ``sources``' params and batch statistics (float32, summed in
    float64), with the first source's config, charset, step and paths.

    ``names`` (one per source) name them in refusals; raises AverageError when a source's
    charset, input size, model config or variable shapes differ from the first's.
    """
    if not sources:
        raise AverageError("nothing to average")
    names = list(names) if names is not None else [s.path for s in sources]
    first = sources[0]
    for other, name in zip(sources[1:], names[1:]):
        _check_compatible(first, other, names[0], name)

    def mean(group: str):
        flats = [_flat(getattr(s, group)) for s in sources]
        out = {k: (sum(np.asarray(f[k], np.float64) for f in flats) / len(flats))
               .astype(np.float32) for k in flats[0]}
        return traverse_util.unflatten_dict(out, sep="/")

    return dataclasses.replace(first, params=mean("params"), batch_stats=mean("batch_stats"))
