"""Compile time and forward time of the GRCNN versus T: scanned (one while loop) vs unrolled.

    python -m benchmarks.compile_time                 # paper config, T = 1, 3, 5
    python -m benchmarks.compile_time --batch 8 --T 1,3,5,8 --json out.json
    python -m benchmarks.compile_time --T 5 --nounrolled     # the scanned model only

For every T it builds the paper model (configs/grcl.py's model section), then
times ``jax.jit(...).lower(...).compile()`` of the eval forward and of the
training gradient (CTC loss, train-mode BatchNorm), and the median wall time of
the compiled eval forward. ``unrolled`` sets ``scan_unroll = T``: the same
computation written out T times, for comparison (``--nounrolled``: scanned only).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from grcnn_jax import process
from grcnn_jax.cli import common
from grcnn_jax.text.charset import Charset
from grcnn_jax.config.defaults import get_base_config
from grcnn_jax.text.losses import ctc_loss
from grcnn_jax.models import create_model


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def measure(T: int, unrolled: bool, batch: int, reps: int) -> dict:
    config = get_base_config()
    config.model.T = T
    config.model.scan_unroll = max(T, 1) if unrolled else 1
    charset = Charset.from_spec(config.charset)
    model = create_model(config.model, charset.num_classes)
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.integers(0, 256, (batch, config.image_height, config.image_width),
                                      dtype=np.uint8))
    labels, paddings = charset.encode_batch(["grcnn"] * batch, max_len=8)
    variables = jax.jit(model.init)(jax.random.key(0), images)

    forward = jax.jit(lambda v, x: model.apply(v, x, train=False))

    def loss(params, batch_stats):
        logits, _ = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                train=True, mutable=["batch_stats"])
        return ctc_loss(logits, labels, paddings).mean()

    grad = jax.jit(jax.grad(loss))
    fwd_c, fwd_compile = _timed(lambda: forward.lower(variables, images).compile())
    _, grad_compile = _timed(lambda: grad.lower(variables["params"], variables["batch_stats"])
                             .compile())
    fwd_c(variables, images).block_until_ready()                   # warm-up
    times = []
    for _ in range(reps):
        _, dt = _timed(lambda: fwd_c(variables, images).block_until_ready())
        times.append(dt)
    med = statistics.median(times)
    return dict(T=T, mode="unrolled" if unrolled else "scan", batch=batch,
                forward_compile_s=round(fwd_compile, 2), grad_compile_s=round(grad_compile, 2),
                forward_ms=round(1e3 * med, 1), images_per_s=round(batch / med, 1),
                hlo_chars=len(fwd_c.as_text()))


def define_flags(flag_values) -> None:
    """The command's flags, on ``flag_values``."""
    common.define_int_list("T", [1, 3, 5], "GRCL iterations to measure, comma-separated",
                            flag_values, lower_bound=0)
    flags.DEFINE_integer("batch", 32, "images per batch", flag_values=flag_values)
    flags.DEFINE_integer("reps", 5, "timed forward passes per row (median)",
                         flag_values=flag_values)
    flags.DEFINE_bool("unrolled", True, "also measure the unrolled model (--nounrolled: the "
                      "scanned model only)", flag_values=flag_values)
    flags.DEFINE_string("json", None, "also write the rows to this file", flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    FLAGS, _ = common.parse_command_line(define_flags, argv, __doc__)
    print(f"# jax {jax.__version__}, backend {jax.default_backend()}, "
          f"{jax.device_count()} device(s): {jax.devices()[0].device_kind}")
    header = (f"{'T':>3} {'mode':>9} {'batch':>5} {'fwd compile s':>13} {'grad compile s':>14} "
              f"{'fwd ms':>8} {'images/s':>9} {'HLO chars':>10}")
    print(header)
    rows = []
    for T in FLAGS.T:
        for unrolled in ([False, True] if FLAGS.unrolled else [False]):
            r = measure(T, unrolled, FLAGS.batch, FLAGS.reps)
            rows.append(r)
            print(f"{r['T']:>3} {r['mode']:>9} {r['batch']:>5} {r['forward_compile_s']:>13} "
                  f"{r['grad_compile_s']:>14} {r['forward_ms']:>8} {r['images_per_s']:>9} "
                  f"{r['hlo_chars']:>10}", flush=True)
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump(rows, f, indent=1)
    return rows


def run() -> None:
    """The ``python -m benchmarks.compile_time`` command."""
    process.use_huge_pages()     # not the persistent compilation cache: it measures compiles
    main()


if __name__ == "__main__":
    run()
