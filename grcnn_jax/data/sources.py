"""Opening a dataset from a config string: 'synth', an LMDB, an ICDAR-03 folder, 'tfds:...'.

A spec is one of::

    synth                      the embedded synthetic generator (size and seed from the config)
    PATH                       a CRNN-format LMDB (a folder with data.mdb, or an LMDB file),
                               or an ICDAR-03-style folder (with test.txt and test_label.txt)
    tfds:NAME[/SPLIT]          a prepared tensorflow-datasets dataset (data_dir from the config)
    SPEC,SPEC,...              several of these, concatenated
"""

from __future__ import annotations

import bisect
import os
from typing import Any, Iterator, Sequence

from grcnn_jax.data.errors import DataError


class ConcatSource:
    """Several random-access sources, one after the other."""

    def __init__(self, sources: Sequence[Any]):
        if not sources:
            raise DataError("ConcatSource needs at least one source")
        self.sources = list(sources)
        self._ends = []
        total = 0
        for s in self.sources:
            total += len(s)
            self._ends.append(total)

    def __len__(self) -> int:
        return self._ends[-1]

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} records")
        i %= len(self)
        k = bisect.bisect_right(self._ends, i)
        return self.sources[k][i - (self._ends[k - 1] if k else 0)]

    def __repr__(self) -> str:
        return f"ConcatSource({self.sources!r})"


class WeightedSources:
    """Several sources drawn from in fixed proportions (``config.data.train_weights``, DTRB's
    ``--batch_ratio``): training mixes them with ``grain.MapDataset.mix``, each shuffled and
    repeated on its own, so that a small set is revisited more often rather than diluted.
    ``len`` is the total number of records."""

    def __init__(self, sources: Sequence[Any], weights: Sequence[float]):
        if len(sources) != len(weights) or not sources:
            raise DataError(f"{len(weights)} weights for {len(sources)} training sets")
        if any(w <= 0 for w in weights):
            raise DataError(f"training set weights must be positive, got {list(weights)}")
        self.sources, self.weights = list(sources), [float(w) for w in weights]

    def __len__(self) -> int:
        return sum(len(s) for s in self.sources)

    def __repr__(self) -> str:
        return f"WeightedSources({self.sources!r}, weights={self.weights})"


def _generators(source: Any) -> Iterator[Any]:
    """The synthetic generators inside ``source``, as ``open_source`` or ``WeightedSources``
    nest them."""
    from grcnn_jax.data.synth.generator import SynthWords

    if isinstance(source, (ConcatSource, WeightedSources)):
        for s in source.sources:
            yield from _generators(s)
    elif isinstance(source, SynthWords):
        yield source


def generator_fonts(source: Any) -> tuple[str, ...]:
    """The font files of the synthetic generator inside ``source`` (as ``open_source`` or
    ``WeightedSources`` nest it), () where it holds none."""
    return tuple(dict.fromkeys(f for g in _generators(source) for f in g.fonts))


def holds_generator(source: Any) -> bool:
    """Whether ``source`` is, or nests, the synthetic generator."""
    return any(True for _ in _generators(source))


def open_source(spec: str, *, what: str = "dataset", synth: dict | None = None,
                tfds_data_dir: str | None = None) -> Any:
    """Opens the random-access source named by ``spec`` (see module doc).

    Args:
      spec: the dataset spec.
      what: how to name this dataset in errors, e.g. 'config.data.train'.
      synth: keyword arguments of ``SynthWords`` for the 'synth' spec (length, seed, ...).
      tfds_data_dir: where prepared tfds datasets live (None: tfds's default).
    """
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise DataError(f"{what} is empty: give 'synth', a dataset path, or 'tfds:NAME'")
    if len(parts) > 1:
        return ConcatSource([open_source(p, what=what, synth=synth, tfds_data_dir=tfds_data_dir)
                             for p in parts])
    spec = parts[0]
    if spec == "synth":
        from grcnn_jax.data.synth.generator import SynthWords

        return SynthWords(**(synth or {}))
    if spec.startswith("tfds:"):
        from grcnn_jax.data.formats.tfds_source import TfdsSource

        name, _, split = spec[len("tfds:"):].partition("/")
        return TfdsSource(name, split=split or "test", data_dir=tfds_data_dir)
    path = os.path.expanduser(spec)
    if not os.path.exists(path):
        raise DataError(f"{what}={spec!r}: no such file or folder")
    if os.path.isfile(os.path.join(path, "test.txt")):
        from grcnn_jax.data.formats.folders import Icdar03Folder

        return Icdar03Folder(path)
    if os.path.isfile(os.path.join(path, "data.mdb")) or os.path.isfile(path):
        from grcnn_jax.data.formats.crnn_lmdb import LmdbSource

        return LmdbSource(path)
    raise DataError(f"{what}={spec!r} is neither an LMDB (no data.mdb inside) nor an "
                    "ICDAR-03-style folder (no test.txt inside)")
