"""Evaluate and recognize with a tiny trained checkpoint: the numbers equal training's validation,
lexicon picks equal brute force on the model's own outputs, bad input is reported, not fatal."""

import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from conftest import REPO
from helpers import IC03_MINI, WORDS as ALL_WORDS
from helpers import free_port, make_lmdb, run_module, subprocess_env, tiny_config, trained_once
from grcnn_jax.workdir import checkpoints
from grcnn_jax.text import ctc_host
from grcnn_jax.workdir.checkpoints import load_state_arrays, resolve_step_dir
from grcnn_jax.inference.load import load_for_inference
from grcnn_jax.data.formats.crnn_lmdb import LmdbSource
from grcnn_jax.workdir.writers import read_metrics

WORDS = ALL_WORDS[:10]                 # grcnn ... 2017
STEPS = 4


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny GRCNN trained 4 steps; validation (synthetic words + a lexicon LMDB of 13, so
    the last batch of 8 is padded) logged at the final step; checkpoints at steps 2 and 4.
    Once a session (the xdist workers share it); tests change copies."""
    def config(root):
        data = make_lmdb(root / "train.lmdb", 24, WORDS)
        lex = make_lmdb(root / "lex.lmdb", 13, WORDS, lexicons=True)
        return tiny_config(data, STEPS, eval_every=STEPS, checkpoint_every=2, **{
            "data.val": f"synth,{lex}", "data.synth_val_size": 20})

    workdir = trained_once(tmp_path_factory, "evaluate", config)
    root, lex = workdir.parent, str(workdir.parent / "lex.lmdb")
    val = [r for r in read_metrics(workdir) if "val/count" in r]
    assert [r["step"] for r in val] == [STEPS]
    return types.SimpleNamespace(root=root, workdir=workdir, lex=lex, val=val[-1])


@pytest.fixture(scope="module")
def ckpt(trained):
    return load_for_inference(str(trained.workdir))


def model_log_probs(ckpt, images: np.ndarray) -> np.ndarray:
    """The restored model's per-frame log-probabilities, computed here independently."""
    import jax

    from grcnn_jax.models import create_model

    model = create_model(ckpt.config.model, ckpt.charset.num_classes)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        {"params": ckpt.params, "batch_stats": ckpt.batch_stats}, images)
    return ctc_host.log_softmax(np.asarray(logits))


def preprocessed(ckpt, source):
    from grcnn_jax.assemble import make_preprocess

    pre = make_preprocess(ckpt.config, ckpt.charset)
    examples = [pre(source[i]) for i in range(len(source))]
    return np.stack([e["image"] for e in examples]), examples


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_cli_equals_training_validation(trained):
    """No --data: the config's validation set (here synthetic words + the lexicon LMDB);
    each image read once, as validation reads it (--noframe)."""
    proc = run_module("grcnn_jax.evaluate", f"--workdir={trained.workdir}", "--noframe")
    report = json.loads((trained.workdir / f"eval_{STEPS}.json").read_text())
    assert report["step"] == STEPS and report["checkpoint"].endswith(f"checkpoints/{STEPS}")
    [row] = report["datasets"]
    val = trained.val
    assert row["count"] == val["val/count"] == 33
    assert row["word_accuracy"] == val["val/word_accuracy"]
    assert row["normalized_edit_distance"] == pytest.approx(val["val/normalized_edit_distance"],
                                                            abs=1e-12)
    assert row["loss"] == pytest.approx(val["val/loss"], rel=1e-5)
    assert row["lexicon_count"] == val["val/lexicon_count"] == 13
    assert row["lexicon_word_accuracy"] == val["val/lexicon_word_accuracy"]
    assert row["lexicon_words_skipped"] == 13                 # "it's" in every lexicon
    assert row["images_per_s"] > 0
    assert f"{row['word_accuracy']:.4f}" in proc.stdout and "lexicon_acc" in proc.stdout
    assert "synth," in row["name"] and "(config.data.val)" in proc.stdout


