"""How runs stop and what they refuse up front: Ctrl-C (training saves and resumes, the other
commands leave nothing half-written), a loader worker that dies, a dataset whose every
record is refused, ``init_from`` checked before the workdir exists, reader folders by path."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from helpers import (REPO, assert_one_fatal_line, main_argv, run_main, run_module,
                     subprocess_env, tiny_config, tiny_overrides, word_png)

from grcnn_jax.training import init_from
from grcnn_jax.workdir import checkpoints
from grcnn_jax.inference import pretrained
from grcnn_jax.training import train
from grcnn_jax.workdir.checkpoints import load_state_arrays
from grcnn_jax.inference.load import load_for_inference
from grcnn_jax.data import pipeline
from grcnn_jax.data.preprocess import Preprocess
from grcnn_jax.data.formats.crnn_lmdb import write_lmdb
from grcnn_jax.data.errors import DataError
from grcnn_jax.workdir.writers import read_metrics


def _start(workdir, overrides, env=None) -> subprocess.Popen:
    """The training command in a process group of its own, as a terminal runs it (Ctrl-C
    signals the whole group: the loader workers too)."""
    return subprocess.Popen(main_argv(workdir, overrides), cwd=REPO, text=True,
                            env=env or subprocess_env(GRCNN_HUGE_PAGES="0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def _wait_for_steps(workdir, n: int, proc, timeout: float = 240) -> None:
    metrics = workdir / "metrics.jsonl"
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count('"train/loss"') >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"no {n} steps logged in {timeout} s; stderr:\n"
                         f"{proc.communicate(timeout=30)[1][-3000:]}")


def _steps(workdir) -> list[int]:
    return [r["step"] for r in read_metrics(str(workdir)) if "train/loss" in r]


# ----------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_saves_the_step_and_the_same_command_resumes(lmdb_path, tmp_path):
    overrides = tiny_overrides(lmdb_path, 100_000, **{"data.num_workers": 1})
    proc = _start(tmp_path, overrides)
    _wait_for_steps(tmp_path, 3, proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    last = [ln for ln in err.splitlines() if ln.strip()][-1]
    assert last.startswith("interrupted at step ") and "run the same command" in last, err[-2000:]
    step = int(last.split("interrupted at step ")[1].split(";")[0])
    assert checkpoints.saved_steps(str(tmp_path)) == [step]
    assert str(tmp_path / "checkpoints") in last
    # Resumed: from that step, and metrics.jsonl holds every step once.
    train.train_and_evaluate(tiny_config(lmdb_path, step + 3, **{"data.num_workers": 1}),
                             str(tmp_path))
    assert load_state_arrays(str(tmp_path))[0] == step + 3
    steps = _steps(tmp_path)
    assert steps == list(range(1, step + 4)), steps


def _ctrl_c_as_at_a_terminal() -> None:
    """SIGINT back to its default in the child: a shell runs background jobs with SIGINT
    ignored, which the child would inherit (and Python then installs no Ctrl-C handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_in_a_data_tool_leaves_no_partial_output(tmp_path):
    labels = tmp_path / "labels.txt"
    image = tmp_path / "w.png"
    image.write_bytes(word_png("word", 0))
    labels.write_text("".join(f"w.png\tword{i}\n" for i in range(400_000)))
    out = tmp_path / "out.lmdb"
    proc = subprocess.Popen([sys.executable, "-m", "grcnn_jax.cli.make_lmdb", "--labels",
                             str(labels), str(out)], cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=_ctrl_c_as_at_a_terminal)
    deadline = time.time() + 120
    while time.time() < deadline and not out.exists():
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted (Ctrl-C)"
    assert not out.exists()


# ----------------------------------------------------------------------------- a dead worker
# `python -m grcnn_jax.main` whose loader worker is killed (SIGKILL) once KILL_AT batches
# have been taken: a crash at a known point, with nothing in the product for it.
KILL_THE_WORKER = """
import multiprocessing, os, runpy, signal, sys
from grcnn_jax.data import pipeline
from grcnn_jax.data.preprocess import Preprocess
KILL_AT, take = int(sys.argv.pop(1)), pipeline.BatchIterator.__next__
def take_then_kill(self):
    batch = take(self)
    if self.name.startswith("config.data.train") and self._batches == KILL_AT:
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)
            child.join()
    return batch
pipeline.BatchIterator.__next__ = take_then_kill
sys.argv[0] = "grcnn_jax.main"
runpy.run_module("grcnn_jax.main", run_name="__main__")
"""


def test_a_dead_loader_worker_stops_with_a_checkpoint_and_the_rerun_is_exact(lmdb_path,
                                                                             tmp_path):
    # Enough steps that the batches the worker had ready before the kill run out.
    settings = {"data.num_workers": 1, "optimizer.name": "sgd"}
    straight = tmp_path / "straight"
    train.train_and_evaluate(tiny_config(lmdb_path, 30, **settings), str(straight))
    killed = tmp_path / "killed"
    proc = run_main(killed, tiny_overrides(lmdb_path, 30, **settings), check=False,
                    launcher=("-c", KILL_THE_WORKER, "3"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = assert_one_fatal_line(proc.stderr, "LoaderWorkerDied")
    assert "a loader worker process died (exit code -9)" in line and "resume" in line
    stopped = int(line.split("training stopped at step ")[1].split(" ")[0])
    assert 3 <= stopped < 30 and checkpoints.saved_steps(str(killed)) == [stopped]
    train.train_and_evaluate(tiny_config(lmdb_path, 30, **settings), str(killed))
    (a_step, a), (b_step, b) = load_state_arrays(str(straight)), load_state_arrays(str(killed))
    assert a_step == b_step == 30
    import jax

    for x, y in zip(jax.tree.leaves(a["params"]), jax.tree.leaves(b["params"])):
        np.testing.assert_array_equal(x, y)           # the same batches, in the same order
    assert _steps(killed) == list(range(1, 31))


# ----------------------------------------------------------------------------- all refused
@pytest.fixture(scope="module")
def refused_lmdb(tmp_path_factory):
    """40 records labelled in Chinese: nothing a Latin charset can encode."""
    path = tmp_path_factory.mktemp("refused") / "chinese.lmdb"
    write_lmdb(path, ({"image": word_png("abc", i), "text": "中文字"[:1 + i % 3]}
                      for i in range(40)))
    return str(path)


@pytest.fixture
def within_two_minutes():
    """Fails the test (instead of hanging the suite) if it runs for over two minutes."""
    def expire(signum, frame):
        raise TimeoutError("still running after 120 s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_training_set_that_refuses_every_record_stops_within_seconds(refused_lmdb, lmdb_path,
                                                                       tmp_path, workers,
                                                                       within_two_minutes):
    config = tiny_config(lmdb_path, 4, **{"data.num_workers": workers})
    config.data.train = refused_lmdb
    with pytest.raises(DataError) as e:
        train.train_and_evaluate(config, str(tmp_path))
    message = str(e.value)
    assert message.startswith(f"config.data.train={refused_lmdb}: 2,000 records in a row were "
                              "refused (unknown_chars: 2,000")
    assert f"e.g. {refused_lmdb}:image-" in message and "config.data.policy" in message


def test_a_validation_set_and_evaluate_refusing_every_record_say_so(refused_lmdb, lmdb_path,
                                                                    tmp_path, within_two_minutes):
    config = tiny_config(lmdb_path, 2, eval_every=2)
    config.data.val = refused_lmdb
    with pytest.raises(DataError, match=r"^val: every record was refused \(unknown_chars: 40, "
                                        r"e\.g\. "):
        train.train_and_evaluate(config, str(tmp_path / "run"))
    proc = run_module("grcnn_jax.evaluate", "--data", refused_lmdb, check=False,
                      env=subprocess_env(GRCNN_HUGE_PAGES="0"))
    line = assert_one_fatal_line(proc.stderr, "DataError")
    assert f"{refused_lmdb}: every record was refused (unknown_chars: 40" in line


def test_a_long_run_of_refused_records_between_good_ones_is_not_refused(tmp_path):
    """Bad records are skipped while good ones keep coming, however many there are."""
    records = [{"image": word_png("w", i), "text": "中" if i % 50 else "word"}
               for i in range(400)]
    path = tmp_path / "mostly_bad.lmdb"
    write_lmdb(path, records)
    from grcnn_jax.text.charset import Charset
    from grcnn_jax.data.sources import open_source

    batches = pipeline.BatchIterator(pipeline.make_dataset(
        open_source(str(path)), Preprocess(Charset()), 4, train=True), name="t")
    for _ in range(3):
        assert next(batches)["image"].shape[0] == 4
    assert batches.skipped_counts["unknown_chars"] > 400


# ----------------------------------------------------------------------------- up front
def test_a_refused_init_from_creates_no_workdir(lmdb_path, tmp_path):
    workdir = tmp_path / "run"
    proc = run_main(workdir, tiny_overrides(lmdb_path, 2, init_from="/nonexistent/run"),
                    check=False, env=subprocess_env(GRCNN_HUGE_PAGES="0"))
    line = assert_one_fatal_line(proc.stderr, "FileNotFoundError")
    assert "config.init_from='/nonexistent/run'" in line
    assert not workdir.exists()
    # A source of another model: refused naming the parameter, still before the workdir.
    config = tiny_config(lmdb_path, 2, init_from="pretrained")
    with pytest.raises(ValueError, match=r"params/.*use the same config.model"):
        train.train_and_evaluate(config, str(workdir))
    assert not workdir.exists()
    config = tiny_config("/no/such/data.lmdb", 2)
    with pytest.raises(DataError, match="no such file"):
        train.train_and_evaluate(config, str(workdir))
    assert not workdir.exists()


# ----------------------------------------------------------------------------- reader folders
@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reader") / "my_reader"
    pretrained.export(pretrained.load(), str(folder), note="a copy")
    return folder


def test_a_reader_folder_loads_by_path_everywhere(reader_folder, lmdb_path, tmp_path):
    shipped = pretrained.load()
    ckpt = load_for_inference(checkpoint=str(reader_folder))
    assert ckpt.step == shipped.step and ckpt.charset == shipped.charset
    assert init_from.load_variables(str(reader_folder)).path == str(reader_folder)
    proc = run_module("grcnn_jax.recognize", "--checkpoint", reader_folder,
                      REPO / "tests" / "fixtures" / "ic03_mini", env=subprocess_env(
                          GRCNN_HUGE_PAGES="0"))
    again = run_module("grcnn_jax.recognize", "--engine", "jax",
                       REPO / "tests" / "fixtures" / "ic03_mini",
                       env=subprocess_env(GRCNN_HUGE_PAGES="0"))
    assert proc.stdout == again.stdout and proc.stdout.count("\n") == 6
    # A training workdir given where a step directory was expected is read as a workdir.
    workdir = tmp_path / "run"
    train.train_and_evaluate(tiny_config(lmdb_path, 2), str(workdir))
    assert load_for_inference(checkpoint=str(workdir)).step == 2


@pytest.mark.parametrize("damage", ["no_meta", "bad_checksum", "bad_meta"])
def test_a_damaged_reader_folder_is_refused_in_one_line_naming_the_file(reader_folder,
                                                                        tmp_path, damage):
    import shutil

    folder = tmp_path / "damaged"
    shutil.copytree(reader_folder, folder)
    if damage == "no_meta":
        (folder / "meta.json").unlink()
        culprit = "meta.json' is missing"
    elif damage == "bad_checksum":
        with open(folder / "variables.npz", "ab") as f:
            f.write(b"x")
        culprit = "variables.npz' does not match its checksum"
    else:
        meta = json.loads((folder / "meta.json").read_text())
        del meta["charset"]
        (folder / "meta.json").write_text(json.dumps(meta))
        culprit = "meta.json' (KeyError"
    proc = run_module("grcnn_jax.evaluate", "--checkpoint", folder, "--data",
                      REPO / "tests" / "fixtures" / "ic03_mini", check=False,
                      env=subprocess_env(GRCNN_HUGE_PAGES="0"))
    line = assert_one_fatal_line(proc.stderr, "PretrainedError")
    assert culprit in line and "reinstall" not in line, line
    with pytest.raises(pretrained.PretrainedError, match="init_from"):
        init_from.load_variables(str(folder))


def test_multiprocessing_children_are_gone_after_a_refusal(refused_lmdb, lmdb_path, tmp_path,
                                                           within_two_minutes):
    config = tiny_config(lmdb_path, 4, **{"data.num_workers": 1})
    config.data.train = refused_lmdb
    with pytest.raises(DataError):
        train.train_and_evaluate(config, str(tmp_path))
    deadline = time.time() + 30
    while multiprocessing.active_children() and time.time() < deadline:
        time.sleep(0.1)
    assert not [c for c in multiprocessing.active_children() if "grain" in c.name]
