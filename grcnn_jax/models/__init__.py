"""GRCNN models: the GRCL block (and its RCL / plain-CNN ablations), backbone and sequence head."""

from __future__ import annotations

from typing import Any, Mapping

import jax.numpy as jnp

from grcnn_jax.models.grcl import GRCL, GRCLIteration
from grcnn_jax.models.grcnn import GRCNN, Backbone, frames_for_width, normalize_images
from grcnn_jax.models.sequence import BidirectionalLSTM

__all__ = ["GRCL", "GRCLIteration", "GRCNN", "Backbone", "BidirectionalLSTM", "create_model", "frames_for_width",
           "normalize_images"]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def create_model(model_config: Mapping[str, Any], num_classes: int) -> GRCNN:
    """Builds the GRCNN from a config's ``model`` section (see configs/grcl.py for the fields)."""
    cfg = dict(model_config)
    dtype = cfg.pop("dtype", "float32")
    if dtype not in DTYPES:
        raise ValueError(f"config.model.dtype={dtype!r}: choose one of {sorted(DTYPES)}")
    try:
        return GRCNN(num_classes=num_classes, dtype=DTYPES[dtype],
                     grcl_features=tuple(cfg.pop("grcl_features", (64, 128, 256))), **cfg)
    except TypeError as e:
        raise ValueError(f"config.model has a field the model does not know: {e}") from None
