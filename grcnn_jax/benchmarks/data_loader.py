"""Data throughput: the synthetic generator on one core, and the loader with 0, 1, 2 workers.

    python -m grcnn_jax.benchmarks.data_loader
    python -m grcnn_jax.benchmarks.data_loader --source /data/train.lmdb --workers 0 2 4

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

import argparse
import json
import time

from grcnn_jax.charset import Charset
from grcnn_jax.data import pipeline
from grcnn_jax.data.sources import open_source
from grcnn_jax.data.synth import SynthWords
from grcnn_jax.data.synth import benchmark as synth_benchmark


def loader_images_per_s(source, batch_size: int, num_workers: int, batches: int,
                        warmup: int) -> float:
    preprocess = pipeline.Preprocess(Charset())
    dataset = pipeline.make_dataset(source, preprocess, batch_size, train=True, seed=0,
                                    num_workers=num_workers)
    with pipeline.BatchIterator(dataset, name="bench") as it:
        for _ in range(warmup):
            next(it)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        return batches * batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m grcnn_jax.benchmarks.data_loader",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default="synth",
                   help="a dataset spec as in config.data.train (default: the generator)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=30, help="timed batches per worker count")
    p.add_argument("--warmup", type=int, default=3, help="untimed batches first")
    p.add_argument("--generator_images", type=int, default=2000)
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args(argv)

    rows = []
    if args.source == "synth":
        rate = synth_benchmark(SynthWords(args.generator_images, seed=0), args.generator_images)
        rows.append({"what": "generator", "workers": "-", "images_per_s": rate,
                     "note": "images/s on one core"})
    source = open_source(args.source, what="--source", synth={"length": 10_000_000, "seed": 0})
    for workers in args.workers:
        rate = loader_images_per_s(source, args.batch, workers, args.batches, args.warmup)
        rows.append({"what": "loader", "workers": workers, "images_per_s": rate,
                     "note": f"batch {args.batch}, {args.source}"})

    print(f"{'what':<10} {'workers':>7} {'images/s':>9}  note")
    for r in rows:
        print(f"{r['what']:<10} {r['workers']!s:>7} {r['images_per_s']:>9.0f}  {r['note']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    from grcnn_jax import runtime

    runtime.configure()
    main()
