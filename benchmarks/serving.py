"""Serving speed: one word at a time and in batches, ours in three forms beside the peers.

    python -m benchmarks.serving --data ../shared/ic03_dev [--n 200] [--json out.json]

Every row reads the same ``--n`` word crops from encoded bytes (what a server is sent):
decoding, grayscale, resizing, the model and CTC decoding are all inside the timed call.
One at a time: each image alone, the p50 / p95 of its latency in ms (after ``--warmup``
images that are not timed); batched: all images in calls of ``--batch``, images/s.

  ours in-process   the checkpoint (default: the shipped reader) through the ``Evaluator``
                    that ``recognize`` uses, built once, jitted per batch size
  ours exported     the same weights as a ``jax.export`` program (``grcnn_jax.export``)
  ours onnxruntime  the same weights as ONNX (``grcnn_jax.inference.onnx_export``), read by
                    ``grcnn_jax.inference.onnx_reader`` (no jax in that path)
  PP-OCRv4, EasyOCR the peers in their own environment (``peer_accuracy``), one image at a
                    time as their recognition APIs are used; no batched row (their public
                    calls take one image)

All in one process and one run, one after the other, on whatever this machine has (say
which, and run nothing else meanwhile).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from typing import Callable, Sequence

import numpy as np
from absl import flags

from grcnn_jax import process
from grcnn_jax.cli import common
from benchmarks import peer_accuracy


def _percentiles(seconds: Sequence[float]) -> tuple[float, float]:
    ms = np.asarray(seconds) * 1e3
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95))


def time_system(name: str, one: Callable[[bytes], str], batch: Callable[[list], list] | None,
                images: list[bytes], batch_size: int, warmup: int) -> dict:
    """Times ``one`` per image (after ``warmup`` untimed calls) and ``batch`` over all images."""
    for data in images[:warmup]:
        one(data)
    latencies = []
    for data in images:
        start = time.perf_counter()
        one(data)
        latencies.append(time.perf_counter() - start)
    row = {"system": name, "images": len(images)}
    row["p50_ms"], row["p95_ms"] = _percentiles(latencies)
    row["one_at_a_time_images_per_s"] = len(images) / sum(latencies)
    if batch is not None:
        chunks = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
        batch(chunks[0])                                    # compiled for the full size
        if len(chunks[-1]) != len(chunks[0]):
            batch(chunks[-1])
        start = time.perf_counter()
        for chunk in chunks:
            batch(chunk)
        row["batched_images_per_s"] = len(images) / (time.perf_counter() - start)
    return row


def ours(ckpt, onnx_dir: str, exported_dir: str) -> list[tuple[str, Callable, Callable]]:
    """(name, one, batch) for the checkpoint in-process, exported, and in onnxruntime."""
    from grcnn_jax.assemble import make_mesh
    from grcnn_jax.config.defaults import gray_mode
    from grcnn_jax.evaluation.evaluator import make_evaluator
    from grcnn_jax.inference.exported import load_exported
    from grcnn_jax.inference.onnx_reader import OnnxReader
    from grcnn_jax.inference.recognize import ExportedModule

    import jax
    from jax.sharding import Mesh

    from grcnn_jax.data.preprocess import prepare_image
    from grcnn_jax.evaluation.evaluator import Evaluator

    c = ckpt.config
    shape = (c.image_height, c.image_width)

    def prepare(blobs: list) -> np.ndarray:
        return np.stack([prepare_image(b, *shape, c.data.keep_aspect, gray_mode(c))
                         for b in blobs])

    evaluators: dict[int, object] = {}

    def in_process(blobs: list) -> list[str]:
        n = len(blobs)
        if n not in evaluators:
            evaluators[n] = make_evaluator(c, ckpt.charset, make_mesh(), n, confidence=True)
        return [p.text for p in evaluators[n].predict(ckpt.params, ckpt.batch_stats,
                                                      prepare(blobs), None)]

    exported = load_exported(exported_dir)
    one_device = Mesh(np.array(jax.local_devices()[:1]), ("data",))
    exported_evaluators: dict[int, object] = {}

    def via_export(blobs: list) -> list[str]:
        n = len(blobs)
        if n not in exported_evaluators:
            exported_evaluators[n] = Evaluator(
                ExportedModule(exported.exported), exported.charset, one_device, n,
                lexicon_lowercase=bool(exported.meta.get("lowercase", True)), confidence=True)
        return [p.text for p in exported_evaluators[n].predict({}, {}, prepare(blobs), None)]

    onnx = OnnxReader(onnx_dir)

    def via_onnx(blobs: list) -> list[str]:
        return [r.text for r in onnx.read(blobs, batch_size=len(blobs))]

    return [(f"ours in-process (step {ckpt.step})", lambda b: in_process([b])[0], in_process),
            ("ours exported (jax.export)", lambda b: via_export([b])[0], via_export),
            ("ours onnxruntime", lambda b: via_onnx([b])[0], via_onnx)]


def format_table(rows: Sequence[dict]) -> str:
    lines = [f"{'system':<34} {'images':>6} {'p50 ms':>8} {'p95 ms':>8} {'1-by-1 img/s':>12} "
             f"{'batched img/s':>13}"]
    for r in rows:
        batched = r.get("batched_images_per_s")
        lines.append(f"{r['system'][:34]:<34} {r['images']:>6} {r['p50_ms']:>8.1f} "
                     f"{r['p95_ms']:>8.1f} {r['one_at_a_time_images_per_s']:>12.1f} "
                     f"{'-' if batched is None else f'{batched:.1f}':>13}")
    return "\n".join(lines)


def define_flags(flag_values) -> None:
    """The command's flags, on ``flag_values``."""
    flags.DEFINE_string("data", None, "an ICDAR-03 folder or an LMDB of word crops",
                        flag_values=flag_values)
    flags.mark_flag_as_required("data", flag_values=flag_values)
    flags.DEFINE_string("checkpoint", "pretrained", "our reader: 'pretrained', a reader "
                        "folder, a workdir or a step folder", flag_values=flag_values)
    flags.DEFINE_integer("n", 200, "images timed", lower_bound=1, flag_values=flag_values)
    flags.DEFINE_integer("warmup", 5, "untimed images first", lower_bound=0,
                         flag_values=flag_values)
    flags.DEFINE_integer("batch", 64, "images per batched call", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_string("peer_python", ".venv-peer/bin/python", "the peers' Python",
                        flag_values=flag_values)
    common.define_choice_list("peers", list(peer_accuracy.PEERS),
                               lambda: list(peer_accuracy.PEERS), "the peers to time",
                               flag_values=flag_values)
    flags.DEFINE_string("json", None, "also write the rows here", flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> int:
    FLAGS, _ = common.parse_command_line(define_flags, argv, __doc__)
    from grcnn_jax.inference.load import load_for_inference
    from grcnn_jax.inference.export import export_model
    from grcnn_jax.inference.onnx_export import export_onnx

    with common.refusals_as_one_line(argv):
        records = peer_accuracy.read_records(FLAGS.data)[:FLAGS.n]
        images = [bytes(r["image"]) for r in records]
        ckpt = load_for_inference(checkpoint=FLAGS.checkpoint)
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            export_onnx(ckpt, os.path.join(tmp, "onnx"))
            export_model(ckpt, os.path.join(tmp, "jax"))
            for name, one, batch in ours(ckpt, os.path.join(tmp, "onnx"),
                                         os.path.join(tmp, "jax")):
                rows.append(time_system(name, one, batch, images, FLAGS.batch, FLAGS.warmup))
                print(format_table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
        for name in FLAGS.peers:
            if not peer_accuracy.peer_available(FLAGS.peer_python, name):
                print(f"(no {name} in {FLAGS.peer_python})", file=sys.stderr)
                continue
            result = peer_accuracy.run_peer(records[:FLAGS.warmup] + records, FLAGS.peer_python,
                                            name)
            per_image = result["per_image_seconds"][FLAGS.warmup:]
            row = {"system": result["name"], "images": len(per_image)}
            row["p50_ms"], row["p95_ms"] = _percentiles(per_image)
            row["one_at_a_time_images_per_s"] = len(per_image) / sum(per_image)
            rows.append(row)
    print(format_table(rows))
    if FLAGS.json:
        with open(FLAGS.json, "w", encoding="utf-8") as f:
            json.dump({"data": FLAGS.data, "rows": rows}, f, indent=1)
    return 0


def run() -> None:
    """The ``python -m benchmarks.serving`` command."""
    process.configure()
    sys.exit(main())


if __name__ == "__main__":
    run()