def test_evaluate_datasets_lexicon_is_the_brute_force_choice(trained, ckpt, tmp_path):
    from grcnn_jax.evaluation.scoring import evaluate_checkpoint, format_table

    ic03 = str(IC03_MINI)
    predictions = {}
    report = evaluate_checkpoint(ckpt, [trained.lex, ic03], batch_size=8,
                                 predictions=predictions, frame=False)   # as given only
    lex_row, ic03_row = report["datasets"]
    assert (lex_row["count"], ic03_row["count"]) == (13, 6)
    assert lex_row["lexicon_count"] == 13 and ic03_row["lexicon_count"] == 6
    table = format_table(report)
    assert trained.lex in table and ic03 in table

    source = LmdbSource(trained.lex)
    images, examples = preprocessed(ckpt, source)
    log_probs = model_log_probs(ckpt, images)
    preds = predictions[trained.lex]
    assert [p["key"] for p in preds] == [e["key"] for e in examples]
    lexicon_hits = greedy_hits = 0
    for i, (p, e, lp) in enumerate(zip(preds, examples, log_probs)):
        # Lexicon: the word of highest exact likelihood (numpy forward algorithm here,
        # optax on the device there); words normalized like labels, "it's" skipped.
        words = [w.lower() for w in source[i]["lexicon"] if w != "it's"]
        scores = {w: ctc_host.ctc_log_likelihood(lp, ckpt.charset.encode(w)) for w in words}
        assert p["lexicon_prediction"] == max(scores, key=scores.get)
        assert p["prediction"] == ctc_host.greedy_decode(lp.argmax(-1)[None], ckpt.charset)[0]
        lexicon_hits += p["lexicon_prediction"] == e["text"]
        greedy_hits += p["prediction"] == e["text"]
    assert lex_row["lexicon_word_accuracy"] == lexicon_hits / 13
    assert lex_row["word_accuracy"] == greedy_hits / 13


def test_evaluate_beam_search_and_case_flags(trained, ckpt):
    from grcnn_jax.evaluation.scoring import evaluate_checkpoint

    greedy = evaluate_checkpoint(ckpt, [trained.lex], batch_size=8)["datasets"][0]
    beam = evaluate_checkpoint(ckpt, [trained.lex], batch_size=8, beam_width=4,
                               case_sensitive=True)
    assert beam["beam_width"] == 4 and beam["case_sensitive"]
    row = beam["datasets"][0]
    assert row["count"] == 13 and row["loss"] == pytest.approx(greedy["loss"], rel=1e-6)
    assert row["lexicon_word_accuracy"] == greedy["lexicon_word_accuracy"]   # not beam's job


def test_step_selection(trained, tmp_path):
    wd = str(trained.workdir)
    assert checkpoints.saved_steps(wd) == [2, STEPS]
    assert resolve_step_dir(wd, None, "latest").endswith(f"checkpoints{os.sep}{STEPS}")
    assert resolve_step_dir(wd, None, "2").endswith(f"checkpoints{os.sep}2")
    step_dir = resolve_step_dir(wd, None, "latest")
    assert resolve_step_dir(None, step_dir, "ignored") == step_dir
    assert resolve_step_dir(None, os.path.join(step_dir, "state"), "latest") == step_dir
    # best: the saved step with the highest val/word_accuracy (a doctored copy of the log).
    copy = tmp_path / "copy"
    shutil.copytree(trained.workdir, copy)
    with open(copy / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 2, "val/word_accuracy": 0.5}) + "\n")
        f.write(json.dumps({"step": 3, "val/word_accuracy": 0.9}) + "\n")     # not saved
    assert checkpoints.best_step(str(copy)) == 2
    assert load_for_inference(str(copy), step="best").step == 2


@pytest.mark.parametrize("workdir, checkpoint, step, message", [
    ("missing", None, "latest", "workdir '{root}/missing' does not exist"),
    ("workdir", None, "7", "no checkpoint for step 7"),
    ("workdir", None, "soon", "give 'latest', 'best' or a step number"),
    (None, "workdir", "latest", "is not a checkpoint step directory"),
    (None, None, "latest", "give --workdir"),
    ("", None, "best", "has no checkpoints/ folder"),
])
def test_checkpoint_errors_name_the_culprit(trained, workdir, checkpoint, step, message):
    root = str(trained.root)
    resolve = lambda x: None if x is None else os.path.join(root, x)  # noqa: E731
    with pytest.raises((FileNotFoundError, ValueError)) as e:
        resolve_step_dir(resolve(workdir), resolve(checkpoint), step)
    assert message.format(root=root) in str(e.value)


