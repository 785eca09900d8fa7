"""Exporting a trained reader as one ``jax.export`` program (``export_model``; loaded again by
``inference.exported.load_exported``); ``serving_meta`` says how to feed and read a served
model. The command: ``grcnn_jax.cli.export``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax
import numpy as np
from jax import export as jax_export

from grcnn_jax.inference.exported import META_FILE, MODEL_FILE
from grcnn_jax.text.charset import BLANK_ID
from grcnn_jax.assemble import lexicon_lowercase
from grcnn_jax.config.defaults import gray_mode
from grcnn_jax import assets
from grcnn_jax.models import create_model
from grcnn_jax.workdir.writers import atomic_path

PLATFORMS = ("cpu", "cuda", "rocm", "tpu")        # what jax.export lowers for

def serving_lm(ckpt: Any, out_dir: str) -> dict:
    """Writes ``ckpt``'s language model beside a served model (``lm.npz``); returns the
    meta.json entry that names it ({} where it has none)."""
    if ckpt.lm is None:
        return {}
    from grcnn_jax.inference.lm_files import save_in_folder

    return {"lm": save_in_folder(ckpt.lm, out_dir)}


def serving_meta(ckpt: Any, frames: int, classes: int) -> dict:
    """What a served model's reader needs beside the program: the input (size, grayscale
    mode, keep_aspect), the output (charset, blank id, frames, classes), the lexicon case
    policy, and where the weights came from."""
    config = ckpt.config
    return {
        "input": "uint8 [b, image_height, image_width], grayscale 0..255",
        "output": "float32 [b, frames, num_classes] logits; id 0 = CTC blank, charset[i] = i + 1",
        "charset": ckpt.charset.chars, "num_classes": int(classes), "blank_id": BLANK_ID,
        "frames": int(frames), "image_height": int(config.image_height),
        "image_width": int(config.image_width), "keep_aspect": bool(config.data.keep_aspect),
        "grayscale": gray_mode(config),
        "lowercase": lexicon_lowercase(config),
        "step": int(ckpt.step), **_source(ckpt.path)}


def _source(path: str) -> dict:
    """Where the weights came from: 'pretrained' for the shipped reader, else the folder; for
    a reader folder also its weights' sha256 (so a stale export can be told from a fresh one)."""
    out = {"source": assets.PRETRAINED if os.path.abspath(path) == assets.READER_DIR else path}
    try:
        with open(os.path.join(path, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
        digest = meta.get("sha256") if isinstance(meta, dict) else None
        if isinstance(digest, str):
            out["weights_sha256"] = digest
    except (OSError, ValueError):           # a checkpoint step folder: no such file
        pass
    return out


def export_model(ckpt: Any, out_dir: str, platforms: Sequence[str] = ("cpu",)) -> dict:
    """Writes ``out_dir/model.jax`` and ``out_dir/meta.json`` (see the module docstring).

    Args:
      ckpt: a ``checkpoints.InferenceCheckpoint`` (``load_for_inference``).
      out_dir: created if missing; existing files of those names are replaced.
      platforms: jax.export platform names to lower for ('cpu', 'cuda', 'rocm', 'tpu').

    Returns:
      The meta dict written (with ``bytes``: the size of model.jax).
    """
    platforms = tuple(dict.fromkeys(p.strip().lower() for p in platforms if p.strip()))
    bad = [p for p in platforms if p not in PLATFORMS]
    if bad or not platforms:
        raise ValueError(f"platforms {bad or list(platforms)}: choose from {', '.join(PLATFORMS)}")
    os.makedirs(out_dir, exist_ok=True)                 # a bad --out fails before the work
    config, charset = ckpt.config, ckpt.charset
    variables = {"params": ckpt.params, "batch_stats": ckpt.batch_stats}
    impl = dict(config.model).get("conv_impl", "auto")

    def logits_with(conv_impl: str):
        model = create_model({**dict(config.model), "conv_impl": conv_impl}, charset.num_classes)
        return lambda images: model.apply(variables, images, train=False)

    if impl == "auto":          # resolved per platform here, not by the exporting backend
        on_cpu, elsewhere = logits_with("winograd"), logits_with("xla")

        def serve(images: jax.Array) -> jax.Array:
            return jax.lax.platform_dependent(images, cpu=on_cpu, default=elsewhere)
    else:
        serve = logits_with(impl)
    (b,) = jax_export.symbolic_shape("b")
    spec = jax.ShapeDtypeStruct((b, config.image_height, config.image_width), np.uint8)
    exported = jax_export.export(jax.jit(serve), platforms=platforms)(spec)
    blob = exported.serialize()
    frames, classes = exported.out_avals[0].shape[1:]
    meta = {
        "format": "grcnn_jax.export/1", "model_file": MODEL_FILE,
        **serving_meta(ckpt, frames, classes),
        "jax_version": jax.__version__,
        "platforms": list(exported.platforms), "conv_impl": impl, "bytes": len(blob),
        **serving_lm(ckpt, out_dir)}
    for name, data in ((MODEL_FILE, bytes(blob)), (META_FILE,
                                                   json.dumps(meta, indent=1).encode() + b"\n")):
        with atomic_path(os.path.join(out_dir, name)) as tmp, open(tmp, "wb") as f:
            f.write(data)                          # a reader never sees half a file
    return meta
