"""Side by side with the PyTorch peer: train step and inference images/s, one table.

    python -m benchmarks.peer                                    # paper + small, batch 32
    python -m benchmarks.peer --configs grcl --batches 32,192 --rounds 3 --json out.json
    python -m benchmarks.peer --peer_python .venv-peer/bin/python \\
        --peer ../shared/bench/torch_grcnn.py
    python -m benchmarks.peer --configs grcl --batches 192 --dtypes float32,bfloat16 \\
        --peak_gflops 989000                                               # a GPU: MFU column

Every measurement runs in a fresh subprocess (so peak memory is its own; ours are
``benchmarks/peer_jobs.py``), and ours and the peer's alternate, round after round, so
that a machine whose speed drifts treats both alike. Both run in the same environment:
this command sets the process settings of ``grcnn_jax.process`` (glibc's malloc on
transparent huge pages) before it starts either, and the header says what they were. Per
(config, batch, mode, dtype) the table shows the median over rounds of each subprocess's
median step time, as images/s, plus:

  compile_s      ours: jit compile time of the step (persistent cache off; the peer is
                 eager: none)
  step_ms        median step time
  peak_mb        peak resident memory of the subprocess (ours: the compile's included)
  run_mb         peak resident memory while the steps run (ours: after the compile, whose
                 scratch memory training hands back, process.release_free_memory; the peer,
                 eager, has no compile: its peak_mb)
  vs_peer        our speed / the peer's: per round, the peer's step time / ours (measured
                 back to back), then the median over rounds, and (min-max) over rounds; one
                 round's ratio is not a verdict on a machine whose speed drifts by 10% (the
                 peer always computes in float32)
  gflop/img      model FLOPs per image, analytic (grcnn_jax.models.flops; the peer: its
                 own analytic count, the same numbers); GFLOP/s = that x images/s
  mfu            GFLOP/s / the machine's peak: --peak_gflops, else (CPU) the float32
                 matrix-product rate measured here, which a GPU's tensor cores exceed

Model FLOPs count every convolution as direct; our 3x3 convolutions run as Winograd
F(2x2, 3x3) on the CPU, which does 2.25x fewer multiplications, so our achieved model
GFLOP/s can pass the machine's measured matmul rate.

Below the table: the training loader's images/s (``config.data.num_workers`` processes, the
synthetic generator) at each batch size, next to which the train step's must stay.

Ours: ``training.state.train_step`` (train-mode BatchNorm, CTC, global-norm clipping at 5,
ADADELTA as the seed and the peer) on a fixed batch, and inference = eval-mode logits +
argmax per frame, as the peer's ``infer``. Configs: ``grcl`` (the paper: T = 5, BLSTM
256), ``small`` (the seed's: T = 3, BLSTM 512), ``reader`` (configs/reader.py's model, the one
that ships: widths 48/48/96/160/256, T = 2, BLSTM 128) and ``tiny`` (configs/tiny.py's, the
tests'); at widths other than its own the peer runs through ``peer_widths.py``, its own
script with its layers built at those widths. The peer
(shared/bench/torch_grcnn.py) needs torch in its own environment (``python3 -m venv
.venv-peer && .venv-peer/bin/pip install torch numpy``); without it only our rows are
printed.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from typing import Sequence

from absl import flags

from grcnn_jax import process
from grcnn_jax.cli import common
from benchmarks.peer_jobs import (CONFIGS, DTYPES, MODES, PEER_WIDTHS, REPO,
                                            peer_model, run_ours)

DEFAULT_PEER = os.path.join(REPO, "..", "shared", "bench", "torch_grcnn.py")
PEER_WIDTHS_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_widths.py")


# ----------------------------------------------------------------------------- the peer
def peer_available(python: str, script: str) -> str | None:
    """None if the peer can run, else why not."""
    if not os.path.isfile(script):
        return f"no peer script at {script}"
    try:
        probe = subprocess.run([python, script, "--help"], capture_output=True, text=True)
    except OSError as e:
        return f"cannot run {python}: {e}"
    if probe.returncode != 0:
        return f"{python} {script} --help fails (is torch installed there?): " \
               f"{probe.stderr.strip().splitlines()[-1:]}"
    return None


def peer_command(python: str, script: str, mode: str, model: dict, batch: int, reps: int,
                 warmup: int) -> list[str]:
    """The peer's command line for ``model`` (``peer_jobs.peer_model``): its script as it is
    at its own widths, else through ``peer_widths.py``."""
    args = ["infer" if mode == "infer" else "train", "--batch", str(batch), "--T",
            str(model["T"]), "--hidden", str(model["hidden"]), "--reps", str(reps),
            "--warmup", str(warmup)]
    if tuple(model["widths"]) == PEER_WIDTHS:
        return [python, script, *args]
    return [python, PEER_WIDTHS_SCRIPT, "--peer", script,
            "--widths", ",".join(map(str, model["widths"])),
            "--gflop", ",".join(f"{g:.6g}" for g in model["gflop"]), "--", *args]


def run_peer(python: str, script: str, mode: str, name: str, model: dict, batch: int,
             reps: int, warmup: int) -> dict:
    """One peer measurement of config ``name``, whose ``peer_jobs.peer_model`` is ``model``."""
    out = subprocess.run(peer_command(python, script, mode, model, batch, reps, warmup),
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the peer's {mode} ({name}, batch {batch}) failed:\n"
                           f"{out.stderr[-3000:]}")
    rec = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    rec = next(r for r in rec if r.get("kind") == mode)
    return {"compile_s": 0.0, "median_s": rec["median_s"],
            "gflop_per_image": rec["gflop_per_image"], "peak_rss_mb": rec["peak_rss_mb"],
            "run_rss_mb": rec["peak_rss_mb"],
            "foreign_cpu_frac": rec.get("foreign_cpu_frac"), "torch": rec.get("torch")}


# ----------------------------------------------------------------------------- the table
def _per_round(records: list[dict]) -> dict[int, float]:
    """round -> that round's median step time (s)."""
    return {r["round"]: r["median_s"] for r in records if "round" in r}


