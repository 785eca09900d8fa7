"""GRCNN models: the GRCL block (and its RCL / plain-CNN ablations), backbone and sequence head."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax.numpy as jnp

from grcnn_jax.models.grcl import GRCL, GRCLIteration, GRCLOptions
from grcnn_jax.models.grcnn import GRCNN, Backbone, frames_for_width, normalize_images
from grcnn_jax.models.sequence import BidirectionalLSTM

__all__ = ["GRCL", "GRCLIteration", "GRCLOptions", "GRCNN", "Backbone", "BidirectionalLSTM",
           "NEUTRAL_FIELDS", "create_model", "grcl_options", "frames_for_width",
           "normalize_images"]

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}
# Model config entries that leave the function of the weights as it is: they change how
# training runs or how the same function is computed. Readers that differ only in these are
# the same network (averaging, checks of a shipped reader's shape).
NEUTRAL_FIELDS = ("dropout", "remat", "scan_unroll", "conv_impl")

OPTION_FIELDS = tuple(f.name for f in dataclasses.fields(GRCLOptions))
# GRCNN's own fields that a config may set (not num_classes, given apart; not options; not
# guide_layers, a training choice: config.guide_layers, given apart).
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(GRCNN) if f.init and f.name not in
                     ("num_classes", "options", "guide_layers", "parent", "name"))


def grcl_options(model_config: Mapping[str, Any]) -> GRCLOptions:
    """The ``GRCLOptions`` from a config's ``model`` section: every field of it the section
    has (``dtype`` as a name: float32, bfloat16 or float16); the others keep their defaults."""
    cfg = {k: v for k, v in dict(model_config).items() if k in OPTION_FIELDS}
    if "dtype" in cfg:
        if cfg["dtype"] not in DTYPES:
            raise ValueError(f"config.model.dtype={cfg['dtype']!r}: choose one of {sorted(DTYPES)}")
        cfg["dtype"] = DTYPES[cfg["dtype"]]
    return GRCLOptions(**cfg)


def create_model(model_config: Mapping[str, Any], num_classes: int,
                 guide_layers: int = 0) -> GRCNN:
    """Builds the GRCNN from a config's ``model`` section (see configs/grcl.py for the fields):
    the GRCL settings become one ``GRCLOptions`` (see ``grcl_options``), the rest (widths,
    hidden) are the GRCNN's own fields. ``guide_layers`` > 0 (training, ``config.guide_layers``)
    adds the attention guide (``models.guide``); readers are built without one."""
    cfg = dict(model_config)
    unknown = sorted(k for k in cfg if k not in OPTION_FIELDS and k not in MODEL_FIELDS)
    if unknown:
        raise ValueError(f"config.model has a field the model does not know: {', '.join(unknown)}")
    fields = {k: v for k, v in cfg.items() if k in MODEL_FIELDS}
    if "grcl_features" in fields:
        fields["grcl_features"] = tuple(fields["grcl_features"])
    return GRCNN(num_classes=num_classes, options=grcl_options(cfg), guide_layers=guide_layers,
                 **fields)
