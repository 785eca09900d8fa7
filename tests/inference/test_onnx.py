"""The ONNX export: parity with jax at three batch sizes, the same readings as the checkpoint
path, reading with onnxruntime and no jax, damaged folders refused in one line."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import (IC03_MINI, REPO, assert_one_fatal_line, run_module, stored_turned_jpeg,
                     subprocess_env)

pytest.importorskip("jax2onnx")
pytest.importorskip("onnxruntime")

from grcnn_jax.inference.load import load_for_inference  # noqa: E402
from grcnn_jax.inference.onnx_export import PARITY_TOLERANCE, export_onnx  # noqa: E402
from grcnn_jax.inference.onnx_reader import OnnxReader  # noqa: E402

ENV = subprocess_env(GRCNN_HUGE_PAGES="0")


@pytest.fixture(scope="module")
def shipped():
    return load_for_inference()


@pytest.fixture(scope="module")
def onnx_dir(shipped, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "reader"
    meta = export_onnx(shipped, str(out))
    assert meta["parity_max_abs"] <= PARITY_TOLERANCE and meta["parity_batches"] == [1, 3, 8]
    return out


@pytest.fixture(scope="module", params=["exported here", "shipped"])
def any_onnx_dir(request, onnx_dir):
    """A fresh export of the shipped reader, and the ONNX form shipped beside it."""
    from grcnn_jax import assets

    return onnx_dir if request.param == "exported here" else assets.READER_ONNX_DIR


def _fixture_images(reader):
    files = sorted(p for p in IC03_MINI.rglob("*.png"))
    return files, np.stack([reader.prepare(str(f)) for f in files])


@pytest.mark.parametrize("n", [1, 2, 6])
def test_the_onnx_logits_match_jax_at_any_batch_size(any_onnx_dir, shipped, n):
    import jax

    from grcnn_jax.models import create_model

    reader = OnnxReader(str(any_onnx_dir))
    _, images = _fixture_images(reader)
    model = create_model(shipped.config.model, shipped.charset.num_classes)
    want = np.asarray(jax.jit(lambda x: model.apply(
        {"params": shipped.params, "batch_stats": shipped.batch_stats}, x))(images[:n]))
    got = reader(images[:n])
    assert got.shape == want.shape == (n, reader.meta["frames"], shipped.charset.num_classes)
    assert np.abs(got - want).max() <= 1e-4


def test_recognize_with_onnx_prints_what_the_checkpoint_path_prints(onnx_dir, shipped,
                                                                    tmp_path):
    from grcnn_jax.inference.recognize import recognize_images

    reader = OnnxReader(str(onnx_dir))
    _, images = _fixture_images(reader)
    want = recognize_images(shipped, images)
    got = reader.read(list(images))
    assert [p.text for p in got] == [p.text for p in want]
    for a, b in zip(got, want):
        assert a.confidence == pytest.approx(b.confidence, rel=1e-3, abs=1e-4)
    # The command, with a lexicon: the same lines (path, word, confidence to 4 digits).
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("Hotel,motel,park,bark,coffee,toffee,exit,stop,2017,2018\n")
    ours = run_module("grcnn_jax.recognize", "--engine", "jax", IC03_MINI, "--lexicon", lexicon,
                      env=ENV).stdout
    onnx = run_module("grcnn_jax.recognize", "--checkpoint", onnx_dir, IC03_MINI, "--lexicon",
                      lexicon, env=ENV).stdout
    rows = [line.split("\t") for line in ours.splitlines()]
    onnx_rows = [line.split("\t") for line in onnx.splitlines()]
    assert len(rows) == len(onnx_rows) == 6
    for a, b in zip(rows, onnx_rows):
        assert a[:2] == b[:2]                                   # path and word
        assert float(a[2]) == pytest.approx(float(b[2]), rel=1e-3, abs=1e-4)


def test_reading_needs_no_jax(onnx_dir):
    code = (
        "import sys\n"
        "for m in ('jax', 'jaxlib', 'flax', 'optax', 'orbax', 'grain'): sys.modules[m] = None\n"
        "from grcnn_jax.inference.onnx_reader import OnnxReader\n"
        f"reader = OnnxReader({str(onnx_dir)!r})\n"
        "import pathlib\n"
        f"files = sorted(str(p) for p in pathlib.Path({str(IC03_MINI)!r}).rglob('*.png'))\n"
        "print(' '.join(r.text for r in reader.read(files)))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax')\n"
        "             and sys.modules[m] is not None))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    texts, loaded = proc.stdout.splitlines()
    reader = OnnxReader(str(onnx_dir))
    files, _ = _fixture_images(reader)
    assert texts.split() == [r.text for r in reader.read([str(f) for f in files])]
    assert loaded == "[]"


def test_the_shipped_onnx_form_is_of_the_shipped_weights(shipped):
    from grcnn_jax import assets
    from grcnn_jax.inference import pretrained

    onnx_meta = json.loads((REPO / "grcnn_jax" / "assets" / "reader_onnx" / "meta.json")
                           .read_text())
    reader_meta = json.loads(open(f"{assets.READER_DIR}/meta.json").read())
    assert onnx_meta["source"] == pretrained.NAME and onnx_meta["step"] == shipped.step
    assert onnx_meta["weights_sha256"] == reader_meta["sha256"], (
        "the shipped weights changed: write their ONNX form again with python -m "
        "grcnn_jax.export --format onnx --out grcnn_jax/assets/reader_onnx")
    assert onnx_meta["charset"] == shipped.charset.chars


def test_recognize_reads_one_word_without_importing_jax(tmp_path):
    """The shipped reader, greedy, a few images: onnxruntime only (the command's start-up).
    A photo stored sideways with an EXIF orientation tag is read as a viewer shows it."""
    from PIL import Image

    sideways = tmp_path / "sideways.jpg"
    with Image.open(IC03_MINI / "word_1.png") as im:
        sideways.write_bytes(stored_turned_jpeg(im, 6))
    code = (
        "import runpy, sys\n"
        "for m in ('jax', 'jaxlib', 'flax', 'optax', 'orbax', 'grain'): sys.modules[m] = None\n"
        f"sys.argv = ['-m', {str(IC03_MINI / 'word_1.png')!r}, {str(sideways)!r}]\n"
        "runpy.run_module('grcnn_jax.recognize', run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [line.split("\t")[1] for line in proc.stdout.splitlines()] == ["Hotel", "Hotel"]
    jax_path = run_module("grcnn_jax.recognize", "--engine", "jax", IC03_MINI / "word_1.png",
                          env=ENV).stdout
    path, text, confidence = jax_path.strip().split("\t")
    first = proc.stdout.splitlines()[0].split("\t")
    assert first[:2] == [path, text]
    assert float(first[2]) == pytest.approx(float(confidence), abs=2e-4)


@pytest.mark.parametrize("args, culprit", [
    (["--engine", "onnx", "--workdir", "runs/x"], "--engine chooses how the shipped reader"),
    (["--engine", "jax", "--onnx", "x"], "--engine chooses how the shipped reader"),
    (["--onnx", "x", "--exported", "y"], "--onnx runs a model folder of its own"),
])
def test_engine_choices_that_cannot_hold_are_refused(args, culprit):
    proc = run_module("grcnn_jax.recognize", *args, IC03_MINI, check=False, env=ENV)
    assert proc.returncode != 0 and culprit in proc.stderr, proc.stderr[-2000:]


def test_beam_search_in_onnxruntime_prints_what_jax_prints():
    def rows(engine):
        out = run_module("grcnn_jax.recognize", "--engine", engine, "--beam_width", "5",
                         IC03_MINI, env=ENV).stdout
        return [line.split("\t") for line in out.splitlines()]

    onnx, ours = rows("onnx"), rows("jax")
    assert len(onnx) == len(ours) == 6 and [r[:2] for r in onnx] == [r[:2] for r in ours]
    for a, b in zip(onnx, ours):
        assert float(a[2]) == pytest.approx(float(b[2]), rel=1e-3, abs=1e-4)


def test_the_meta_says_how_to_prepare_and_read(onnx_dir, shipped):
    meta = json.loads((onnx_dir / "meta.json").read_text())
    assert meta["format"] == "grcnn_jax.onnx/1" and meta["model_file"] == "model.onnx"
    assert meta["charset"] == shipped.charset.chars and meta["blank_id"] == 0
    assert (meta["image_height"], meta["image_width"]) == (32, 100)
    assert meta["grayscale"] == "principal" and meta["keep_aspect"] is False
    assert meta["frames"] == 26 and meta["step"] == shipped.step


@pytest.mark.parametrize("damage", ["no_meta", "not_a_model"])
def test_a_damaged_onnx_folder_is_refused_in_one_line(onnx_dir, tmp_path, damage):
    folder = tmp_path / "damaged"
    shutil.copytree(onnx_dir, folder)
    if damage == "no_meta":
        (folder / "meta.json").unlink()
        kind, culprit = "FileNotFoundError", "meta.json' is missing"
    else:
        (folder / "model.onnx").write_bytes(b"not onnx")
        kind, culprit = "ValueError", "model.onnx' does not load as an ONNX model"
    proc = run_module("grcnn_jax.recognize", "--onnx", folder, IC03_MINI, check=False, env=ENV)
    assert culprit in assert_one_fatal_line(proc.stderr, kind)
