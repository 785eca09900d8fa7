"""Training on the CPU backend with tiny configs: data parallel, several hosts, exact resume."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import REPO, load_config
from grcnn_jax.checkpoints import load_state_arrays
from grcnn_jax.data.crnn_lmdb import write_lmdb
from grcnn_jax.writers import read_metrics

WORDS = ["grcnn", "ctc", "lstm", "gate", "jax", "flax", "scan", "text", "word", "2017", "nips",
         "recur", "conv", "read"]


def make_lmdb(path, n=48):
    def record(i):
        text = WORDS[i % len(WORDS)]
        rng = np.random.default_rng(i)
        im = Image.new("L", (16 + 9 * len(text), 20), int(rng.integers(150, 255)))
        ImageDraw.Draw(im).text((3, 4), text, fill=int(rng.integers(0, 80)))
        import io
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return {"image": buf.getvalue(), "text": text}
    write_lmdb(path, (record(i) for i in range(n)))
    return str(path)


@pytest.fixture(scope="module")
def train_lmdb(tmp_path_factory):
    return make_lmdb(tmp_path_factory.mktemp("data") / "train.lmdb")


def tiny_overrides(data, steps, **extra):
    flags = {
        "model.T": 2, "model.conv0_features": 8, "model.grcl_features": "(8,8,16)",
        "model.out_features": 16, "model.hidden": 8,
        "optimizer.name": "adam", "optimizer.learning_rate": 3e-3,
        "batch_size": 8, "eval_batch_size": 8, "num_train_steps": steps, "log_every": 1,
        "eval_every": 1000, "checkpoint_every": 1000, "data.train": data, "data.val": data,
        "data.num_workers": 0, "async_checkpoints": False,
    }
    flags.update(extra)
    return [f"--config.{k}={v}" for k, v in flags.items()]


# `python -m grcnn_jax.main` whose process SIGKILLs itself once the checkpoint of step
# KILL_AT is on disk: a crash at a known point, with nothing in the product for it.
KILL_AFTER_CHECKPOINT = """
import os, runpy, signal, sys
from grcnn_jax import checkpoints
KILL_AT, save = int(sys.argv.pop(1)), checkpoints.Saver.save
def save_then_die(self, step, *args, **kwargs):
    save(self, step, *args, **kwargs)
    if step == KILL_AT:
        self.manager.wait_until_finished()
        os.kill(os.getpid(), signal.SIGKILL)
