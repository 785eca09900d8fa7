"""Faults and bad input: a locked workdir, damaged checkpoints, a failed save, impossible
configs, true case, missing LMDB records, metrics after a resume, shared memory at exit."""

import json
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import load_config
from helpers import (IC03_MINI, assert_one_fatal_line, make_lmdb, run_command, run_main,
                     tiny_config, tiny_overrides, trained_once)

from grcnn_jax.workdir import checkpoints
from grcnn_jax.training import train
from grcnn_jax.workdir import guard
from grcnn_jax.workdir.guard import CheckpointError
from grcnn_jax.inference.load import load_for_inference
from grcnn_jax.config.check import ConfigError, validate
from grcnn_jax.workdir.lock import WorkdirLock, WorkdirLockedError


@pytest.fixture(scope="module")
def trained(lmdb_path, tmp_path_factory):
    """A tiny run with checkpoints at steps 2 and 4 (once a session; tests change copies)."""
    workdir = trained_once(tmp_path_factory, "faults",
                           tiny_config(lmdb_path, 4, checkpoint_every=2, eval_every=2))
    assert checkpoints.saved_steps(str(workdir)) == [2, 4]
    return workdir


# ----------------------------------------------------------------------------- 1. the lock
def test_a_second_run_on_a_workdir_is_refused_naming_the_holder(lmdb_path, tmp_path):
    with WorkdirLock(str(tmp_path)):
        with pytest.raises(WorkdirLockedError, match=f"pid {os.getpid()} on host"):
            train.train_and_evaluate(tiny_config(lmdb_path, 2), str(tmp_path))
        proc = run_main(tmp_path, tiny_overrides(lmdb_path, 2), check=False)
    assert proc.returncode != 0
    line = assert_one_fatal_line(proc.stderr, "WorkdirLockedError")
    assert f"pid {os.getpid()}" in line and str(tmp_path) in line
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_a_lock_left_by_a_dead_run_is_taken_over(tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps({"host": "h", "pid": dead.pid, "time": 0}))
    with caplog.at_level(logging.INFO, logger="grcnn_jax"):
        with WorkdirLock(str(tmp_path)) as lock:
            assert json.loads(open(lock.path).read())["pid"] == os.getpid()
    assert f"pid {dead.pid}" in caplog.text and "taking it over" in caplog.text
    assert (tmp_path / ".lock").read_text() == ""          # released: nothing left running


# ----------------------------------------------------------------------------- 2. damage
def _damage(workdir, how):
    step_dir = workdir / "checkpoints" / "4"
    if how == "empty_newer_step":
        (workdir / "checkpoints" / "6").mkdir()
        return 6
    if how == "truncated_state_file":
        files = sorted((step_dir / "state").rglob("d/*"), key=lambda p: -p.stat().st_size)
        with open(files[0], "r+b") as f:
            f.truncate(10)
    elif how == "deleted_metadata":
        (step_dir / "state" / "_METADATA").unlink()
    return 4


@pytest.mark.parametrize("how", ["empty_newer_step", "truncated_state_file", "deleted_metadata"])
def test_a_damaged_latest_step_is_skipped_by_evaluate_and_resume(trained, lmdb_path, tmp_path,
                                                                 how, caplog):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    bad = _damage(workdir, how)
    good = 4 if bad == 6 else 2
    with caplog.at_level(logging.WARNING, logger="grcnn_jax"):
        assert load_for_inference(str(workdir)).step == good
    assert f"checkpoints{os.sep}{bad} is unreadable" in caplog.text
    with pytest.raises(CheckpointError, match=f"checkpoints{os.sep}{bad}' is unreadable"):
        load_for_inference(str(workdir), step=str(bad))
    assert (workdir / "checkpoints" / str(bad)).exists()       # evaluation moves nothing

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="grcnn_jax"):
        state = train.train_and_evaluate(tiny_config(lmdb_path, 8, checkpoint_every=2),
                                         str(workdir))
    assert int(state.step) == 8
    assert f"resumed from step {good}" in caplog.text
    assert (workdir / guard.QUARANTINE_DIR / str(bad)).is_dir()
    assert checkpoints.saved_steps(str(workdir))[-1] == 8
    rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
    steps = [r["step"] for r in rows if "train/loss" in r]
    assert steps == list(range(1, 9))                 # the replayed steps are there once


