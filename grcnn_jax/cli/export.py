"""Export a trained reader for serving with ``jax.export``: one self-contained program file.

    python -m grcnn_jax.export --out model/                          # the shipped model
    python -m grcnn_jax.export --workdir DIR --step best --out model/ --platforms cpu,cuda
    python -m grcnn_jax.recognize --exported model/ word.png

``OUT/model.jax`` is a serialized ``jax.export.Exported`` (StableHLO): images uint8
[b, H, W] (grayscale pixels 0..255, b any batch size, H and W the config's
``image_height`` / ``image_width``) -> logits float32 [b, frames, classes] (unnormalized
per-frame scores, CTC blank = id 0, character ``charset[i]`` = id i + 1). ``OUT/meta.json``
says how to prepare the images (height, width, keep_aspect, grayscale mode) and how to read
the output (charset, blank id, frames), plus the step, the source checkpoint, the jax
version and the platforms the program was lowered for. The variables (params and batch
statistics) are baked into the program as constants: the file alone reproduces the model,
with no checkpoint, no flax and no model code (the cost: a new checkpoint means a new
export). Lowered for several platforms at once, a config with ``conv_impl='auto'`` runs
Winograd convolutions on the CPU and XLA's own elsewhere, as training and evaluation do.

Loading needs only jax (the exporter's version or newer; jax reads artifacts of older
versions within its compatibility window) and numpy, e.g. a greedy CTC reader:

    import json, jax, numpy as np
    meta = json.load(open("model/meta.json"))
    exported = jax.export.deserialize(bytearray(open("model/model.jax", "rb").read()))
    best = np.asarray(exported.call(images)).argmax(-1)     # images: uint8 [b, H, W]
    texts = ["".join(meta["charset"][i - 1] for j, i in enumerate(row)
                     if i != 0 and (j == 0 or i != row[j - 1])) for row in best]

``inference.exported.load_exported`` does the same (plus batching and checks) and imports
nothing of the training code: only jax, numpy, json and ``grcnn_jax.text.charset``.
"""

from __future__ import annotations

import os

from grcnn_jax.inference import load
from grcnn_jax.inference.export import PLATFORMS, export_model
from grcnn_jax.inference.exported import META_FILE
from grcnn_jax.cli import common


# ----------------------------------------------------------------------------- command line
def _define_flags() -> None:
    from absl import flags


    common.define_checkpoint_flags()
    flags.DEFINE_string("out", None, "Folder to write model.jax (or model.onnx) and meta.json "
                        "into.")
    flags.DEFINE_enum("format", "jax", ["jax", "onnx"], "jax: a jax.export program (needs jax "
                      "to run); onnx: an ONNX model for onnxruntime (needs the [onnx] extra "
                      "to write; to read, only onnxruntime, numpy and Pillow).")
    flags.DEFINE_list("platforms", ["cpu"], f"Platforms to lower for: {', '.join(PLATFORMS)} "
                      "(--format jax).")


def main(argv: list[str]) -> None:
    from absl import app, flags


    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.out:
        raise app.UsageError("give --out DIR: the folder to write the exported model into")
    if FLAGS.format == "onnx" and FLAGS["platforms"].present:
        raise app.UsageError("--platforms is for --format jax (an ONNX model runs wherever "
                             "onnxruntime does)")
    with common.refusals_as_one_line():
        ckpt = load.with_lm(load.load_for_inference(FLAGS.workdir, FLAGS.checkpoint,
                                                    FLAGS.step), FLAGS.lm)
        if FLAGS.format == "onnx":
            from grcnn_jax.inference.onnx_export import export_onnx

            meta = export_onnx(ckpt, FLAGS.out)
            where = f"max |onnx - jax| {meta['parity_max_abs']:.1e} on its check images"
        else:
            meta = export_model(ckpt, FLAGS.out, FLAGS.platforms)
            where = f"platforms {','.join(meta['platforms'])}"
    print(f"wrote {os.path.join(FLAGS.out, meta['model_file'])} ({meta['bytes'] / 2**20:.1f} "
          f"MiB, step {meta['step']}, {where}) and {META_FILE}", flush=True)


def run() -> None:
    """The ``grcnn-export`` command (``python -m grcnn_jax.export``)."""
    common.run_command(main, _define_flags)


if __name__ == "__main__":
    run()
