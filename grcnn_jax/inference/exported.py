"""An exported reader (``inference.export.export_model``'s ``model.jax`` and ``meta.json``),
loaded and run: ``load_exported(folder)`` -> ``ExportedReader``. Needs jax and numpy only: no
flax, optax, orbax, ml_collections or the model code.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np
from jax import export as jax_export

from grcnn_jax.inference.lm_files import load_in_folder
from grcnn_jax.text.charset import BLANK_ID, Charset

MODEL_FILE, META_FILE = "model.jax", "meta.json"


def is_exported_folder(path: str) -> bool:
    """Whether ``path`` is a folder ``export_model`` wrote (it holds ``model.jax``)."""
    return os.path.isfile(os.path.join(os.path.expanduser(path), MODEL_FILE))


class ExportedReader:
    """An exported model, loaded: ``reader(images)`` -> logits, ``reader.read(images)`` -> texts.

    Attributes:
      meta: ``meta.json`` as a dict.
      charset: the label alphabet (``Charset(meta['charset'])``).
      exported: the deserialized ``jax.export.Exported``.
    """

    def __init__(self, exported: Any, meta: dict, lm: Any = None):
        self.exported, self.meta, self.lm = exported, meta, lm
        self.charset = Charset(meta["charset"])
        self.shape = (int(meta["image_height"]), int(meta["image_width"]))
        self._call = jax.jit(exported.call)           # compiled once per batch shape

    def __call__(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 [N, H, W] prepared images -> float32 [N, frames, classes] logits, run in
        batches of ``min(N, batch_size)`` (the last padded: one compilation per size)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != self.shape:
            raise ValueError(f"images must be uint8 [N, {self.shape[0]}, {self.shape[1]}], got "
                             f"{images.dtype} {list(images.shape)}")
        n = max(1, min(len(images), batch_size))
        out = []
        for start in range(0, len(images), n):
            chunk = images[start:start + n]
            padded = np.zeros((n, *self.shape), np.uint8)
            padded[:len(chunk)] = chunk
            out.append(np.asarray(self._call(padded))[:len(chunk)])
        if not out:
            return np.zeros((0, self.meta["frames"], self.meta["num_classes"]), np.float32)
        return np.concatenate(out)

    def read(self, images: np.ndarray, batch_size: int = 64) -> list[str]:
        """Greedy CTC (argmax per frame, repeats merged, blanks dropped) -> one text per image."""
        best = self(images, batch_size).argmax(-1)
        previous = np.pad(best[:, :-1], ((0, 0), (1, 0)), constant_values=BLANK_ID)
        keep = (best != BLANK_ID) & (best != previous)
        return [self.charset.decode(row[k]) for row, k in zip(best, keep)]


def load_exported(model_dir: str) -> ExportedReader:
    """Loads ``model_dir/{model.jax,meta.json}`` written by ``export_model``. Raises
    FileNotFoundError naming a missing file, ValueError for one that is not such a file."""
    paths = {name: os.path.join(model_dir, name) for name in (MODEL_FILE, META_FILE)}
    for path in paths.values():
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no exported model at {model_dir!r}: {path!r} is missing "
                                    "(write one with python -m grcnn_jax.export --out DIR)")
    try:
        with open(paths[META_FILE], encoding="utf-8") as f:
            meta = json.load(f)
    except ValueError as e:
        raise ValueError(f"{paths[META_FILE]!r} is not valid JSON: {e}") from None
    needed = {"charset", "image_height", "image_width", "frames", "num_classes"}
    missing = needed - set(meta) if isinstance(meta, dict) else needed
    if missing:
        raise ValueError(f"{paths[META_FILE]!r} lacks {sorted(missing)}")
    with open(paths[MODEL_FILE], "rb") as f:
        blob = f.read()
    try:
        exported = jax_export.deserialize(bytearray(blob))
    except Exception as e:  # noqa: BLE001 -- flatbuffers/MLIR errors of all kinds: not a model
        raise ValueError(f"{paths[MODEL_FILE]!r} is not a serialized jax.export model "
                         f"({type(e).__name__}: {e})") from None
    return ExportedReader(exported, meta, load_in_folder(model_dir, meta.get("lm")))