def test_no_usable_step_is_one_error_and_moves_nothing(trained, lmdb_path, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(trained, workdir)
    for step in (2, 4):
        (workdir / "checkpoints" / str(step) / "state" / "_METADATA").unlink()
    with pytest.raises(CheckpointError, match="no usable checkpoint.*step 4.*step 2"):
        train.train_and_evaluate(tiny_config(lmdb_path, 6), str(workdir))
    assert checkpoints.saved_steps(str(workdir)) == [2, 4]


# ----------------------------------------------------------------------------- 4. failed save
@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_a_failed_save_stops_training_in_one_line(lmdb_path, tmp_path):
    """A real write failure: files may not grow past 8 kB (EFBIG, as a full disk's ENOSPC)."""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8000, 8000))

    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(GRCNN_COMPILATION_CACHE="0", JAX_PLATFORMS="cpu")
    proc = run_main(tmp_path, tiny_overrides(lmdb_path, 40, checkpoint_every=4,
                                             async_checkpoints=True),
                    env=env, check=False, preexec_fn=limit_file_size)
    assert proc.returncode != 0
    line = assert_one_fatal_line(proc.stderr, "CheckpointSaveError")
    # The cause: the OS's "File too large" where orbax's reports carry it (under load its
    # threads may first report a read of the cut file instead), always in parentheses.
    assert re.search(r"saving the checkpoint of step 4 failed \((File too large; )?"
                     r"\w+: .+\); training stopped at step \d+; the last good checkpoint is "
                     r"none$", line), line
    stopped = int(line.split("training stopped at step ")[1].split(";")[0])
    assert 4 <= stopped <= 8, line


