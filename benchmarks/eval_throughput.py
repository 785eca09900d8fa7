"""Evaluation throughput: the eval pipeline (decoding and metrics included) vs bare inference.

    python -m benchmarks.eval_throughput                       # quickstart model
    python -m benchmarks.eval_throughput --config configs/grcl.py --batch 256
    python -m benchmarks.eval_throughput --config configs/reader_real.py --config.model.T=3
    python -m benchmarks.eval_throughput --workdir DIR          # a trained checkpoint
    python -m benchmarks.eval_throughput --workdir pretrained   # the shipped reader, its LM too

The data are synthetic validation words (``SynthWords``), or with ``--data`` the records
of a real set (an LMDB or ICDAR-03 folder: the language model's cost depends on how many
images it searches), preprocessed and batched into memory before anything is timed: the
loader is not measured (``benchmarks/data_loader.py`` measures it). Each image gets a
lexicon of ``--lexicon`` words (its own word and random others from the generator's word
list), like the 50-word lexicons of SVT / IC03 / IIIT5K.

Rows (every one a full warm pass over the same batches; best of ``--repeats``, the rows
taking turns so that a machine's drift in speed reaches all of them alike):
  bare inference   the model's jitted forward alone: batch to the device, forward,
                   result ready (``jax.jit(model.apply)``; logits never fetched).
  eval greedy      ``Evaluator.evaluate``: the eval step (forward, argmax, CTC loss),
                   greedy decoding and word metrics on the host.
  eval lexicon     the same, plus every image's lexicon scored on the device
                   (``decode.lexicon_log_likelihoods``) and the best word picked.
  eval beam N      lexicon-free prefix beam search on the host (with ``--beam N``).
  eval greedy, turn  as eval greedy, and each crop at least 1.25 times as tall as wide
                   also read turned a quarter each way (``Evaluator(turn=True)``).
  eval LM          greedy where confident, else the beam search fused with the character
                   language model (the reader's own, or ``--lm FILE``); ``eval LM, turn``
                   turning too.
  eval greedy, frame  as eval greedy, and each image whose reading has p < 0.5 also read
                   framed tighter and looser (``Evaluator(frame=True)``); ``eval LM, turn,
                   frame``: all three.
  eval LM, turn, frame, unbend  and each image still unsure after framing also read
                   unbent along arcs (``Evaluator(unbend=True)``): how ``evaluate`` reads
                   with the shipped reader.

Without ``--workdir`` the parameters are random (the cost does not depend on them,
except beam search's, which grows with flatter outputs: use a trained checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import time
from typing import Sequence

import jax
import numpy as np
from absl import flags
from ml_collections import config_flags
from jax.sharding import NamedSharding, PartitionSpec as P

from grcnn_jax.evaluation import evaluator as evaluation
from grcnn_jax import process
from grcnn_jax.cli import common
from grcnn_jax.text.charset import Charset
from grcnn_jax.data import pipeline
from grcnn_jax.data.preprocess import Problem
from grcnn_jax.data.synth.generator import SynthWords
from grcnn_jax.models import create_model
from grcnn_jax.assemble import make_mesh, make_preprocess

REPO = pathlib.Path(__file__).resolve().parents[1]


def make_batches(config, charset: Charset, n: int, batch: int, lexicon_size: int,
                 seed: int, data: str | None = None) -> list[dict]:
    """``n`` synthetic validation images (or the first ``n`` records of ``data``) as loader
    batches in memory, with lexicons, the tall crops' turned views and the crops to unbend."""
    synth = SynthWords(length=n, seed=config.data.synth_seed + 1, height=config.image_height,
                       charset=charset)
    source = synth
    if data:
        from grcnn_jax.data.sources import open_source

        source = open_source(data, what="--data")
        n = min(n, len(source))
    preprocess = dataclasses.replace(make_preprocess(config, charset), turn=True, unbend=True)
    rng = np.random.default_rng(seed)
    vocabulary = synth.words
    examples = []
    for i in range(n):
        e = preprocess(source[i])
        if isinstance(e, Problem):
            continue
        others = [vocabulary[j] for j in rng.choice(len(vocabulary), lexicon_size - 1,
                                                   replace=False)]
        words = others[:]
        words.insert(int(rng.integers(0, lexicon_size)), e["text"])
        e["lexicon"] = words
        examples.append(e)
    return [pipeline.collate(examples[s:s + batch], batch, [])
            for s in range(0, len(examples), batch)]


