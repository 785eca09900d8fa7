"""Weights from flat, '/'-separated names into this package's Flax variable trees.

The mapping (used to load the reference weights in tests/golden, and any weights
exported in the same flat style) is three rules:

1. A BatchNorm's ``scale``/``bias`` go to ``params``; its ``mean``/``var`` go to
   ``batch_stats``. Everything else (conv ``kernel``/``bias``, GRCL kernels
   ``wf``, ``wgf``, ``wr``, ``wgr``) goes to ``params`` under the same path.
2. A name with an iteration index, ``<grcl>/<name>/<t>/...`` (t = 0..T-1: the
   per-iteration BatchNorms ``bn_fu``, ``bn_gfu``, ``bn_grx``, ``bn_rx``,
   ``bn_gx``, and untied recurrent kernels ``wr``/``wgr``), is moved under the
   scanned body, ``<grcl>/iterations/<name>/...``, and the T arrays are stacked
   along a new leading axis in order of t.
3. A prefix (``grcl/``, ``backbone/``) is stripped first.

So ``grcl/bn_fu/2/scale`` -> ``params['iterations']['bn_fu']['scale'][2]`` and
``backbone/grcl1/bn_init/var`` -> ``batch_stats['grcl1']['bn_init']['var']``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

BATCH_STATS_LEAVES = ("mean", "var")


def _insert(tree: dict, path: list[str], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    if path[-1] in tree:
        raise ValueError(f"duplicate weight for {'/'.join(path)}")
    tree[path[-1]] = value


def variables_from_flat(flat: Mapping[str, np.ndarray], prefix: str = "",
                        dtype: Any = np.float32) -> dict[str, dict]:
    """Flat ``{'a/b/c': array}`` -> ``{'params': ..., 'batch_stats': ...}`` (see module doc).

    Only names that start with ``prefix`` are taken. Raises ValueError if the
    iteration indices of a stacked name are not exactly 0..T-1.
    """
    stacked: dict[tuple[str, ...], dict[int, np.ndarray]] = {}
    variables: dict[str, dict] = {"params": {}, "batch_stats": {}}
    for name, value in flat.items():
        if not name.startswith(prefix) or name == prefix:
            continue
        parts = name[len(prefix):].strip("/").split("/")
        collection = "batch_stats" if parts[-1] in BATCH_STATS_LEAVES else "params"
        idx = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        if idx is None:
            _insert(variables[collection], parts, np.asarray(value, dtype))
        else:
            # <...>/<layer>/<t>/<leaf...>  ->  <...>/iterations/<layer>/<leaf...>, stacked on t
            path = (collection, *parts[:idx - 1], "iterations", *parts[idx - 1:idx], *parts[idx + 1:])
            stacked.setdefault(path, {})[int(parts[idx])] = np.asarray(value, dtype)
    for (collection, *path), by_t in stacked.items():
        if sorted(by_t) != list(range(len(by_t))):
            raise ValueError(f"iterations of {'/'.join(path)} are {sorted(by_t)}, not 0..{len(by_t) - 1}")
        _insert(variables[collection], list(path), np.stack([by_t[t] for t in range(len(by_t))]))
    return variables