# ----------------------------------------------------------------------------- 5. config
def test_geometry_that_cannot_fit_the_labels_is_refused_before_the_workdir(tmp_path):
    config = load_config("quickstart")
    config.image_width = 7
    with pytest.raises(ConfigError, match=r"config.image_width=7: must be >= 96 .* gives 2"):
        train.train_and_evaluate(config, str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()


def test_the_refusal_is_one_line_and_its_traceback_is_there_with_v1(tmp_path):
    from grcnn_jax.process import traceback_requested

    plain = run_main(tmp_path / "a", ["--config.image_width=7"], check=False)
    assert_one_fatal_line(plain.stderr, "ConfigError")
    verbose = run_main(tmp_path / "b", ["--config.image_width=7"], "-v", "1", check=False)
    assert verbose.returncode != 0 and "Traceback" in verbose.stderr
    assert "ConfigError: config.image_width=7" in verbose.stderr
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert traceback_requested(["--verbosity=2"]) and not traceback_requested(["-v", "0"])
    assert not traceback_requested(["--config.x=1"])


def test_every_bad_field_is_named_at_once():
    config = load_config("grcl")
    config.batch_size, config.model.dtype, config.optimizer.learning_rate = 0, "fp8", -1.0
    config.data.augment_strength, config.data.augment_edge_cut = 4.0, 0.5
    config.confidence_penalty = -0.1
    with pytest.raises(ConfigError) as e:
        validate(config)
    for field in ("config.batch_size=0", "config.model.dtype='fp8'",
                  "config.optimizer.learning_rate=-1.0", "config.data.augment_strength=4.0",
                  "config.data.augment_edge_cut=0.5", "config.confidence_penalty=-0.1"):
        assert field in str(e.value)


def test_the_shipped_configs_are_valid():
    for name in ("grcl", "grcl_small", "rcl", "cnn", "quickstart", "reader", "tiny"):
        validate(load_config(name))


# ----------------------------------------------------------------------------- 6. case
def test_case_sensitive_evaluation_compares_the_labels_true_case():
    from grcnn_jax.evaluation import scoring as evaluate

    ckpt = load_for_inference(checkpoint="pretrained")
    fixture = str(IC03_MINI)   # Hotel EXIT park 2017 Coffee Stop
    reports = {}
    for case_sensitive in (False, True):
        predictions = {}
        report = evaluate.evaluate_checkpoint(ckpt, [fixture], case_sensitive=case_sensitive,
                                              num_workers=0, batch_size=8,
                                              predictions=predictions)
        reports[case_sensitive] = (report["datasets"][0], next(iter(predictions.values())))
    (plain, plain_rows), (cased, cased_rows) = reports[False], reports[True]
    assert [r["text"] for r in cased_rows] == ["Hotel", "EXIT", "park", "2017", "Coffee", "Stop"]
    # A charset with both cases keeps the labels' case in either mode (a lowercase one
    # would lower them for the case-insensitive run).
    assert [r["text"] for r in plain_rows] == ["Hotel", "EXIT", "park", "2017", "Coffee", "Stop"]
    # Case-insensitive, a reading is right when it matches in any case; case-sensitive,
    # only in the label's own (the shipped reader writes both cases).
    read = [r["prediction"].lower() == r["text"].lower() for r in cased_rows]
    exact = [r["prediction"] == r["text"] for r in cased_rows]
    assert plain["word_accuracy"] == pytest.approx(sum(read) / 6)
    assert cased["word_accuracy"] == pytest.approx(sum(exact) / 6)
    assert cased["word_accuracy"] <= plain["word_accuracy"] and sum(exact) >= 4


# ----------------------------------------------------------------------------- 7. smaller
def test_missing_lmdb_records_have_their_own_reason(tmp_path):
    import lmdb

    from grcnn_jax.text.charset import Charset
    from grcnn_jax.data import pipeline
    from grcnn_jax.data.preprocess import DEFAULT_POLICY, Preprocess
    from grcnn_jax.data.formats.crnn_lmdb import LmdbSource, image_key, label_key

    path = make_lmdb(tmp_path / "holes.lmdb", n=10)
    env = lmdb.open(path)
    with env.begin(write=True) as txn:
        txn.delete(image_key(3))
        txn.delete(label_key(3))
        txn.delete(image_key(7))
    env.close()
    it = pipeline.BatchIterator(pipeline.make_dataset(
        LmdbSource(path), Preprocess(Charset()), 4, train=False), name="holes")
    assert sum(int(b["mask"].sum()) for b in it) == 8
    assert dict(it.skipped_counts) == {"missing_record": 2}
    assert "missing_record: 2" in it.skipped_summary() and "image-000000003" in \
        it.skipped_summary()
    strict = Preprocess(Charset(), policy=tuple(sorted(
        {**DEFAULT_POLICY, "missing_record": "fail"}.items())))
    with pytest.raises(Exception, match="image-000000003': no image-000000003 or "
                                        "label-000000003 in the LMDB"):
        list(pipeline.make_dataset(LmdbSource(path), strict, 4, train=False))


def test_the_skip_summary_lists_distinct_keys_over_epochs(tmp_path):
    from grcnn_jax.text.charset import Charset
    from grcnn_jax.data import pipeline
    from grcnn_jax.data.preprocess import Preprocess
    from grcnn_jax.data.formats.folders import Icdar03Folder

    folder = Icdar03Folder(str(IC03_MINI))
    narrow = Preprocess(Charset("abcdefghijklmnopqrstuvwxyz"))   # no digits: 2017
    it = pipeline.BatchIterator(pipeline.make_dataset(folder, narrow, 2, train=True, seed=0),
                                name="train")
    for _ in range(10):                               # 20 good examples: four epochs
        next(it)
    summary = it.skipped_summary()
    assert it.skipped_counts["unknown_chars"] >= 3
    assert f"unknown_chars: {it.skipped_counts['unknown_chars']} times, 1 distinct" in summary
    [key] = it.skipped_examples["unknown_chars"]
    assert summary.count(key) == 1


def test_loader_workers_leave_no_shared_memory_at_exit(lmdb_path):
    script = f"""
from grcnn_jax.text.charset import Charset
from grcnn_jax.data import pipeline
from grcnn_jax.data.preprocess import DEFAULT_POLICY, Preprocess
from grcnn_jax.data.formats.crnn_lmdb import LmdbSource
if __name__ == "__main__":
    it = pipeline.BatchIterator(pipeline.make_dataset(
        LmdbSource({lmdb_path!r}), Preprocess(Charset()), 4, train=False,
        num_workers=2))
    batches = list(it)                        # held until the interpreter exits
    it.close()
    print(len(batches))
"""
    proc = run_command([sys.executable, "-c", script], check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "6"
    assert "leaked shared_memory" not in proc.stderr, proc.stderr[-2000:]
