"""Starting a run from a trained reader (``config.init_from``): its params and batch
statistics copied into the new run's state, every character the two charsets share keeping
its classifier column, so that step 0 reads as the source did.
"""

from __future__ import annotations

import logging
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from grcnn_jax.inference.load import load_for_inference
from grcnn_jax.models.grcnn import CLASSIFIER
from grcnn_jax.models.guide import GUIDE
from grcnn_jax.text.charset import Charset
from grcnn_jax.workdir.checkpoints import InferenceCheckpoint

log = logging.getLogger(__name__)


def load_variables(spec: str) -> InferenceCheckpoint:
    """``--config.init_from``: 'pretrained', a reader folder, a training workdir or a
    checkpoint step directory (``load.load_for_inference``), named in any refusal."""
    try:
        return load_for_inference(checkpoint=spec)
    except (OSError, ValueError) as e:
        e.args = (f"config.init_from={spec!r}: {e}",)
        raise e from None


# The classifier's parameters: one output column per class (blank = 0).
CLASS_PARAMS = (f"{CLASSIFIER}/kernel", f"{CLASSIFIER}/bias")
NEW_CLASS_BIAS_MARGIN = 4.0     # new characters start this far below the weakest old bias


def remap_classes(new: np.ndarray, old: np.ndarray, old_charset: Charset, charset: Charset,
                  name: str) -> np.ndarray:
    """``old``'s class columns (last axis) placed at ``charset``'s ids: the blank and every
    character in both charsets keep their trained column; a new character's column starts
    at zero weights and, for the bias, ``NEW_CLASS_BIAS_MARGIN`` below the lowest trained
    bias, so the fine-tune's first predictions are the source model's (the new character is
    never the argmax yet) while its gradient is that of any other class."""
    out = np.zeros(np.shape(new), np.asarray(new).dtype)
    old = np.asarray(old)
    out[..., 0] = old[..., 0]
    for j, ch in enumerate(charset.chars, start=1):
        i = old_charset.chars.find(ch)
        if i >= 0:
            out[..., j] = old[..., i + 1]
        elif name.endswith("bias"):
            out[..., j] = old.min() - NEW_CLASS_BIAS_MARGIN
    return out


# The GRCLs' per-iteration variables (``models/grcl.py``): leading axis T.
ITERATIONS = "iterations"


def resize_iterations(new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """``old`` [T_old, ...] at ``new``'s T (its leading axis): the first iterations keep
    their trained values, each added one starts as a copy of the last trained one."""
    old = np.asarray(old)
    return old[np.minimum(np.arange(np.shape(new)[0]), len(old) - 1)]


def _iterations_differ(key: str, a: dict, b: dict) -> bool:
    """Whether ``key`` is a per-iteration variable whose T alone differs."""
    if ITERATIONS not in key.split("/") or key not in a or key not in b:
        return False
    x, y = np.shape(a[key]), np.shape(b[key])
    return len(x) == len(y) >= 1 and x[1:] == y[1:] and x[0] != y[0]


def init_state_from(state: Any, source: InferenceCheckpoint, charset: Charset) -> Any:
    """``state`` with params and batch statistics taken from ``source`` (optimizer state and
    step stay fresh).

    When the charsets differ, the classifier (``CLASS_PARAMS``) keeps the columns of the
    characters in both, and new characters start as ``remap_classes`` says; the log lists
    the kept, new and dropped characters. When only T differs, the GRCLs' per-iteration
    variables (batch normalization; with ``share=False`` the recurrent kernels too) are
    resized as ``resize_iterations`` says. An attention guide (``config.guide_layers``; readers
    have none) starts fresh. Raises ValueError naming the parameter when any other shape
    differs (the model config must build the same network).
    """
    where = source.path
    remap = source.charset.chars != charset.chars
    if remap:
        old, new = set(source.charset.chars), set(charset.chars)
        log.info("config.init_from=%s: charset differs; classifier columns kept for %d "
                 "characters, initialized for %d new (%r), dropped for %d (%r)", where,
                 len(old & new), len(new - old), "".join(sorted(new - old)), len(old - new),
                 "".join(sorted(old - new)))
    out, resized = {}, set()
    for name, new_tree, old_tree in (("params", state.params, source.params),
                                     ("batch_stats", state.batch_stats, source.batch_stats)):
        a = traverse_util.flatten_dict(new_tree, sep="/")
        b = traverse_util.flatten_dict(old_tree, sep="/")
        merged = {}
        for key in sorted(set(a) | set(b)):
            if remap and name == "params" and key in CLASS_PARAMS and key in a and key in b:
                merged[key] = remap_classes(a[key], b[key], source.charset, charset, key)
                continue
            if key.startswith(GUIDE + "/") and key in a and key not in b:
                merged[key] = a[key]
                continue
            if _iterations_differ(key, a, b):
                merged[key] = resize_iterations(a[key], b[key]).astype(np.asarray(a[key]).dtype)
                resized.add((len(b[key]), len(a[key])))
                continue
            if key not in b or key not in a or tuple(np.shape(a[key])) != tuple(np.shape(b[key])):
                raise ValueError(
                    f"config.init_from={where!r}: {name}/{key} is "
                    f"{np.shape(b[key]) if key in b else 'missing'} there, "
                    f"{np.shape(a[key]) if key in a else 'missing'} in this run's model; "
                    "use the same config.model as the source")
            merged[key] = np.asarray(b[key], np.asarray(a[key]).dtype)
        out[name] = jax.tree.map(lambda x, y: y, new_tree,
                                 traverse_util.unflatten_dict(merged, sep="/"))
    for t_old, t_new in sorted(resized):
        log.info("config.init_from=%s: T = %d there, %d here; per-iteration batch normalization "
                 "%s", where, t_old, t_new, "of the added iterations copied from the last one"
                 if t_new > t_old else "of the first iterations kept")
    return state.replace(params=out["params"], batch_stats=out["batch_stats"])
