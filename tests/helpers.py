"""What the test files share: the tiny model (configs/tiny.py) as a config object and as
command-line overrides, training runs and data made once a session (shared by the xdist
workers), word-image LMDBs, a checkpoint without training, and running a command in a
subprocess -- only for the tests where the process itself is under test (a signal, several
devices or processes, a command's output and exit status); training otherwise runs in the
test process (``train.train_and_evaluate``)."""

from __future__ import annotations

import functools
import io
import os
import pathlib
import shutil
import socket
import subprocess
import sys

import numpy as np

from conftest import REPO, load_config
from grcnn_jax.analysis import receptive_fields

TINY = REPO / "configs" / "tiny.py"
IC03_MINI = REPO / "tests" / "fixtures" / "ic03_mini"   # 6 ICDAR-03 crops, with lexicons
WORDS = ["grcnn", "ctc", "lstm", "gate", "jax", "flax", "scan", "text", "word", "2017", "nips",
         "recur", "conv", "read"]


# ----------------------------------------------------------------------------- the tiny model
def _set(config, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
        node = node[p]
    node[leaf] = value


def tiny_config(data=None, steps=None, **overrides):
    """configs/tiny.py's config: training and validation on ``data`` (a path; None keeps the
    synthetic words), ``steps`` training steps, then ``overrides`` by dotted key
    (``**{"optimizer.name": "sgd"}``, ``checkpoint_every=3``)."""
    config = load_config("tiny")
    if data is not None:
        config.data.train = config.data.val = str(data)
    if steps is not None:
        config.num_train_steps = steps
    for key, value in overrides.items():
        _set(config, key, value)
    return config


def tiny_overrides(data=None, steps=None, **overrides) -> list[str]:
    """``tiny_config``'s arguments as the ``--config.*`` flags that give the same config on
    top of ``--config=configs/tiny.py`` (what ``main_argv`` passes)."""
    flags = {}
    if data is not None:
        flags["data.train"] = flags["data.val"] = data
    if steps is not None:
        flags["num_train_steps"] = steps
    flags.update(overrides)
    return [f"--config.{k}={v}" for k, v in flags.items()]


def tiny_widths() -> dict:
    """configs/tiny.py's model widths and convolutions (``receptive_fields.untrained``'s overrides)."""
    model = load_config("tiny").model
    return {k: model[k] for k in ("conv0_features", "grcl_features", "out_features", "hidden",
                                  "conv_impl")}


@functools.lru_cache(maxsize=None)
def tiny_untrained(name: str, T: int, seed: int = 0):
    """configs/<name>.py's model ('cnn', 'rcl', 'grcl') at the tiny widths, T iterations,
    random weights (cached: each costs seconds to initialize)."""
    return _UNTRAINED(name, seed=seed, T=T, **tiny_widths())


_UNTRAINED = receptive_fields.untrained          # the real one (a test replaces it for a while)


def save_checkpoint(workdir, model, step: int) -> None:
    """A checkpoint as training writes it, as far as inference reads it (state with params and
    batch stats, meta with config and charset) of a ``receptive_fields.FieldModel``, without the
    cost of a training step."""
    import json

    import orbax.checkpoint as ocp

    from grcnn_jax.workdir import checkpoints

    config = load_config("grcl")
    config.model = model.model_config
    config.async_checkpoints = False
    state = {"params": model.params, "batch_stats": model.batch_stats, "step": step}
    meta = {"config": json.loads(config.to_json_best_effort()), "charset": config.charset,
            "step": step}
    with checkpoints.make_manager(str(workdir), async_save=False) as manager:
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   meta=ocp.args.JsonSave(meta)))


