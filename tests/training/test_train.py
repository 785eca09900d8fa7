"""Training on the CPU backend with tiny configs: data parallel, several hosts, exact resume.

Runs train in this process (``train.train_and_evaluate``); a subprocess only where the process
is under test: SIGKILL, SIGTERM, 4 devices (a process-start flag), 2 processes, the command
line's flag parsing."""

import os
import signal
import time

import numpy as np
import pytest

from helpers import (free_port, make_lmdb, once_per_session, run_main, start_main,
                     subprocess_env, tiny_config, tiny_overrides, trained_once)
from grcnn_jax import process
from grcnn_jax.cli import common
from grcnn_jax.training import setup, train
from grcnn_jax.workdir.checkpoints import load_state_arrays
from grcnn_jax.workdir.writers import read_metrics


@pytest.fixture(scope="module")
def train_lmdb(tmp_path_factory):
    """48 word images (helpers.make_lmdb), one LMDB for all the runs of a session."""
    folder = once_per_session(tmp_path_factory, "words48", lambda d: make_lmdb(d / "train.lmdb"))
    return str(folder / "train.lmdb")


# `python -m grcnn_jax.main` whose process SIGKILLs itself once the checkpoint of step
# KILL_AT is on disk: a crash at a known point, with nothing in the product for it.
KILL_AFTER_CHECKPOINT = """
import os, runpy, signal, sys
from grcnn_jax.workdir import guard
KILL_AT, save = int(sys.argv.pop(1)), guard.Saver.save
def save_then_die(self, step, *args, **kwargs):
    save(self, step, *args, **kwargs)
    if step == KILL_AT:
        self.manager.wait_until_finished()
        os.kill(os.getpid(), signal.SIGKILL)
guard.Saver.save = save_then_die
sys.argv[0] = "grcnn_jax.main"
runpy.run_module("grcnn_jax.main", run_name="__main__")
"""


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
    """6 steps straight on one device (in a test process, once a session)."""
    return trained_once(tmp_path_factory, "straight", tiny_config(train_lmdb, 6))


# SGD for the topology comparisons: Adam and ADADELTA divide by the gradient's running RMS,
# which turns float32 reduction-order noise in near-zero gradients into lr-sized differences;
# SGD keeps a difference in the gradients a difference of the same size in the parameters.
SGD = {"optimizer.name": "sgd", "optimizer.learning_rate": 0.05}


@pytest.fixture(scope="module")
def reference_sgd_run(train_lmdb, tmp_path_factory):
    """6 SGD steps on one device, one process (a test process, once a session)."""
    return trained_once(tmp_path_factory, "straight_sgd", tiny_config(train_lmdb, 6, **SGD))


def initial_state(config):
    """The train state training starts from for ``config`` (same seed)."""
    import jax

    from grcnn_jax.text.charset import Charset
    from grcnn_jax.models import create_model

    model = create_model(config.model, Charset.from_spec(config.charset).num_classes)
    return jax.device_get(setup.train_state_of(config, model, jax.random.key(config.seed)))


