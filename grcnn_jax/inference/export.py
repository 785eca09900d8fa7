"""Exporting a trained reader as one ``jax.export`` program (``export_model``) and loading
it again (``load_exported``); ``serving_meta`` says how to feed and read a served model.
The command: ``grcnn_jax.cli.export``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import jax
import numpy as np
from jax import export as jax_export

from grcnn_jax.text.charset import BLANK_ID, Charset

MODEL_FILE, META_FILE = "model.jax", "meta.json"
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")        # what jax.export lowers for


def is_exported_folder(path: str) -> bool:
    """Whether ``path`` is a folder ``export_model`` wrote (it holds ``model.jax``)."""
    return os.path.isfile(os.path.join(os.path.expanduser(path), MODEL_FILE))


def serving_meta(ckpt: Any, frames: int, classes: int) -> dict:
    """What a served model's reader needs beside the program: the input (size, grayscale
    mode, keep_aspect), the output (charset, blank id, frames, classes), the lexicon case
    policy, and where the weights came from."""
    from grcnn_jax.assemble import lexicon_lowercase
    from grcnn_jax.config.defaults import gray_mode

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
    from grcnn_jax import assets

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
    from grcnn_jax.models import create_model
    from grcnn_jax.workdir.writers import atomic_path

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
        "platforms": list(exported.platforms), "conv_impl": impl, "bytes": len(blob)}
    for name, data in ((MODEL_FILE, bytes(blob)), (META_FILE,
                                                   json.dumps(meta, indent=1).encode() + b"\n")):
        with atomic_path(os.path.join(out_dir, name)) as tmp, open(tmp, "wb") as f:
            f.write(data)                          # a reader never sees half a file
    return meta


class ExportedReader:
    """An exported model, loaded: ``reader(images)`` -> logits, ``reader.read(images)`` -> texts.

    Attributes:
      meta: ``meta.json`` as a dict.
      charset: the label alphabet (``Charset(meta['charset'])``).
      exported: the deserialized ``jax.export.Exported``.
    """

    def __init__(self, exported: Any, meta: dict):
        self.exported, self.meta = exported, meta
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
    return ExportedReader(exported, meta)
