"""Export a trained reader as an ONNX model, for onnxruntime without jax.

    python -m grcnn_jax.export --format onnx --out model/            # the shipped model
    python -m grcnn_jax.recognize --onnx model/ word.png

``OUT/model.onnx``: input ``images`` uint8 [B, H, W] (grayscale 0..255, any batch size B),
output ``logits`` float32 [B, frames, classes] (CTC blank = id 0, ``charset[i]`` = id
i + 1); the weights are constants inside it. ``OUT/meta.json`` is ``export.serving_meta``
(how to prepare the images and read the output) plus the opset, the jax2onnx version and
the parity measured at export. Read it with ``grcnn_jax.inference.onnx_reader`` (onnxruntime, numpy
and Pillow only) or any ONNX runtime.

The graph is the inference path with XLA's convolutions (``conv_impl='xla'``: the same
function as the CPU's Winograd form, without its custom gradient), converted by jax2onnx;
the GRCL's and the BLSTMs' scans become ONNX loops. Every export is checked against jax on
images at three batch sizes (1, 3 and 8): a largest |difference| of the logits over
``PARITY_TOLERANCE`` is refused, and the folder is left as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import types
from typing import Any, Iterator

import numpy as np

from grcnn_jax.inference.export import serving_lm, serving_meta
from grcnn_jax.inference.exported import META_FILE
from grcnn_jax.inference.onnx_reader import ONNX_FILE, session
from grcnn_jax.models import create_model
from grcnn_jax.workdir.writers import atomic_path
OPSET = 17                   # onnxruntime >= 1.13 runs it; Loop, Shape and Conv as needed here
PARITY_TOLERANCE = 1e-4      # largest |onnx - jax| of the logits accepted at export
PARITY_BATCHES = (1, 3, 8)


@contextlib.contextmanager
def _concrete_shapes_in_flax_scan() -> Iterator[None]:
    """jax2onnx replaces ``jnp.shape`` with a traced primitive while it converts (for
    shapes known only at run time); Flax's lifted scan builds its carry's abstract value
    from ``jnp.shape`` and needs the static shape there, which ``np.shape`` gives (the
    batch stays a symbolic dimension). So, while converting, Flax's scan module sees a
    ``jnp`` whose ``shape`` is numpy's."""
    from flax.core import axes_scan
    import jax.numpy as jnp

    original = axes_scan.jnp
    shim = types.ModuleType("jnp_with_static_shape")
    shim.__dict__.update({k: getattr(jnp, k) for k in dir(jnp) if not k.startswith("__")})
    shim.shape = np.shape
    axes_scan.jnp = shim
    try:
        yield
    finally:
        axes_scan.jnp = original


def export_onnx(ckpt: Any, out_dir: str) -> dict:
    """Writes ``out_dir/model.onnx`` and ``out_dir/meta.json`` (see the module doc).

    Args:
      ckpt: a ``checkpoints.InferenceCheckpoint`` (``load_for_inference``).
      out_dir: created if missing; existing files of those names are replaced.
    Returns:
      The meta dict written (``bytes``: the size of model.onnx; ``parity_max_abs``).
    Raises:
      ImportError naming the extra when jax2onnx, onnx or onnxruntime are missing;
      ValueError when the converted model does not match jax within PARITY_TOLERANCE.
    """
    try:
        import jax2onnx
        import onnx
        import onnxruntime  # noqa: F401 -- the parity check runs it
    except ImportError as e:
        raise ImportError(f"--format onnx needs {e.name}: pip install 'grcnn_jax[onnx]'") \
            from None
    import jax
    import jax.numpy as jnp


    os.makedirs(out_dir, exist_ok=True)                 # a bad --out fails before the work
    config, charset = ckpt.config, ckpt.charset
    model = create_model({**dict(config.model), "conv_impl": "xla"}, charset.num_classes)
    variables = {"params": ckpt.params, "batch_stats": ckpt.batch_stats}

    def logits(images: jax.Array) -> jax.Array:
        return model.apply(variables, images, train=False)

    (b,) = jax.export.symbolic_shape("B")
    spec = jax.ShapeDtypeStruct((b, config.image_height, config.image_width), jnp.uint8)
    with _concrete_shapes_in_flax_scan():
        proto = jax2onnx.to_onnx(logits, [spec], model_name="grcnn", opset=OPSET,
                                 input_names=["images"], output_names=["logits"])
    blob = proto.SerializeToString()
    onnx.checker.check_model(blob)
    worst = _parity(blob, jax.jit(logits), (config.image_height, config.image_width))
    if not worst <= PARITY_TOLERANCE:
        raise ValueError(f"the ONNX model's logits differ from jax's by up to {worst:.2e} "
                         f"(more than {PARITY_TOLERANCE:g}); nothing was written")
    frames, classes = (d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim[1:])
    meta = {"format": "grcnn_jax.onnx/1", "model_file": ONNX_FILE,
            **serving_meta(ckpt, frames, classes), "opset": OPSET,
            "jax2onnx_version": _version("jax2onnx"), "parity_max_abs": worst,
            "parity_batches": list(PARITY_BATCHES), "bytes": len(blob),
            **serving_lm(ckpt, out_dir)}
    for name, data in ((ONNX_FILE, blob), (META_FILE, json.dumps(meta, indent=1).encode() + b"\n")):
        with atomic_path(os.path.join(out_dir, name)) as tmp, open(tmp, "wb") as f:
            f.write(data)
    return meta


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _parity(blob: bytes, reference, shape: tuple[int, int]) -> float:
    """Largest |onnx - jax| of the logits on random images at ``PARITY_BATCHES`` sizes."""
    run = session(blob)
    worst = 0.0
    for n in PARITY_BATCHES:
        images = np.random.default_rng(n).integers(0, 256, (n, *shape), dtype=np.uint8)
        got = run.run(None, {"images": images})[0]
        worst = max(worst, float(np.abs(got - np.asarray(reference(images))).max()))
    return worst