# ----------------------------------------------------------------------------- once a session
def once_per_session(tmp_path_factory, name: str, build) -> pathlib.Path:
    """The folder ``name`` after ``build(folder)`` has filled it, once per test session: the
    pytest-xdist workers of a session share it (the first to ask builds it, the others wait
    for it), so a tiny training run or its data is made once, not once per worker. Read
    only: a test that changes what is there works on a copy."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent                    # the session's folder, above each worker's own
    folder = root / f"shared-{name}"
    with FileLock(f"{folder}.lock"):
        done = root / f"shared-{name}.done"
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def trained_once(tmp_path_factory, name: str, config) -> pathlib.Path:
    """The workdir of ``train.train_and_evaluate(config)``, trained in this process once per
    test session (``once_per_session``); ``config`` may be a function of the folder (for
    data made there), returning the config."""
    from grcnn_jax.training import train

    def build(folder):
        c = config(folder) if callable(config) else config
        train.train_and_evaluate(c, str(folder / "workdir"))

    return once_per_session(tmp_path_factory, name, build) / "workdir"


# ----------------------------------------------------------------------------- data
def word_png(text: str, i: int) -> bytes:
    """``text`` drawn dark on light with PIL's small bitmap font, greys from seed ``i``."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(i)
    im = Image.new("L", (16 + 9 * len(text), 20), int(rng.integers(150, 255)))
    ImageDraw.Draw(im).text((3, 4), text, fill=int(rng.integers(0, 80)))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def stored_turned_jpeg(upright_image, tag: int | None = 6) -> bytes:
    """``upright_image`` (a Pillow image) as a camera held sideways stores it: the pixels
    turned so that EXIF orientation ``tag`` (6: turn 90 degrees to view, 8: 270, 3: 180)
    shows them upright again, JPEG at quality 95; ``tag`` None: the same pixels, untagged."""
    from PIL import Image

    stored_turn = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270,
                   3: Image.Transpose.ROTATE_180}[tag or 6]
    exif = Image.Exif()
    if tag:
        exif[0x0112] = tag
    buf = io.BytesIO()
    upright_image.convert("RGB").transpose(stored_turn).save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def make_lmdb(path, n: int = 48, words=WORDS, lexicons: bool = False) -> str:
    """An LMDB of ``n`` word images cycling through ``words``; with ``lexicons`` each record
    has one: the word, three others, one in capitals and one that cannot be encoded."""
    from grcnn_jax.data.formats.crnn_lmdb import write_lmdb

    def record(i):
        text = words[i % len(words)]
        r = {"image": word_png(text, i), "text": text}
        if lexicons:
            r["lexicon"] = [words[(i + k) % len(words)] for k in (2, 0, 5)] + ["SCAN", "it's"]
        return r
    write_lmdb(path, (record(i) for i in range(n)))
    return str(path)


# ----------------------------------------------------------------------------- subprocesses
def subprocess_env(**extra) -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", **extra)


def run_module(module: str, *args, check: bool = True, timeout: float = 300, env=None,
               **kwargs) -> subprocess.CompletedProcess:
    """``python -m module args`` from the checkout, its output captured; ``check``: fail the
    test, with the end of its stderr, if it exits non-zero."""
    return run_command([sys.executable, "-m", module, *map(str, args)], check=check,
                       timeout=timeout, env=env, **kwargs)


def run_command(argv: list[str], check: bool = True, timeout: float = 300, env=None,
                **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, env=subprocess_env() if env is None else env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} exited {proc.returncode}:\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def main_argv(workdir, overrides=(), *extra, launcher=("-m", "grcnn_jax.main")) -> list[str]:
    """The command line of training configs/tiny.py in ``workdir`` with ``overrides``
    (``tiny_overrides``); ``launcher``: what runs instead of ``-m grcnn_jax.main``."""
    return [sys.executable, *launcher, f"--config={TINY}", f"--workdir={workdir}",
            *overrides, *map(str, extra)]


def run_main(workdir, overrides=(), *extra, check: bool = True, timeout: float = 300,
             env=None, launcher=("-m", "grcnn_jax.main"), **kwargs):
    """``python -m grcnn_jax.main`` on configs/tiny.py (``main_argv``), run to its end."""
    return run_command(main_argv(workdir, overrides, *extra, launcher=launcher), check=check,
                       timeout=timeout, env=env, **kwargs)


def start_main(workdir, overrides=(), *extra) -> subprocess.Popen:
    """``python -m grcnn_jax.main`` on configs/tiny.py (``main_argv``), started: its stdout
    and stderr are pipes (``communicate()``)."""
    return subprocess.Popen(main_argv(workdir, overrides, *extra), env=subprocess_env(),
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def fatal_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("FATAL")]


def assert_one_fatal_line(stderr: str, kind: str) -> str:
    """The command refused with one ``FATAL <kind>: ...`` line and no traceback: the line."""
    assert "Traceback" not in stderr, stderr[-3000:]
    fatal = fatal_lines(stderr)
    assert len(fatal) == 1 and fatal[0].startswith(f"FATAL {kind}: "), stderr[-3000:]
    return fatal[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stand_in_onnx_reader(model, charset, height: int, width: int, frames: int, lm=None,
                         lowercase: bool = True):
    """An ``OnnxReader`` whose network is ``model`` (anything with ``apply(variables,
    images)``): the ONNX reader's own preparing, decoding, turning, framing and settling on
    a stand-in model, no ONNX file."""
    from grcnn_jax.inference.onnx_reader import OnnxReader

    class StandIn(OnnxReader):
        def __init__(self):
            self.shape, self.charset, self.lm = (height, width), charset, lm
            self.meta = {"image_height": height, "image_width": width, "keep_aspect": False,
                         "grayscale": "luma", "frames": frames, "lowercase": lowercase}

        def __call__(self, images, batch_size=64):
            return np.asarray(model.apply(None, images))

    return StandIn()
