"""The GPU check, one command: side by side with the peer at batch 192 in float32 and bfloat16
with MFU, then a few minutes of paper-config training from the generator, in one JSON and a
short table.

    python -m benchmarks.gpu_check --out runs/gpu_check
    python -m benchmarks.gpu_check --out /tmp/g --config tiny --batch 4 \\
        --train_seconds 25 --rounds 1                                       # a CPU smoke run

Not yet run on a GPU. Its length: 3 rounds x 2 dtypes x 2 modes of our subprocesses (each
compiles) plus the peer's, then ``--train_seconds`` (180) of training after its compile,
then the loader; the CPU smoke run above took 88 s on the 2-core machine.

1. ``benchmarks.peer`` (its own subprocess per measurement, ours and the peer's
   alternating over ``--rounds``): train step and inference images/s, peak memory, compile
   time, and MFU against the device's peak (``PEAK_GFLOPS`` by device name, or
   ``--peak_gflops``; the bfloat16 dense tensor-core peak, which float32 does not reach).
2. Training: ``python -m grcnn_jax.main`` on ``configs/<config>.py`` (the generator, all CPU
   cores as loader workers) for ``--train_seconds``, stopped by SIGTERM (which saves a
   checkpoint and exits cleanly); images/s and the loss curve from its metrics.jsonl.
3. The loader alone at the same batch with the same workers: does it keep up with the step?

Writes ``OUT/gpu_check.json`` (everything) and prints the table. Without a GPU it runs the
same on the CPU (MFU then against the measured matmul rate).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Sequence

from absl import flags

from grcnn_jax import process
from grcnn_jax.cli import common
from benchmarks import peer

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), ".."))
# Dense bfloat16 tensor-core peaks, GFLOP/s (vendor data sheets, without sparsity).
PEAK_GFLOPS = {"H200": 989_000.0, "H100": 989_000.0, "A100": 312_000.0, "L4": 121_000.0}


def peak_for(device_kind: str) -> float | None:
    """``PEAK_GFLOPS`` of the device whose name contains a known model, else None."""
    return next((v for k, v in PEAK_GFLOPS.items() if k.lower() in device_kind.lower()), None)


def device_kind() -> str:
    import jax

    return str(jax.devices()[0].device_kind)


def train_for(config: str, batch: int, seconds: float, workdir: str, workers: int,
              steps: int = 1_000_000, startup_limit_s: float = 600.0) -> dict:
    """Trains ``configs/<config>.py`` for ``seconds`` after its first logged steps (then
    SIGTERM, which saves and exits); returns the run's train rows (step, loss, images_per_s),
    its wall time (compile included) and how it ended."""
    cmd = [sys.executable, "-m", "grcnn_jax.main", f"--config={REPO}/configs/{config}.py",
           f"--workdir={workdir}", f"--config.batch_size={batch}",
           f"--config.num_train_steps={steps}", "--config.log_every=10",
           "--config.eval_every=1000000", "--config.checkpoint_every=1000000",
           "--config.data.val=", f"--config.data.num_workers={workers}"]
    path = os.path.join(workdir, "metrics.jsonl")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    # The clock starts at the first logged steps: compiling is not part of the training time.
    start, deadline = time.perf_counter(), None
    while proc.poll() is None:
        now = time.perf_counter()
        if deadline is None and os.path.exists(path) and os.path.getsize(path) > 0:
            deadline = now + seconds
        if (deadline is not None and now > deadline) or now - start > startup_limit_s:
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.2)
    _, err = proc.communicate(timeout=600)
    wall = time.perf_counter() - start
    rows = []
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    train = [{"step": r["step"], "loss": r["train/loss"],
              "images_per_s": r["train/images_per_s"]} for r in rows if "train/loss" in r]
    if proc.returncode != 0 or not train:
        raise RuntimeError(f"training exited {proc.returncode} after {wall:.0f} s: "
                           f"{err.strip().splitlines()[-1] if err.strip() else 'no output'}")
    return {"rows": train, "wall_s": wall, "stopped_by_sigterm": "stopped by SIGTERM" in err}


def loader_rate(batch: int, workers: int, batches: int) -> float:
    """The training loader alone on the generator: images/s at ``batch`` with ``workers``."""
    from benchmarks.data_loader import loader_images_per_s
    from grcnn_jax.data.synth.generator import SynthWords

    return loader_images_per_s(SynthWords(length=10**8, seed=0), batch, workers, batches, 2)


def summarize_training(run: dict) -> dict:
    """Steady images/s (median of the log windows after the first, which compiles), and the
    loss at the start and the end."""
    import statistics

    rows = run["rows"]
    steady = [r["images_per_s"] for r in rows[1:]] or [rows[0]["images_per_s"]]
    return {"steps": rows[-1]["step"], "images_per_s": statistics.median(steady),
            "loss_first": rows[0]["loss"], "loss_last": rows[-1]["loss"]}


def define_flags(flag_values) -> None:
    """The command's flags, on ``flag_values``."""
    flags.DEFINE_string("out", None, "folder for gpu_check.json and the run",
                        flag_values=flag_values)
    flags.mark_flag_as_required("out", flag_values=flag_values)
    flags.DEFINE_string("config", "grcl", "configs/<name>.py (peer.py's name too)",
                        flag_values=flag_values)
    flags.DEFINE_integer("batch", 192, "images per batch, everywhere", flag_values=flag_values)
    flags.DEFINE_integer("rounds", 3, "peer.py's --rounds", flag_values=flag_values)
    common.define_choice_list("dtypes", list(peer.DTYPES), lambda: peer.DTYPES,
                               "our compute dtypes", flag_values)
    flags.DEFINE_float("train_seconds", 180.0, "seconds of training after its first logged "
                       "steps", flag_values=flag_values)
    flags.DEFINE_integer("loader_batches", 20, "timed batches of the loader alone",
                         flag_values=flag_values)
    flags.DEFINE_float("peak_gflops", None, "default: PEAK_GFLOPS by device name",
                       flag_values=flag_values)
    flags.DEFINE_string("peer", None, "peer.py's --peer (its default otherwise)",
                        flag_values=flag_values)
    flags.DEFINE_string("peer_python", None, "peer.py's --peer_python",
                        flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> int:
    FLAGS, _ = common.parse_command_line(define_flags, argv, __doc__)
    os.makedirs(FLAGS.out, exist_ok=True)
    kind = device_kind()
    peak = FLAGS.peak_gflops or peak_for(kind)
    bench_json = os.path.join(FLAGS.out, "peer.json")
    bench_args = [f"--configs={FLAGS.config}", f"--batches={FLAGS.batch}",
                  f"--dtypes={','.join(FLAGS.dtypes)}", f"--rounds={FLAGS.rounds}",
                  "--loader_batches=0", f"--json={bench_json}"]
    bench_args += [f"--peak_gflops={peak}"] if peak else []
    bench_args += [f"--peer={FLAGS.peer}"] if FLAGS.peer else []
    bench_args += [f"--peer_python={FLAGS.peer_python}"] if FLAGS.peer_python else []
    peer.main(bench_args)
    with open(bench_json, encoding="utf-8") as f:
        bench = json.load(f)
    workers = os.cpu_count() or 1
    training_run = train_for(FLAGS.config, FLAGS.batch, FLAGS.train_seconds,
                             os.path.join(FLAGS.out, "train"), workers)
    training = summarize_training(training_run)
    loader = loader_rate(FLAGS.batch, workers, FLAGS.loader_batches)
    result = {"device": kind, "peak_gflops": peak, "batch": FLAGS.batch, "config": FLAGS.config,
              "benchmark": bench, "training": {**training, **training_run},
              "loader": {"workers": workers, "images_per_s": loader,
                         "keeps_up": loader >= training["images_per_s"]}}
    with open(os.path.join(FLAGS.out, "gpu_check.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"\n{kind}: config {FLAGS.config}, batch {FLAGS.batch}")
    for r in bench["rows"]:
        mfu = f", MFU {100 * r['mfu']:.1f}%" if r.get("mfu") is not None else ""
        vs = f", {r['vs_peer']:.2f}x the peer" if r.get("vs_peer") else ""
        print(f"  {r['who']:4} {r['mode']:5} {r['dtype']:8} {r['images_per_s']:9.1f} images/s"
              f"{vs}{mfu}")
    print(f"  training {training_run['wall_s']:.0f} s: {training['steps']} steps, "
          f"{training['images_per_s']:.0f} images/s, loss {training['loss_first']:.2f} -> "
          f"{training['loss_last']:.2f}")
    print(f"  loader alone, {workers} workers: {loader:.0f} images/s "
          f"({'keeps up' if result['loader']['keeps_up'] else 'the bottleneck'})")
    print(f"wrote {os.path.join(FLAGS.out, 'gpu_check.json')}")
    return 0


def run() -> None:
    """The ``python -m benchmarks.gpu_check`` command."""
    with common.refusals_as_one_line():
        sys.exit(main())


if __name__ == "__main__":
    run()
