"""Export for serving (grcnn_jax.export): the exported program equals the model in-process, at
any batch size; recognize --exported prints what the checkpoint path prints; the loader runs
without flax and the model code; bad paths end in one FATAL line."""

import json
import math
import os
import sys

import jax
import numpy as np
import pytest

from helpers import IC03_MINI, fatal_lines, run_command, run_module
from grcnn_jax.inference import export, exported
from grcnn_jax.inference.onnx_export import PARITY_TOLERANCE
from grcnn_jax.inference import recognize
from grcnn_jax.inference.load import load_for_inference

IMAGES = [str(IC03_MINI / f"word_{i}.png") for i in (1, 3, 5)]


@pytest.fixture(scope="module")
def ckpt():
    return load_for_inference()                                  # the shipped model


@pytest.fixture(scope="module")
def model_dir(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "model"
    meta = export.export_model(ckpt, str(out))
    assert meta["platforms"] == ["cpu"] and meta["frames"] == 26 and meta["blank_id"] == 0
    assert os.path.getsize(out / "model.jax") == meta["bytes"]
    return out


def test_logits_equal_in_process_at_any_batch_size(ckpt, model_dir):
    from grcnn_jax.models import create_model

    model = create_model(ckpt.config.model, ckpt.charset.num_classes)
    variables = {"params": ckpt.params, "batch_stats": ckpt.batch_stats}
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 100), dtype=np.uint8)
    expected = np.asarray(jax.jit(lambda x: model.apply(variables, x, train=False))(images))
    reader = exported.load_exported(str(model_dir))
    assert reader.meta == json.loads((model_dir / "meta.json").read_text())
    # float32 at another batch size sums in another order (XLA picks kernels per shape, and
    # AVX2 and AVX-512 machines differ): logits agree to ~1e-5, not exactly, so the same
    # bound as the ONNX export's own check.
    tol = dict(rtol=0, atol=PARITY_TOLERANCE)
    for b in (1, 3, 8):                     # one exported program, three batch sizes
        got = np.asarray(reader.exported.call(images[:b]))
        assert got.shape == (b, 26, ckpt.charset.num_classes) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected[:b], **tol)
    # Batched by the reader: 8 images in padded calls of 3 come back in order.
    np.testing.assert_allclose(reader(images, batch_size=3), expected, **tol)


def test_recognize_exported_prints_what_the_checkpoint_prints(model_dir):
    def rows(*args):
        proc = run_module("grcnn_jax.recognize", *args, *IMAGES)
        return [line.split("\t") for line in proc.stdout.splitlines()]

    in_process, exported = rows("--engine", "jax"), rows("--exported", model_dir)
    assert [r[:2] for r in exported] == [r[:2] for r in in_process]
    assert [r[1] for r in exported] == ["Hotel", "park", "Coffee"]        # read in their case
    for a, b in zip(in_process, exported):           # printed with 4 significant digits
        assert math.isclose(float(a[2]), float(b[2]), rel_tol=2e-4), (a, b)


def test_exported_beam_and_lexicon_equal_in_process(ckpt, model_dir):
    images, good, problems = recognize.load_images(IMAGES, 32, 100, False, "principal")
    assert not problems
    lexicon = ["Hotel", "motel", "park", "bark", "coffee", "toffee", "it's"]
    want = recognize.recognize_images(ckpt, images, lexicon, beam_width=3)
    got = recognize.recognize_exported(exported.load_exported(str(model_dir)), images, lexicon,
                                       beam_width=3)
    assert [p.lexicon_text for p in got] == [p.lexicon_text for p in want] == \
        ["Hotel", "park", "coffee"]                     # as the lexicon spells them
    assert [p.text for p in got] == [p.text for p in want]
    for p, q in zip(got, want):
        assert math.isclose(p.confidence, q.confidence, rel_tol=1e-4)
        assert math.isclose(p.lexicon_confidence, q.lexicon_confidence, rel_tol=1e-4)


def test_loader_runs_without_flax_or_the_model_code(model_dir, tmp_path):
    images, _, _ = recognize.load_images(IMAGES, 32, 100, False, "principal")
    np.save(tmp_path / "images.npy", images)
    script = f"""
import sys
for name in ("flax", "optax", "orbax", "grain", "ml_collections", "grcnn_jax.models",
             "grcnn_jax.training.train", "grcnn_jax.workdir.checkpoints", "grcnn_jax.text.decode"):
    sys.modules[name] = None                 # importing any of them now raises ImportError
import numpy as np
from grcnn_jax.inference.exported import load_exported
reader = load_exported({str(model_dir)!r})
print(",".join(reader.read(np.load({str(tmp_path / "images.npy")!r}))))
print(",".join(sorted(m for m in sys.modules if m.startswith("grcnn_jax") and sys.modules[m])))
"""
    proc = run_command([sys.executable, "-c", script])
    texts, modules = proc.stdout.split()
    assert texts == "Hotel,park,Coffee"
    assert modules == ("grcnn_jax,grcnn_jax.inference,grcnn_jax.inference.exported,"
                       "grcnn_jax.inference.lm_files,grcnn_jax.text,grcnn_jax.text.char_lm,"
                       "grcnn_jax.text.charset,grcnn_jax.text.ctc_host,grcnn_jax.workdir,"
                       "grcnn_jax.workdir.writers")


def test_bad_paths_end_in_one_fatal_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    proc = run_module("grcnn_jax.export", "--out", blocker / "model", check=False)
    assert proc.returncode != 0 and len(fatal_lines(proc.stderr)) == 1, proc.stderr[-3000:]
    assert "a_file" in fatal_lines(proc.stderr)[0] and "Traceback" not in proc.stderr

    proc = run_module("grcnn_jax.recognize", "--exported", tmp_path / "missing", IMAGES[0],
                      check=False)
    (line,) = fatal_lines(proc.stderr)
    assert proc.returncode != 0 and "FileNotFoundError" in line and "missing" in line
    assert "Traceback" not in proc.stderr

    proc = run_module("grcnn_jax.recognize", "--exported", tmp_path, "--workdir", tmp_path,
                      IMAGES[0], check=False)
    assert proc.returncode != 0 and "without --workdir" in proc.stderr


def test_a_damaged_model_file_is_refused_by_name(model_dir, tmp_path):
    (tmp_path / "meta.json").write_text((model_dir / "meta.json").read_text())
    (tmp_path / "model.jax").write_bytes(b"\0garbage" * 16)
    with pytest.raises(ValueError, match="not a serialized jax.export model"):
        exported.load_exported(str(tmp_path))
    with pytest.raises(ValueError, match=r"platforms \['gpu'\]"):
        export.export_model(None, str(tmp_path), platforms=["gpu"])