def relative_difference(a, b, start):
    """||(a - start) - (b - start)|| / ||b - start||: the disagreement of two runs relative
    to how far training moved the parameters, over the whole tree."""
    import jax

    diff = sum(float(np.sum((np.asarray(x) - np.asarray(y)) ** 2))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    moved = sum(float(np.sum((np.asarray(y) - np.asarray(s)) ** 2))
                for y, s in zip(jax.tree.leaves(b), jax.tree.leaves(start)))
    return (diff / moved) ** 0.5


def assert_same_training(reference, other, config):
    """Equal up to float32 reduction order: splitting the batch over devices or hosts changes
    the order of the sums (BatchNorm statistics, kernel gradients). Measured: the first
    step's gradients on 4 devices and on 1 differ by 2.4e-6 of their norm; after 6 SGD steps
    the parameters by 1.6e-3 and the BN statistics by 4.4e-4 of the distance trained (the
    tiny model amplifies rounding: BN scales that feed another BN get near-zero, cancelling
    gradients); the losses of the sixth step by up to 1.8e-4 of their value (on an AMD EPYC
    VM). A real difference in what is computed (per-device BatchNorm statistics, a wrong
    share of the batch) is of the order of 1."""
    (step_1, state_1), (step_n, state_n) = final_params(reference), final_params(other)
    assert step_1 == step_n == 6
    start = initial_state(config)
    for part in ("params", "batch_stats"):
        assert relative_difference(state_n[part], state_1[part], getattr(start, part)) < 1e-2
    np.testing.assert_allclose(list(losses(reference).values()), list(losses(other).values()),
                               rtol=1e-3)


def test_data_parallel_on_four_devices_matches_one(reference_sgd_run, train_lmdb, tmp_path):
    run_main(tmp_path, tiny_overrides(train_lmdb, 6, **SGD),
             env=subprocess_env(XLA_FLAGS=os.environ.get("XLA_FLAGS", "")
                                + " --xla_force_host_platform_device_count=4"))
    assert_same_training(reference_sgd_run, tmp_path, tiny_config(train_lmdb, 6, **SGD))


def test_two_processes_match_one(reference_sgd_run, train_lmdb, tmp_path):
    port = free_port()
    procs = [start_main(tmp_path, tiny_overrides(train_lmdb, 6, **SGD),
                        f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2",
                        f"--process_id={i}") for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-4000:]
    assert_same_training(reference_sgd_run, tmp_path, tiny_config(train_lmdb, 6, **SGD))
    # Each host saved its own data-iterator position.
    data_dir = os.path.join(tmp_path, "checkpoints", "6", "data")
    assert {"process_0-of-2.json", "process_1-of-2.json"} <= set(os.listdir(data_dir))


def test_resume_after_sigkill_is_exact(reference_run, train_lmdb, tmp_path):
    """Killed by SIGKILL in a subprocess after the checkpoint of step 3, resumed here: the
    same bits as the straight run."""
    killed = run_main(tmp_path, tiny_overrides(train_lmdb, 6, checkpoint_every=3), check=False,
                      launcher=("-c", KILL_AFTER_CHECKPOINT, "3"))
    assert killed.returncode == -signal.SIGKILL
    assert final_params(tmp_path)[0] == 3
    train.train_and_evaluate(tiny_config(train_lmdb, 6, checkpoint_every=3), str(tmp_path))
    step, state = final_params(tmp_path)
    assert step == 6
    assert_trees_close(final_params(reference_run)[1], state, rtol=0, atol=0)
    straight, resumed = losses(reference_run), losses(tmp_path)
    assert [straight[s] for s in (4, 5, 6)] == [resumed[s] for s in (4, 5, 6)]


def test_sigterm_saves_and_exits_cleanly(train_lmdb, tmp_path):
    proc = start_main(tmp_path, tiny_overrides(train_lmdb, 100_000))
    metrics = tmp_path / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (metrics.exists()
                                          and metrics.read_text().count("\n") >= 3):
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    step, _ = final_params(tmp_path)
    assert 3 <= step < 100_000
    assert "stopped by SIGTERM" in err


def test_non_finite_loss_stops_with_the_step(train_lmdb, tmp_path):
    config = tiny_config(train_lmdb, 50, checkpoint_every=1,
                         **{"optimizer.learning_rate": 1e30, "grad_clip_norm": 0.0})
    with pytest.raises(train.NonFiniteLossError, match=r"^step \d+: ") as e:
        train.train_and_evaluate(config, str(tmp_path))
    # The command refuses it with one line: 'FATAL NonFiniteLossError: step N: ...'.
    assert isinstance(e.value, common.REFUSALS)
    line = process.fatal_line(e.value)
    assert line.startswith("FATAL NonFiniteLossError: step ")
    failed_at = int(line.split("NonFiniteLossError: step ")[1].split(":")[0])
    step, state = final_params(tmp_path)
    assert step < failed_at
    import jax
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state["params"]))


def test_a_checkpoint_reads_by_a_relative_path(reference_run, monkeypatch):
    from grcnn_jax.workdir.checkpoints import read_for_inference

    step_dir = os.path.join(str(reference_run), "checkpoints", "6")
    monkeypatch.chdir(os.path.dirname(str(reference_run)))
    ckpt = read_for_inference(os.path.relpath(step_dir))
    assert ckpt.step == 6
    assert_trees_close(ckpt.params, final_params(reference_run)[1]["params"], rtol=0, atol=0)


def test_config_typo_fails_before_anything_runs(tmp_path):
    proc = run_main(tmp_path, ["--config.batch_sise=4"], check=False, timeout=60)
    assert proc.returncode != 0 and "batch_sise" in proc.stderr and "batch_size" in proc.stderr
    assert not (tmp_path / "checkpoints").exists()


def test_model_mismatch_on_resume_is_reported(reference_run, train_lmdb, tmp_path):
    import shutil

    shutil.copytree(reference_run, tmp_path, dirs_exist_ok=True)
    with pytest.raises(ValueError) as e:
        train.train_and_evaluate(tiny_config(train_lmdb, 8, **{"model.hidden": 12}),
                                 str(tmp_path))
    assert isinstance(e.value, common.REFUSALS)          # the command: one FATAL line
    assert "model.hidden=8 there, 12 now" in str(e.value)