def summarize(records: list[dict], peak_gflops: float | None = None) -> list[dict]:
    """One row per (config, batch, mode, dtype, who): medians over rounds, ratio, MFU.

    ``vs_peer`` (ours only): the median over rounds of that round's ratio (the peer's step time
    / ours, both measured back to back), with ``vs_peer_min`` / ``vs_peer_max`` and every
    round's in ``vs_peer_rounds``; records without rounds give the ratio of the medians."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["config"], r["batch"], r["mode"], r["dtype"], r["who"]),
                          []).append(r)
    rows = []
    for (name, batch, mode, dtype, who), rs in groups.items():
        step = statistics.median(r["median_s"] for r in rs)
        rows.append({"config": name, "batch": batch, "mode": mode, "dtype": dtype, "who": who,
                     "images_per_s": batch / step, "step_ms": 1e3 * step,
                     "compile_s": statistics.median(r["compile_s"] for r in rs),
                     "peak_mb": max(r["peak_rss_mb"] for r in rs),
                     "run_mb": max(r.get("run_rss_mb", r["peak_rss_mb"]) for r in rs),
                     "gflop_per_image": rs[0]["gflop_per_image"], "rounds": len(rs)})
    for row in rows:
        key = (row["config"], row["batch"], row["mode"])
        peer = next((p for p in rows if p["who"] == "peer" and
                     (p["config"], p["batch"], p["mode"]) == key), None)
        row["vs_peer"] = (row["images_per_s"] / peer["images_per_s"]
                          if peer and row["who"] == "ours" else None)
        if row["vs_peer"] is not None:
            ours = _per_round(groups[(*key, row["dtype"], "ours")])
            theirs = _per_round(groups[(*key, peer["dtype"], "peer")])
            ratios = [theirs[k] / ours[k] for k in sorted(ours.keys() & theirs.keys())]
            if ratios:
                row.update(vs_peer=statistics.median(ratios), vs_peer_min=min(ratios),
                           vs_peer_max=max(ratios), vs_peer_rounds=ratios)
        row["achieved_gflops"] = row["gflop_per_image"] * row["images_per_s"]
        row["mfu"] = row["achieved_gflops"] / peak_gflops if peak_gflops else None
    return rows


def print_table(rows: list[dict]) -> None:
    head = (f"{'config':<6} {'batch':>5} {'mode':<5} {'dtype':<8} {'who':<5} {'images/s':>9} "
            f"{'step_ms':>8} {'compile_s':>9} {'peak_mb':>8} {'run_mb':>7} "
            f"{'vs_peer (min-max)':>18} "
            f"{'gflop/img':>9} "
            f"{'GFLOP/s':>8} {'mfu':>6}")
    print(head)
    for r in rows:
        ratio = f"{r['vs_peer']:.2f}x" if r["vs_peer"] is not None else ""
        if r.get("vs_peer_min") is not None and len(r["vs_peer_rounds"]) > 1:
            ratio += f" ({r['vs_peer_min']:.2f}-{r['vs_peer_max']:.2f})"
        mfu = f"{100 * r['mfu']:.0f}%" if r["mfu"] is not None else ""
        print(f"{r['config']:<6} {r['batch']:>5} {r['mode']:<5} {r['dtype']:<8} {r['who']:<5} "
              f"{r['images_per_s']:>9.1f} {r['step_ms']:>8.0f} {r['compile_s']:>9.1f} "
              f"{r['peak_mb']:>8.0f} {r['run_mb']:>7.0f} {ratio:>18} {r['gflop_per_image']:>9.2f} "
              f"{r['achieved_gflops']:>8.1f} {mfu:>6}")


def environment() -> dict:
    return {"python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", ""),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}


def define_flags(flag_values) -> None:
    """The command's flags, on ``flag_values``."""
    common.define_choice_list("configs", ["grcl", "small"], lambda: sorted(CONFIGS),
                               "model configs", flag_values)
    common.define_int_list("batches", [32], "batch sizes, comma-separated", flag_values,
                            lower_bound=1)
    common.define_choice_list("modes", list(MODES), lambda: MODES, "train, infer or both",
                               flag_values)
    common.define_choice_list("dtypes", ["float32"], lambda: DTYPES,
                               "our compute dtypes (the peer: float32)", flag_values)
    flags.DEFINE_integer("rounds", 3, "alternations of ours and the peer's",
                         flag_values=flag_values)
    flags.DEFINE_integer("reps", 5, "timed steps per subprocess", flag_values=flag_values)
    flags.DEFINE_integer("warmup", 2, "untimed steps per subprocess first",
                         flag_values=flag_values)
    flags.DEFINE_string("peer", os.path.normpath(DEFAULT_PEER), "the peer's script",
                        flag_values=flag_values)
    flags.DEFINE_string("peer_python", ".venv-peer/bin/python", "the peer's Python (with torch)",
                        flag_values=flag_values)
    flags.DEFINE_float("peak_gflops", None, "the machine's peak for MFU (default on a CPU: the "
                       "measured float32 matrix-product rate)", flag_values=flag_values)
    flags.DEFINE_integer("loader_batches", 20, "timed loader batches per batch size (0: skip "
                         "the loader)", flag_values=flag_values)
    flags.DEFINE_string("json", None, "write the environment, all records and the rows here",
                        flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> None:
    FLAGS, _ = common.parse_command_line(define_flags, argv, __doc__)

    why_not = peer_available(FLAGS.peer_python, FLAGS.peer)
    if why_not:
        print(f"# the peer is skipped: {why_not}", file=sys.stderr)
    env = environment()
    ceiling = run_ours("ceiling")
    env.update(device=ceiling["device"], matmul_gflops=ceiling["gflops"])
    peak = FLAGS.peak_gflops or (ceiling["gflops"] if ceiling["device"].lower() == "cpu"
                                 else None)
    print(f"# {env['device']}, {env['cpus']} CPUs; float32 matmul {ceiling['gflops']:.0f} "
          f"GFLOP/s; GLIBC_TUNABLES={env['GLIBC_TUNABLES'] or '(none)'}"
          f"{'; XLA_FLAGS=' + env['XLA_FLAGS'] if env['XLA_FLAGS'] else ''}", file=sys.stderr)
    peer_models = {name: peer_model(name) for name in FLAGS.configs}
    for name, model in peer_models.items():
        if not why_not and model is None:
            print(f"# {name}: ours only (the peer's network cannot be this model)",
                  file=sys.stderr)
    records = []
    for round_ in range(FLAGS.rounds):
        for name in FLAGS.configs:
            for batch in FLAGS.batches:
                for mode in FLAGS.modes:
                    runs = [("ours", dtype, lambda dtype=dtype: run_ours(
                        "ours", mode, name, batch, FLAGS.reps, FLAGS.warmup, dtype))
                        for dtype in FLAGS.dtypes]
                    if not why_not and peer_models[name] is not None:
                        runs.append(("peer", "float32", lambda: run_peer(
                            FLAGS.peer_python, FLAGS.peer, mode, name, peer_models[name],
                            batch, FLAGS.reps, FLAGS.warmup)))
                    if round_ % 2:
                        runs.reverse()        # alternate who goes first
                    for who, dtype, fn in runs:
                        rec = {"config": name, "batch": batch, "mode": mode, "dtype": dtype,
                               "who": who, "round": round_, **fn()}
                        records.append(rec)
                        print(f"# {who} {name} batch {batch} {mode} {dtype}: "
                              f"{batch / rec['median_s']:.1f} images/s", file=sys.stderr,
                              flush=True)
    rows = summarize(records, peak)
    print_table(rows)
    loader = []
    if FLAGS.loader_batches:
        for batch in FLAGS.batches:
            res = run_ours("loader", batch, FLAGS.loader_batches, 3)
            loader.append({"batch": batch, **res})
            train_rows = [r for r in rows if r["who"] == "ours" and r["mode"] == "train"
                          and r["batch"] == batch]
            fastest = max((r["images_per_s"] for r in train_rows), default=None)
            print(f"loader batch {batch}: {res['images_per_s']:.0f} images/s with "
                  f"{res['workers']} workers (synthetic words)"
                  + (f"; our fastest train step at this batch: {fastest:.0f} images/s"
                     if fastest else ""))
    if FLAGS.json:
        with open(FLAGS.json, "w") as f:
            json.dump({"environment": env, "peak_gflops": peak, "records": records,
                       "rows": rows, "loader": loader}, f, indent=1)


def run() -> None:
    """The ``python -m benchmarks.peer`` command."""
    process.configure()
    main()


if __name__ == "__main__":
    run()