def time_passes(fns: Sequence, repeats: int) -> list[float]:
    """Best wall time (s) of ``repeats`` calls of each of ``fns`` after one warm-up call
    each; the calls take turns (one of each per round)."""
    for fn in fns:
        fn()
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def define_flags(flag_values, argv: Sequence[str] | None = None) -> None:
    """The command's flags, on ``flag_values``; ``argv`` (default ``sys.argv[1:]``) is where
    the ``--config.FIELD=VALUE`` overrides are read from."""
    config_flags.DEFINE_config_file(
        "config", str(REPO / "configs" / "quickstart.py"), "a config file (random parameters), "
        "with overrides as training takes them: --config.model.T=3", flag_values=flag_values,
        sys_argv=None if argv is None else ["eval_throughput", *argv])
    flags.DEFINE_string("lm", None, "also time reading with this language model (a file "
                        "grcnn-lm wrote; default: the checkpoint's own, if any; 'none': no row)",
                        flag_values=flag_values)
    flags.DEFINE_string("workdir", None, "evaluate this training workdir's latest checkpoint "
                        "(its config) instead of random parameters", flag_values=flag_values)
    flags.DEFINE_integer("batch", 100, "images per batch", flag_values=flag_values)
    flags.DEFINE_integer("images", 1000, "synthetic validation images (with --data: at most "
                         "this many of its records)", flag_values=flag_values)
    flags.DEFINE_string("data", None, "time a real set's images (an LMDB or ICDAR-03 folder) "
                        "instead of synthetic ones", flag_values=flag_values)
    flags.DEFINE_integer("lexicon", 50, "words per image's lexicon", flag_values=flag_values)
    flags.DEFINE_integer("beam", 0, "also time beam search of this width",
                         flag_values=flag_values)
    flags.DEFINE_integer("repeats", 3, "timed passes per row (best)", flag_values=flag_values)
    flags.DEFINE_string("json", None, "also write the rows to this file", flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> list[dict]:
    FLAGS, _ = common.parse_command_line(lambda fv: define_flags(fv, argv), argv, __doc__)

    if FLAGS.workdir:
        from grcnn_jax.inference.load import load_for_inference, with_lm

        ckpt = with_lm(load_for_inference(checkpoint=FLAGS.workdir), FLAGS.lm)
        lm = ckpt.lm
        config, charset = ckpt.config, ckpt.charset
        model = create_model(config.model, charset.num_classes)
        variables = {"params": ckpt.params, "batch_stats": ckpt.batch_stats}
        what = f"checkpoint {ckpt.path}"
    else:
        from grcnn_jax.inference.lm_files import choose_lm

        lm = choose_lm(FLAGS.lm, None)
        config = FLAGS.config
        charset = Charset.from_spec(config.charset)
        model = create_model(config.model, charset.num_classes)
        images = np.zeros((1, config.image_height, config.image_width), np.uint8)
        variables = jax.jit(model.init)(jax.random.key(0), images)
        overrides = "".join(f" --config.{k}={v}" for k, v in
                            config_flags.get_override_values(FLAGS["config"]).items())
        what = (f"{os.path.relpath(config_flags.get_config_filename(FLAGS['config']), REPO)}"
                f"{overrides} (random parameters)")
    mesh = make_mesh()
    data, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    variables = jax.device_put(variables, replicated)

    start = time.perf_counter()
    batches = make_batches(config, charset, FLAGS.images, FLAGS.batch, FLAGS.lexicon, seed=0,
                           data=FLAGS.data)
    n = int(sum(b["mask"].sum() for b in batches))
    kind = f"images of {FLAGS.data}" if FLAGS.data else "synthetic images"
    print(f"# {what}; {n} {kind} in {len(batches)} batches of {FLAGS.batch}, "
          f"{FLAGS.lexicon}-word lexicons, generated in {time.perf_counter() - start:.1f} s")
    print(f"# jax {jax.__version__}, {jax.device_count()} x {jax.devices()[0].device_kind}")
    plain = [{**b, "meta": {**b["meta"], "lexicon": [None] * len(b["meta"]["lexicon"])}}
             for b in batches]

    forward = jax.jit(lambda v, x: model.apply(v, x, train=False), in_shardings=(replicated, data),
                      out_shardings=data)

    def bare():
        out = None
        for b in batches:
            out = forward(variables, jax.make_array_from_process_local_data(data, b["image"]))
        out.block_until_ready()

    rows = [("bare inference", bare)]
    greedy = evaluation.Evaluator(model, charset, mesh, FLAGS.batch)
    results = {}

    def evaluate_pass(evaluator, bs, name):
        def fn():
            results[name] = evaluator.evaluate(variables["params"], variables["batch_stats"], bs)
        return fn

    rows.append(("eval greedy", evaluate_pass(greedy, plain, "eval greedy")))
    rows.append((f"eval lexicon {FLAGS.lexicon}", evaluate_pass(greedy, batches, "lexicon")))
    if FLAGS.beam > 1:
        beam = evaluation.Evaluator(model, charset, mesh, FLAGS.batch, beam_width=FLAGS.beam)
        rows.append((f"eval beam {FLAGS.beam}", evaluate_pass(beam, plain, "beam")))
    turning = evaluation.Evaluator(model, charset, mesh, FLAGS.batch, turn=True)
    rows.append(("eval greedy, turn", evaluate_pass(turning, plain, "turn")))
    framing = evaluation.Evaluator(model, charset, mesh, FLAGS.batch, frame=True)
    rows.append(("eval greedy, frame", evaluate_pass(framing, plain, "frame")))
    if lm is not None:
        fused = evaluation.Evaluator(model, charset, mesh, FLAGS.batch, lm=lm)
        rows.append(("eval LM", evaluate_pass(fused, plain, "lm")))
        fused = evaluation.Evaluator(model, charset, mesh, FLAGS.batch, lm=lm, turn=True)
        rows.append(("eval LM, turn", evaluate_pass(fused, plain, "lm turn")))
        fused = evaluation.Evaluator(model, charset, mesh, FLAGS.batch, lm=lm, turn=True,
                                     frame=True)
        rows.append(("eval LM, turn, frame", evaluate_pass(fused, plain, "lm turn frame")))
        fused = evaluation.Evaluator(model, charset, mesh, FLAGS.batch, lm=lm, turn=True,
                                     frame=True, unbend=True,
                                     keep_aspect=bool(config.data.keep_aspect))
        rows.append(("eval LM, turn, frame, unbend",
                     evaluate_pass(fused, plain, "lm turn frame unbend")))

    out = [{"what": name, "images_per_s": n / seconds,
            "ms_per_batch": 1e3 * seconds / len(batches)}
           for (name, _), seconds in zip(rows, time_passes([fn for _, fn in rows],
                                                          FLAGS.repeats))]
    base = out[0]["images_per_s"]
    print(f"{'':28s} {'images/s':>10s} {'ms/batch':>10s} {'vs bare':>8s}")
    for r in out:
        r["relative"] = r["images_per_s"] / base
        print(f"{r['what']:28s} {r['images_per_s']:10.1f} {r['ms_per_batch']:10.1f} "
              f"{r['relative']:8.1%}")
    accuracy = [f"greedy {results['eval greedy']['word_accuracy']:.3f}",
                f"lexicon {results['lexicon']['lexicon_word_accuracy']:.3f}"]
    if "beam" in results:
        accuracy.append(f"beam {FLAGS.beam} {results['beam']['word_accuracy']:.3f}")
    accuracy.append(f"greedy, turn {results['turn']['word_accuracy']:.3f}")
    accuracy.append(f"greedy, frame {results['frame']['word_accuracy']:.3f}")
    if "lm" in results:
        accuracy.append(f"LM {results['lm']['word_accuracy']:.3f}")
        accuracy.append(f"LM, turn {results['lm turn']['word_accuracy']:.3f}")
        accuracy.append(f"LM, turn, frame {results['lm turn frame']['word_accuracy']:.3f}")
        accuracy.append("LM, turn, frame, unbend "
                        f"{results['lm turn frame unbend']['word_accuracy']:.3f}")
    print(f"# word accuracy on these images: {', '.join(accuracy)}")
    if FLAGS.json:
        with open(FLAGS.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
    return out


def run() -> None:
    """The ``python -m benchmarks.eval_throughput`` command."""
    process.configure()
    main()


if __name__ == "__main__":
    run()
