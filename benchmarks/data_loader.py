"""Data throughput: the synthetic generator on one core, and the loader with 0, 1, 2 workers.

    python -m benchmarks.data_loader
    python -m benchmarks.data_loader --source /data/train.lmdb --workers 0,2,4

Rows:
  generator   ``SynthWords`` rendering in this process (one core): images/s per core.
  loader      the training loader (``make_dataset`` with ``train=True``: shuffle, decode,
              grayscale, resize, encode, batch inside the workers) over the same source,
              images/s delivered to the training loop, per worker count. The first
              batches (worker start-up) are not timed.

The loader is what the train step waits on: compare its images/s with the train step's
(``train/images_per_s`` in a run's metrics.jsonl).
"""

from __future__ import annotations

import json
import time
from typing import Sequence

from absl import flags

from grcnn_jax import process
from grcnn_jax.cli import common
from grcnn_jax.text.charset import Charset
from grcnn_jax.data import pipeline
from grcnn_jax.data.preprocess import Preprocess
from grcnn_jax.data.sources import open_source
from grcnn_jax.data.synth.generator import SynthWords
from grcnn_jax.data.synth.generator import benchmark as synth_benchmark


def loader_images_per_s(source, batch_size: int, num_workers: int, batches: int,
                        warmup: int) -> float:
    preprocess = Preprocess(Charset())
    dataset = pipeline.make_dataset(source, preprocess, batch_size, train=True, seed=0,
                                    num_workers=num_workers)
    with pipeline.BatchIterator(dataset, name="bench") as it:
        for _ in range(warmup):
            next(it)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        return batches * batch_size / (time.perf_counter() - start)


def define_flags(flag_values) -> None:
    """The command's flags, on ``flag_values``."""
    flags.DEFINE_string("source", "synth", "a dataset spec as in config.data.train (default: "
                        "the generator)", flag_values=flag_values)
    common.define_int_list("workers", [0, 1, 2], "loader worker counts to time, "
                            "comma-separated", flag_values, lower_bound=0)
    flags.DEFINE_integer("batch", 64, "images per batch", flag_values=flag_values)
    flags.DEFINE_integer("batches", 30, "timed batches per worker count",
                         flag_values=flag_values)
    flags.DEFINE_integer("warmup", 3, "untimed batches first", flag_values=flag_values)
    flags.DEFINE_integer("generator_images", 2000, "images the generator row renders",
                         flag_values=flag_values)
    flags.DEFINE_string("json", None, "also write the rows to this file", flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> None:
    FLAGS, _ = common.parse_command_line(define_flags, argv, __doc__)

    rows = []
    if FLAGS.source == "synth":
        rate = synth_benchmark(SynthWords(FLAGS.generator_images, seed=0), FLAGS.generator_images)
        rows.append({"what": "generator", "workers": "-", "images_per_s": rate,
                     "note": "images/s on one core"})
    source = open_source(FLAGS.source, what="--source", synth={"length": 10_000_000, "seed": 0})
    for workers in FLAGS.workers:
        rate = loader_images_per_s(source, FLAGS.batch, workers, FLAGS.batches, FLAGS.warmup)
        rows.append({"what": "loader", "workers": workers, "images_per_s": rate,
                     "note": f"batch {FLAGS.batch}, {FLAGS.source}"})

    print(f"{'what':<10} {'workers':>7} {'images/s':>9}  note")
    for r in rows:
        print(f"{r['what']:<10} {r['workers']!s:>7} {r['images_per_s']:>9.0f}  {r['note']}")
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(rows, f, indent=1)


def run() -> None:
    """The ``python -m benchmarks.data_loader`` command."""
    process.configure()
    main()


if __name__ == "__main__":
    run()
