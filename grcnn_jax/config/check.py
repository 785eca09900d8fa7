"""A training config checked before anything is created: each value that cannot work is
named with the range it must lie in.

``validate(config)`` raises ConfigError listing every bad field at once, so a refused run
costs one correction, not one per try, and leaves no workdir behind.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from grcnn_jax.config.defaults import gray_mode
from grcnn_jax.models import frames_for_width, grcl_options
from grcnn_jax.models.grcnn import PARAM_GROUPS
from grcnn_jax.data.images import GRAY_MODES
from grcnn_jax.text.charset import Charset
from grcnn_jax.data.preprocess import EDGE_CUT, check_policy
from grcnn_jax.data.synth.styles import parse_styles

MODEL_HEIGHT = 32                      # the backbone's five height halvings end at height 1
OPTIMIZERS = ("adadelta", "adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine")


class ConfigError(ValueError):
    """One or more config fields cannot work (the message names each, with its range)."""


def min_width_for_labels(max_label_length: int) -> int:
    """The narrowest image width whose frames fit ``max_label_length`` characters
    (``models.frames_for_width`` is width // 4 + 1)."""
    return 4 * max(max_label_length - 1, 0)


def _problems(config: ml_collections.ConfigDict) -> list[str]:
    bad: list[str] = []

    def need(ok: bool, field: str, value: Any, allowed: str) -> None:
        if not ok:
            bad.append(f"config.{field}={value!r}: must be {allowed}")

    def positive_int(field: str, value: Any) -> bool:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        need(ok, field, value, "an integer >= 1")
        return ok

    need(config.image_height == MODEL_HEIGHT, "image_height", config.image_height,
         f"{MODEL_HEIGHT} (the backbone pools the height 32 -> 1)")
    labels = config.data.max_label_length
    if positive_int("data.max_label_length", labels) and positive_int("image_width",
                                                                        config.image_width):
        frames = frames_for_width(config.image_width)
        need(frames >= labels, "image_width", config.image_width,
             f">= {min_width_for_labels(labels)} to give the model {labels} CTC frames for "
             f"config.data.max_label_length={labels} (it gives {frames}); or lower "
             f"config.data.max_label_length to <= {frames}")
    for field in ("batch_size", "eval_batch_size", "num_train_steps", "log_every", "eval_every",
                  "checkpoint_every", "keep_checkpoints"):
        positive_int(field, config[field])
    need(config.grad_clip_norm >= 0, "grad_clip_norm", config.grad_clip_norm, ">= 0 (0: off)")

    freeze = [p.strip() for p in config.get("freeze", "").split(",") if p.strip()]
    need(set(freeze) <= set(PARAM_GROUPS) and len(freeze) < len(PARAM_GROUPS), "freeze",
         config.get("freeze"), f"'' or some (not all) of {PARAM_GROUPS}, comma-separated")
    need(0 <= config.get("ema_decay", 0.0) < 1, "ema_decay", config.get("ema_decay"),
         "in [0, 1) (0: off)")
    need(0 <= config.get("confidence_penalty", 0.0) <= 1, "confidence_penalty",
         config.get("confidence_penalty"), "in [0, 1] (0: off)")
    need(0 <= config.get("sam_rho", 0.0) <= 1, "sam_rho", config.get("sam_rho"),
         "in [0, 1] (0: off)")
    layers = config.get("guide_layers", 0)
    need(isinstance(layers, int) and not isinstance(layers, bool) and 0 <= layers <= 8,
         "guide_layers", layers, "an integer in [0, 8] (0: no guide)")
    if layers:
        need(0 < config.get("guide_weight", 0.0) <= 10, "guide_weight",
             config.get("guide_weight"), "in (0, 10] with config.guide_layers > 0")
    accum = config.get("grad_accum_steps", 1)
    need(isinstance(accum, int) and accum >= 1, "grad_accum_steps", accum, "an integer >= 1")
    weights = str(config.data.get("train_weights", "")).strip()
    if weights:
        specs = [p for p in str(config.data.train).split(",") if p.strip()]
        try:
            values = [float(w) for w in weights.split(",")]
        except ValueError:
            values = []
        need(len(values) == len(specs) and all(v > 0 for v in values), "data.train_weights",
             weights, f"{len(specs)} positive numbers, one per config.data.train set")

    m = config.model
    for field in ("conv0_features", "out_features", "hidden"):
        positive_int(f"model.{field}", m[field])
    need(len(m.grcl_features) == 3 and all(isinstance(f, int) and f >= 1
                                           for f in m.grcl_features),
         "model.grcl_features", tuple(m.grcl_features), "three integers >= 1")
    need(0 <= m.get("dropout", 0.0) < 1, "model.dropout", m.get("dropout", 0.0), "in [0, 1)")
    need(0 <= m.bn_momentum < 1, "model.bn_momentum", m.bn_momentum, "in [0, 1)")
    need(m.bn_epsilon > 0, "model.bn_epsilon", m.bn_epsilon, "> 0")

    try:                  # T, dtype, remat, conv_impl, ...: the model's own checks
        grcl_options(m)
    except (ValueError, TypeError) as e:
        bad.append(str(e).replace("GRCLOptions.", "config.model."))

    o = config.optimizer
    need(o.name in OPTIMIZERS, "optimizer.name", o.name, f"one of {OPTIMIZERS}")
    need(o.schedule in SCHEDULES, "optimizer.schedule", o.schedule, f"one of {SCHEDULES}")
    need(o.learning_rate > 0, "optimizer.learning_rate", o.learning_rate, "> 0")
    need(isinstance(o.warmup_steps, int) and 0 <= o.warmup_steps, "optimizer.warmup_steps",
         o.warmup_steps, "an integer >= 0")
    need(o.eps > 0, "optimizer.eps", o.eps, "> 0")
    for field in ("rho", "b1", "b2"):
        need(0 <= o[field] < 1, f"optimizer.{field}", o[field], "in [0, 1)")
    need(o.momentum >= 0, "optimizer.momentum", o.momentum, ">= 0")

    d = config.data
    need(isinstance(d.num_workers, int) and d.num_workers >= 0, "data.num_workers",
         d.num_workers, "an integer >= 0 (0: load in the main process)")
    need(bool(str(d.train).strip()), "data.train", d.train, "a dataset spec (e.g. 'synth')")
    strength = d.get("augment_strength", 1.0)
    need(isinstance(strength, (int, float)) and not isinstance(strength, bool)
         and 0 <= strength <= 3, "data.augment_strength", strength, "a number in [0, 3]")
    cut = d.get("augment_edge_cut", EDGE_CUT)
    need(isinstance(cut, (int, float)) and not isinstance(cut, bool) and 0 <= cut <= 0.2,
         "data.augment_edge_cut", cut, "a number in [0, 0.2]")

    need(gray_mode(config) in GRAY_MODES, "data.grayscale", d.get("grayscale"),
         f"one of {GRAY_MODES}")
    try:                  # the generator's own parser
        parse_styles(str(d.get("synth_styles", "")))
    except ValueError as e:
        bad.append(f"config.data.synth_styles={d.get('synth_styles')!r}: {e}")
    positive_int("data.synth_train_size", d.synth_train_size)
    positive_int("data.synth_val_size", d.synth_val_size)
    return bad


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError naming every field that cannot work, and the data policy's
    DataError or the charset's CharsetError for those; returns None if all is well."""
    bad = _problems(config)
    if bad:
        raise ConfigError("; ".join(bad))
    check_policy(dict(config.data.policy))
    Charset.from_spec(config.charset)
