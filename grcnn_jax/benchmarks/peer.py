"""Side by side with the PyTorch peer: train step and inference images/s, one table.

    python -m grcnn_jax.benchmarks.peer                                    # paper + small, batch 32
    python -m grcnn_jax.benchmarks.peer --configs grcl --batches 32 192 --rounds 3 --json out.json
    python -m grcnn_jax.benchmarks.peer --peer_python .venv-peer/bin/python \\
        --peer ../shared/bench/torch_grcnn.py

Every measurement runs in a fresh subprocess (so peak memory is its own), and ours and
the peer's alternate, round after round, so that a machine whose speed drifts treats
both alike. Per (config, batch, mode) the table shows the median over rounds of each
subprocess's median step time, as images/s, plus:

  compile_s      ours: jit compile time of the step (the peer is eager: none)
  step_ms        median step time
  peak_mb        peak resident memory of the subprocess
  vs_peer        our images/s / the peer's
  gflop/img      model FLOPs per image, analytic (grcnn_jax.models.flops; the peer: its
                 own analytic count, the same numbers); GFLOP/s = that x images/s

Ours: ``train.train_step`` (train-mode BatchNorm, CTC, global-norm clipping at 5,
ADADELTA as the seed and the peer) on a fixed batch, and inference = eval-mode logits +
argmax per frame, as the peer's ``infer``. Configs: ``grcl`` (the paper: T = 5, BLSTM
256) and ``small`` (the seed's: T = 3, BLSTM 512). The peer (shared/bench/torch_grcnn.py)
needs torch in its own environment (``python3 -m venv .venv-peer &&
.venv-peer/bin/pip install torch numpy``); without it only our rows are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {"grcl": {"T": 5, "hidden": 256}, "small": {"T": 3, "hidden": 512}}
DEFAULT_PEER = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "bench",
                            "torch_grcnn.py")


# ----------------------------------------------------------------------------- our side
def _ours(mode: str, name: str, batch: int, reps: int, warmup: int) -> dict:
    """Runs in the subprocess: compiles and times our step; returns one record."""
    import jax
    import numpy as np

    from grcnn_jax import train
    from grcnn_jax.charset import Charset
    from grcnn_jax.config_base import get_base_config
    from grcnn_jax.models import create_model
    from grcnn_jax.models.flops import forward_flops, train_flops

    config = get_base_config()
    config.model.T = CONFIGS[name]["T"]
    config.model.hidden = CONFIGS[name]["hidden"]
    charset = Charset.from_spec(config.charset)
    model = create_model(config.model, charset.num_classes)
    state = train.create_train_state(config, model, jax.random.key(0))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch, config.image_height, config.image_width), np.uint8)
    lengths = rng.integers(3, 11, batch)
    labels = rng.integers(1, charset.num_classes, (batch, 25)).astype(np.int32)
    paddings = (np.arange(25)[None] >= lengths[:, None]).astype(np.float32)
    batch_arrays = {"image": images, "labels": labels, "label_paddings": paddings,
                    "mask": np.ones(batch, np.float32)}
    batch_arrays = jax.device_put(batch_arrays)

    if mode == "train":
        step = jax.jit(train.train_step, donate_argnums=(0,))
        key = jax.random.key(1)
        t0 = time.perf_counter()
        compiled = step.lower(state, batch_arrays, key).compile()
        compile_s = time.perf_counter() - t0

        def run():
            nonlocal state
            state, metrics = compiled(state, batch_arrays, key)
            jax.block_until_ready(metrics["loss"])
    else:
        def infer(params, batch_stats, images):
            logits = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                 train=False)
            return logits.argmax(-1)
        t0 = time.perf_counter()
        compiled = jax.jit(infer).lower(state.params, state.batch_stats,
                                        batch_arrays["image"]).compile()
        compile_s = time.perf_counter() - t0

        def run():
            jax.block_until_ready(compiled(state.params, state.batch_stats,
                                           batch_arrays["image"]))
    for _ in range(warmup):
        run()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "median_s": statistics.median(times),
            "gflop_per_image": (train_flops if mode == "train" else forward_flops)(
                config.model, charset.num_classes) / 1e9,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "jax": jax.__version__}


def run_ours(mode: str, name: str, batch: int, reps: int, warmup: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "grcnn_jax.benchmarks.peer", "--_worker",
         json.dumps([mode, name, batch, reps, warmup])],
        capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"our {mode} benchmark ({name}, batch {batch}) failed:\n"
                           f"{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the peer
def peer_available(python: str, script: str) -> str | None:
    """None if the peer can run, else why not."""
    if not os.path.isfile(script):
        return f"no peer script at {script}"
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"{python} cannot import torch"
    return None


def run_peer(python: str, script: str, mode: str, name: str, batch: int, reps: int,
             warmup: int) -> dict:
    cfg = CONFIGS[name]
    out = subprocess.run(
        [python, script, "infer" if mode == "infer" else "train", "--batch", str(batch),
         "--T", str(cfg["T"]), "--hidden", str(cfg["hidden"]), "--reps", str(reps),
         "--warmup", str(warmup)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the peer's {mode} ({name}, batch {batch}) failed:\n"
                           f"{out.stderr[-3000:]}")
    rec = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    rec = next(r for r in rec if r.get("kind") == mode)
    return {"compile_s": 0.0, "median_s": rec["median_s"],
            "gflop_per_image": rec["gflop_per_image"], "peak_rss_mb": rec["peak_rss_mb"],
            "foreign_cpu_frac": rec.get("foreign_cpu_frac"), "torch": rec.get("torch")}


# ----------------------------------------------------------------------------- the table
def summarize(records: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["config"], r["batch"], r["mode"], r["who"]), []).append(r)
    rows = []
    for (name, batch, mode, who), rs in groups.items():
        step = statistics.median(r["median_s"] for r in rs)
        rows.append({"config": name, "batch": batch, "mode": mode, "who": who,
                     "images_per_s": batch / step, "step_ms": 1e3 * step,
                     "compile_s": statistics.median(r["compile_s"] for r in rs),
                     "peak_mb": max(r["peak_rss_mb"] for r in rs),
                     "gflop_per_image": rs[0]["gflop_per_image"], "rounds": len(rs)})
    for row in rows:
        peer = next((p for p in rows if p["who"] == "peer" and
                     (p["config"], p["batch"], p["mode"]) ==
                     (row["config"], row["batch"], row["mode"])), None)
        row["vs_peer"] = row["images_per_s"] / peer["images_per_s"] if peer else None
        row["achieved_gflops"] = row["gflop_per_image"] * row["images_per_s"]
    return rows


def print_table(rows: list[dict]) -> None:
    head = (f"{'config':<6} {'batch':>5} {'mode':<5} {'who':<5} {'images/s':>9} {'step_ms':>8} "
            f"{'compile_s':>9} {'peak_mb':>8} {'vs_peer':>7} {'gflop/img':>9} {'GFLOP/s':>8}")
    print(head)
    for r in rows:
        ratio = f"{r['vs_peer']:.2f}x" if r["vs_peer"] is not None and r["who"] == "ours" else ""
        print(f"{r['config']:<6} {r['batch']:>5} {r['mode']:<5} {r['who']:<5} "
              f"{r['images_per_s']:>9.1f} {r['step_ms']:>8.0f} {r['compile_s']:>9.1f} "
              f"{r['peak_mb']:>8.0f} {ratio:>7} {r['gflop_per_image']:>9.2f} "
              f"{r['achieved_gflops']:>8.1f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m grcnn_jax.benchmarks.peer",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=["grcl", "small"], choices=sorted(CONFIGS))
    p.add_argument("--batches", type=int, nargs="+", default=[32])
    p.add_argument("--modes", nargs="+", default=["train", "infer"], choices=["train", "infer"])
    p.add_argument("--rounds", type=int, default=2, help="alternations of ours and the peer's")
    p.add_argument("--reps", type=int, default=5, help="timed steps per subprocess")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--peer", default=os.path.normpath(DEFAULT_PEER))
    p.add_argument("--peer_python", default=".venv-peer/bin/python")
    p.add_argument("--json", help="write all records and the table rows here")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        print(json.dumps(_ours(*json.loads(args._worker))))
        return

    why_not = peer_available(args.peer_python, args.peer)
    if why_not:
        print(f"# the peer is skipped: {why_not}", file=sys.stderr)
    records = []
    for round_ in range(args.rounds):
        for name in args.configs:
            for batch in args.batches:
                for mode in args.modes:
                    runs = [("ours", lambda: run_ours(mode, name, batch, args.reps, args.warmup))]
                    if not why_not:
                        runs.append(("peer", lambda: run_peer(args.peer_python, args.peer, mode,
                                                              name, batch, args.reps,
                                                              args.warmup)))
                    if round_ % 2:
                        runs.reverse()        # alternate who goes first
                    for who, fn in runs:
                        rec = {"config": name, "batch": batch, "mode": mode, "who": who,
                               "round": round_, **fn()}
                        records.append(rec)
                        print(f"# {who} {name} batch {batch} {mode}: "
                              f"{batch / rec['median_s']:.1f} images/s", file=sys.stderr,
                              flush=True)
    rows = summarize(records)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"records": records, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
