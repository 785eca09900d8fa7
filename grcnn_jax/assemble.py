"""The parts every command builds from a config, in one place so that they agree: the device
mesh, the loader's preprocessing, the data sources, batch-size checks and the evaluator.
Training (its validation), ``evaluate``, ``recognize`` and ``evaluate --benchmark`` all
build them here (``evaluation.evaluator.make_evaluator`` builds the evaluator on these).
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding

from grcnn_jax.config.defaults import gray_mode
from grcnn_jax.text.charset import Charset
from grcnn_jax.data.preprocess import EDGE_CUT, Preprocess, check_policy
from grcnn_jax.data.pipeline import BATCH_KEYS
from grcnn_jax.data.sources import WeightedSources, open_source
from grcnn_jax.models import frames_for_width


def make_mesh() -> Mesh:
    """All devices of all hosts on one 'data' axis.

    Auto axis type: XLA propagates the shardings inside the model, so model code (which
    contracts over the batch in BatchNorm and in the conv kernel gradients) needs no
    sharding annotations; jax.make_mesh's default (Explicit) would require them.
    """
    return jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Auto,))


def device_batch(batch: dict, sharding: NamedSharding) -> dict:
    """This host's numpy batch -> global arrays split along the 'data' axis."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(batch[k]))
            for k in BATCH_KEYS}


def make_preprocess(config: ml_collections.ConfigDict, charset: Charset) -> Preprocess:
    frames = frames_for_width(config.image_width)
    policy = check_policy(dict(config.data.policy))
    return Preprocess(charset, height=config.image_height, width=config.image_width,
                               max_label_length=min(config.data.max_label_length, frames),
                               max_frames=frames, keep_aspect=config.data.keep_aspect,
                               grayscale=gray_mode(config),
                               augment=config.data.get("augment", False),
                               augment_strength=config.data.get("augment_strength", 1.0),
                               augment_edge_cut=config.data.get("augment_edge_cut", EDGE_CUT),
                               policy=tuple(sorted(policy.items())))


def open_split(config: ml_collections.ConfigDict, split: str, spec: str | None = None):
    """The source of ``config.data.<split>`` (split: 'train' or 'val'), or of ``spec`` as
    that split would open it."""
    d = config.data
    synth = dict(length=d.synth_train_size if split == "train" else d.synth_val_size,
                 seed=d.synth_seed + (0 if split == "train" else 1), height=config.image_height,
                 charset=Charset.from_spec(config.charset),
                 palettes=d.get("synth_palettes", "") or None,
                 styles=d.get("synth_styles", "") or None)
    spec = d[split] if spec is None else spec
    weights = str(d.get("train_weights", "")).strip() if split == "train" else ""
    if weights:                          # several training sets drawn from in proportion
        return WeightedSources(
            [open_source(p.strip(), what=f"config.data.{split}", synth=synth,
                         tfds_data_dir=d.tfds_data_dir or None)
             for p in spec.split(",") if p.strip()], [float(w) for w in weights.split(",")])
    return open_source(spec, what=f"config.data.{split}", synth=synth,
                       tfds_data_dir=d.tfds_data_dir or None)


def open_val_sets(config: ml_collections.ConfigDict) -> list[tuple[str, object]]:
    """``config.data.val`` as ``(metric prefix, source)`` pairs: ``val``, all of it (several
    comma-separated specs concatenated, as ``evaluate`` and ``--step best`` see it); with
    several, each also on its own as ``val/<name>`` (the folder or file name without
    extension, or ``synth``), so that a real set's accuracy is not averaged away."""
    parts = [p.strip() for p in config.data.val.split(",") if p.strip()]
    if not parts:
        return []
    named = [("val", open_split(config, "val"))]
    if len(parts) > 1:
        for part in parts:
            name = os.path.splitext(os.path.basename(part.rstrip("/")))[0] or part
            named.append((f"val/{name.replace(':', '_').replace('/', '_')}",
                          open_split(config, "val", part)))
    return named


def host_batch_size(global_batch: int, what: str) -> int:
    """This host's share of a global batch; ValueError naming ``what`` if it does not split."""
    check_divisible(global_batch, what)
    return global_batch // jax.process_count()


def lexicon_lowercase(config: ml_collections.ConfigDict) -> bool:
    """Whether lexicon words are lowercased before they are scored: as the labels are, under
    the data policy's ``unknown_chars='lower'`` (the default)."""
    return dict(config.data.policy).get("unknown_chars", "lower") == "lower"


def check_divisible(batch_size: int, what: str) -> None:
    """Raises ValueError naming ``what`` unless ``batch_size`` splits evenly over all devices."""
    if batch_size <= 0 or batch_size % jax.device_count():
        raise ValueError(f"{what}={batch_size} is not a positive multiple of the "
                         f"{jax.device_count()} devices")