checkpoints.Saver.save = save_then_die
sys.argv[0] = "grcnn_jax.main"
runpy.run_module("grcnn_jax.main", run_name="__main__")
"""


def run_main(workdir, overrides, env_extra=None, extra_args=(), check=True, timeout=300,
             kill_after_checkpoint=None):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", **(env_extra or {}))
    main = ["-m", "grcnn_jax.main"] if kill_after_checkpoint is None else [
        "-c", KILL_AFTER_CHECKPOINT, str(kill_after_checkpoint)]
    cmd = [sys.executable, *main, f"--config={REPO / 'configs' / 'grcl.py'}",
           f"--workdir={workdir}", *overrides, *extra_args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
    return proc


def final_params(workdir):
    return load_state_arrays(str(workdir))


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6):
    import jax

    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def losses(workdir):
    return {r["step"]: r["train/loss"] for r in read_metrics(workdir) if "train/loss" in r}


@pytest.fixture(scope="module")
def reference_run(train_lmdb, tmp_path_factory):
    """6 steps straight on one device."""
    workdir = tmp_path_factory.mktemp("straight")
    run_main(workdir, tiny_overrides(train_lmdb, 6))
    return workdir


# SGD for the topology comparisons: Adam and ADADELTA divide by the gradient's running RMS,
# which turns float32 reduction-order noise in near-zero gradients into lr-sized differences;
# SGD keeps a difference in the gradients a difference of the same size in the parameters.
SGD = {"optimizer.name": "sgd", "optimizer.learning_rate": 0.05}


@pytest.fixture(scope="module")
def reference_sgd_run(train_lmdb, tmp_path_factory):
    """6 SGD steps on one device, one process."""
    workdir = tmp_path_factory.mktemp("straight_sgd")
    run_main(workdir, tiny_overrides(train_lmdb, 6, **SGD))
    return workdir


def initial_state(overrides):
    """The train state main.py starts from for these --config overrides (same seed)."""
    import ast

    import jax

    from grcnn_jax.charset import Charset
    from grcnn_jax.models import create_model
    from grcnn_jax.train import create_train_state

    config = load_config("grcl")
    for flag in overrides:
        key, value = flag.removeprefix("--config.").split("=", 1)
        *parents, leaf = key.split(".")
        node = config
        for p in parents:
            node = node[p]
        if isinstance(node[leaf], str):
            node[leaf] = value
        else:
            node[leaf] = type(node[leaf])(ast.literal_eval(value))
    model = create_model(config.model, Charset.from_spec(config.charset).num_classes)
    return jax.device_get(create_train_state(config, model, jax.random.key(config.seed)))


def relative_difference(a, b, start):
    """||(a - start) - (b - start)|| / ||b - start||: the disagreement of two runs relative
    to how far training moved the parameters, over the whole tree."""
    import jax

    diff = sum(float(np.sum((np.asarray(x) - np.asarray(y)) ** 2))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    moved = sum(float(np.sum((np.asarray(y) - np.asarray(s)) ** 2))
                for y, s in zip(jax.tree.leaves(b), jax.tree.leaves(start)))
    return (diff / moved) ** 0.5


def assert_same_training(reference, other, overrides):
    """Equal up to float32 reduction order: splitting the batch over devices or hosts changes
    the order of the sums (BatchNorm statistics, kernel gradients). Measured: the first
    step's gradients on 4 devices and on 1 differ by 2.4e-6 of their norm; after 6 SGD steps
    the parameters by 1.6e-3 and the BN statistics by 4.4e-4 of the distance trained (the
    tiny model amplifies rounding: BN scales that feed another BN get near-zero, cancelling
    gradients). A real difference in what is computed (per-device BatchNorm statistics, a
    wrong share of the batch) is of the order of 1."""
    (step_1, state_1), (step_n, state_n) = final_params(reference), final_params(other)
    assert step_1 == step_n == 6
    start = initial_state(overrides)
    for part in ("params", "batch_stats"):
        assert relative_difference(state_n[part], state_1[part], getattr(start, part)) < 1e-2
    np.testing.assert_allclose(list(losses(reference).values()), list(losses(other).values()),
                               rtol=1e-4)


def test_data_parallel_on_four_devices_matches_one(reference_sgd_run, train_lmdb, tmp_path):
    overrides = tiny_overrides(train_lmdb, 6, **SGD)
    run_main(tmp_path, overrides,
             env_extra={"XLA_FLAGS": os.environ.get("XLA_FLAGS", "")
                        + " --xla_force_host_platform_device_count=4"})
    assert_same_training(reference_sgd_run, tmp_path, overrides)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one(reference_sgd_run, train_lmdb, tmp_path):
    port = free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    procs = [subprocess.Popen(
        [sys.executable, "-m", "grcnn_jax.main", f"--config={REPO / 'configs' / 'grcl.py'}",
         f"--workdir={tmp_path}", *tiny_overrides(train_lmdb, 6, **SGD),
         f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-4000:]
    assert_same_training(reference_sgd_run, tmp_path, tiny_overrides(train_lmdb, 6, **SGD))
    # Each host saved its own data-iterator position.
    data_dir = os.path.join(tmp_path, "checkpoints", "6", "data")
    assert {"process_0-of-2.json", "process_1-of-2.json"} <= set(os.listdir(data_dir))


def test_resume_after_sigkill_is_exact(reference_run, train_lmdb, tmp_path):
    overrides = tiny_overrides(train_lmdb, 6, checkpoint_every=3)
    killed = run_main(tmp_path, overrides, check=False, kill_after_checkpoint=3)
    assert killed.returncode == -signal.SIGKILL
    assert final_params(tmp_path)[0] == 3
    run_main(tmp_path, overrides)
    step, state = final_params(tmp_path)
    assert step == 6
    assert_trees_close(final_params(reference_run)[1], state, rtol=0, atol=0)
    straight, resumed = losses(reference_run), losses(tmp_path)
    assert [straight[s] for s in (4, 5, 6)] == [resumed[s] for s in (4, 5, 6)]


def test_sigterm_saves_and_exits_cleanly(train_lmdb, tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "grcnn_jax.main", f"--config={REPO / 'configs' / 'grcl.py'}",
         f"--workdir={tmp_path}", *tiny_overrides(train_lmdb, 100_000)],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    step, _ = final_params(tmp_path)
    assert 3 <= step < 100_000
    assert "stopped by SIGTERM" in err


def test_non_finite_loss_stops_with_the_step(train_lmdb, tmp_path):
    proc = run_main(tmp_path, tiny_overrides(train_lmdb, 50, checkpoint_every=1, **{
        "optimizer.learning_rate": 1e30, "grad_clip_norm": 0.0}), check=False)
    assert proc.returncode != 0
    assert "NonFiniteLossError: step" in proc.stderr
    failed_at = int(proc.stderr.split("NonFiniteLossError: step ")[1].split(":")[0])
    step, state = final_params(tmp_path)
    assert step < failed_at
    import jax
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state["params"]))


def test_config_typo_fails_before_anything_runs(tmp_path):
    proc = run_main(tmp_path, ["--config.batch_sise=4"], check=False, timeout=60)
    assert proc.returncode != 0 and "batch_sise" in proc.stderr and "batch_size" in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_model_mismatch_on_resume_is_reported(reference_run, train_lmdb, tmp_path):
    import shutil

    shutil.copytree(reference_run, tmp_path, dirs_exist_ok=True)
    proc = run_main(tmp_path, tiny_overrides(train_lmdb, 8) + ["--config.model.hidden=12"],
                    check=False)
    assert proc.returncode != 0
    assert "model.hidden=8 there, 12 now" in proc.stderr