def test_best_without_validation_is_reported(trained, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(trained.workdir, copy)
    (copy / "metrics.jsonl").write_text(json.dumps({"step": 4, "train/loss": 1.0}) + "\n")
    with pytest.raises(ValueError, match="none of the saved steps"):
        checkpoints.best_step(str(copy))


def test_evaluate_cli_bad_dataset_fails_clearly(trained):
    proc = run_module("grcnn_jax.evaluate", f"--workdir={trained.workdir}",
                      f"--data={trained.lex},/no/such/set", check=False, timeout=120)
    assert proc.returncode != 0
    assert "FATAL" in proc.stderr and "/no/such/set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_inference_restores_only_params_and_batch_stats(trained):
    step, full = load_state_arrays(str(trained.workdir))
    step_p, part = load_state_arrays(str(trained.workdir), keys=("params", "batch_stats"))
    assert step == step_p == STEPS
    assert set(part) == {"params", "batch_stats"} and "opt_state" in full
    import jax

    for a, b in zip(jax.tree.leaves(full["params"]), jax.tree.leaves(part["params"])):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(KeyError, match="ema"):
        load_state_arrays(str(trained.workdir), keys=("ema",))


# ----------------------------------------------------------------------------- recognize
@pytest.fixture(scope="module")
def image_dir(trained, tmp_path_factory):
    """The lexicon LMDB's images as files (one in a subfolder), a corrupt .png, a text file."""
    folder = tmp_path_factory.mktemp("images")
    (folder / "sub").mkdir(parents=True)
    source = LmdbSource(trained.lex)
    paths = []
    for i in range(5):
        path = folder / ("sub" if i == 4 else "") / f"word_{i}.png"
        path.write_bytes(source[i]["image"])
        paths.append(str(path))
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    return folder, paths


def test_recognize_reads_a_folder_and_skips_a_corrupt_file(trained, ckpt, image_dir):
    folder, paths = image_dir
    proc = run_module("grcnn_jax.recognize", f"--workdir={trained.workdir}", "--noframe", folder)
    lines = [ln.split("\t") for ln in proc.stdout.splitlines()]
    assert [ln[0] for ln in lines] == sorted(paths[:4]) + [paths[4]]
    assert "corrupt.png" in proc.stderr and "skipped" in proc.stderr
    assert "notes.txt" not in proc.stdout + proc.stderr
    # Same preprocessing and model as evaluation: the texts equal evaluate's predictions, the
    # confidence is p(text | image) over all alignments.
    source = LmdbSource(trained.lex)
    images, _ = preprocessed(ckpt, source)
    log_probs = model_log_probs(ckpt, images[:5])
    by_path = {ln[0]: (ln[1], float(ln[2])) for ln in lines}
    for path, lp in zip(paths, log_probs):
        text, confidence = by_path[path]
        assert text == ctc_host.greedy_decode(lp.argmax(-1)[None], ckpt.charset)[0]
        exact = np.exp(ctc_host.ctc_log_likelihood(lp, ckpt.charset.encode(text)))
        assert confidence == pytest.approx(exact, rel=1e-3, abs=1e-12)


def test_recognize_with_nothing_readable_fails(trained, image_dir):
    folder, _ = image_dir
    proc = run_module("grcnn_jax.recognize", f"--workdir={trained.workdir}",
                      folder / "corrupt.png", folder / "missing.png", check=False, timeout=120)
    assert proc.returncode != 0
    assert "corrupt.png" in proc.stderr and "missing.png" in proc.stderr
    assert "no image could be read" in proc.stderr


def test_recognize_with_lexicon_and_beam(trained, ckpt, image_dir, tmp_path):
    from grcnn_jax.inference.recognize import load_images, read_lexicon, recognize_images

    folder, paths = image_dir
    lexicon_file = tmp_path / "lexicon.txt"
    lexicon_file.write_text("grcnn, CTC\nlstm\n\nit's,gate\n")
    lexicon = read_lexicon(str(lexicon_file))
    assert lexicon == ["grcnn", "CTC", "lstm", "it's", "gate"]
    c = ckpt.config
    images, good, problems = load_images(paths + [str(folder / "corrupt.png")], c.image_height,
                                         c.image_width, c.data.keep_aspect)
    assert good == paths and [p for p, _ in problems] == [str(folder / "corrupt.png")]
    log_probs = model_log_probs(ckpt, images)
    preds = recognize_images(ckpt, images, lexicon=lexicon, beam_width=3, batch_size=2,
                             frame=False)                              # as given only
    words = ["grcnn", "ctc", "lstm", "gate"]
    for p, lp in zip(preds, log_probs):
        scores = {w: ctc_host.ctc_log_likelihood(lp, ckpt.charset.encode(w)) for w in words}
        assert p.lexicon_text == max(scores, key=scores.get)
        assert p.lexicon_confidence == pytest.approx(np.exp(scores[p.lexicon_text]), rel=1e-3,
                                                     abs=1e-12)
        [(beam_text, _)] = ctc_host.beam_search_decode(lp[None], ckpt.charset, 3)
        assert p.text == beam_text
        assert p.confidence == pytest.approx(
            np.exp(ctc_host.ctc_log_likelihood(lp, ckpt.charset.encode(p.text))), rel=1e-6)
    proc = run_module("grcnn_jax.recognize", f"--workdir={trained.workdir}", "--noframe",
                      f"--lexicon={lexicon_file}", paths[0])
    assert proc.stdout.split("\t")[1] == preds[0].lexicon_text
    assert "it's" in proc.stderr                             # the skipped word is named


# ----------------------------------------------------------------------------- several hosts
EVAL_SCRIPT = r"""
import json, os, sys
import jax
jax.distributed.initialize(sys.argv[3], 2, int(sys.argv[4]))
sys.path[:0] = sys.argv[5].split(os.pathsep)
from test_evaluate import evaluate_in_memory
result = evaluate_in_memory(sys.argv[1], sys.argv[2])
if jax.process_index() == 0:
    print("RESULT", json.dumps(result))
"""


def evaluate_in_memory(workdir: str, data: str) -> dict:
    """Evaluator over ``data`` with the checkpoint in ``workdir``, this host's share of it."""
    import jax

    from grcnn_jax.evaluation import evaluator as evaluation
    from grcnn_jax.data import pipeline
    from grcnn_jax.data.sources import open_source
    from grcnn_jax.models import create_model
    from grcnn_jax.assemble import make_mesh, make_preprocess

    ckpt = load_for_inference(workdir)
    model = create_model(ckpt.config.model, ckpt.charset.num_classes)
    batches = pipeline.BatchIterator(pipeline.make_dataset(
        open_source(data), make_preprocess(ckpt.config, ckpt.charset),
        8 // jax.process_count(), train=False, shard_index=jax.process_index(),
        shard_count=jax.process_count()))
    evaluator = evaluation.Evaluator(model, ckpt.charset, make_mesh(), batch_size=8)
    return evaluator.evaluate(ckpt.params, ckpt.batch_stats, batches)


def test_two_hosts_evaluate_lexicons_like_one(trained, tmp_path):
    """Hosts whose batches do and do not carry lexicons still run the lexicon step together."""
    script = tmp_path / "evaluate_script.py"
    script.write_text(EVAL_SCRIPT)
    data = f"{trained.lex},{trained.root / 'train.lmdb'}"       # 13 with lexicons, 24 without
    port = free_port()
    procs = [subprocess.Popen([sys.executable, str(script), str(trained.workdir), data,
                               f"127.0.0.1:{port}", str(i), os.pathsep.join(
                                   [str(REPO / "tests" / "evaluation"), str(REPO / "tests")])],
                              env=subprocess_env(),
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    a = evaluate_in_memory(str(trained.workdir), data)          # one host, meanwhile
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-4000:]
        outs.append(out)
    b = json.loads(outs[0].split("RESULT ", 1)[1])
    assert a["count"] == b["count"] == 37 and a["lexicon_count"] == b["lexicon_count"] == 13
    for key in ("word_accuracy", "lexicon_word_accuracy", "normalized_edit_distance", "loss"):
        assert b[key] == pytest.approx(a[key], rel=1e-5), key
    assert a["lexicon_word_accuracy"] > 0
