"""Evaluate a checkpoint on benchmark datasets: word accuracy with and without lexicon.

    python -m grcnn_jax.evaluate --data data/IC03                    # the shipped model
    python -m grcnn_jax.evaluate --workdir DIR                       # the config's val set
    python -m grcnn_jax.evaluate --workdir DIR --step best --data data/IIIT5K_lmdb,data/IC03
    python -m grcnn_jax.evaluate --checkpoint DIR/checkpoints/6000 --data a.lmdb --data b.lmdb
    python -m grcnn_jax.evaluate --benchmark data/evaluation         # the standard benchmarks

``--data`` takes dataset specs (see ``grcnn_jax.data.sources``: an LMDB, an
ICDAR-03-style folder, 'synth', 'tfds:NAME/SPLIT'), comma-separated or repeated;
each is evaluated and reported on its own. Without it: the validation set exactly
as the training config defines it (``config.data.val``; for 'synth' the
config's ``synth_val_size`` and ``synth_seed + 1``).

Everything comes from the checkpoint (``WORKDIR/checkpoints/<step>``): params,
batch statistics (no optimizer state is read), the config (model, image size,
data policy) and the charset. Records are preprocessed by the training loader
(same resize, same label policy -- by default labels are lowercased; records it
skips, e.g. labels outside the charset or too long for the frames, are not
counted and are listed per reason). Lexicon words get the same case policy;
words that still do not fit the charset are skipped and counted.

Per dataset: images, lexicon-free word accuracy, lexicon word accuracy (where
records carry a lexicon: the lexicon word of highest CTC likelihood), normalized
edit distance (ED / max(len), 0 = perfect), mean CTC loss, images/s (steady
state, the loader included). Standard protocol: letters and digits only,
case-insensitive (``--case_sensitive`` to compare case). Printed as a table and
written as JSON (``--output``, default ``WORKDIR/eval_<step>.json``).

``--benchmark DIR`` (not with ``--data``) scores the standard benchmarks found in DIR --
DTRB's ``evaluation/`` sets IIIT5k_3000, SVT, IC03_860, IC03_867, IC13_857, IC13_1015,
IC15_1811, IC15_2077, SVTP, CUTE80 in that order (PARSeq's ``test/`` names too), then any
other set there -- and prints PARSeq's table: per set the number of samples, accuracy,
1 - NED and mean confidence in %, and a Combined row weighted by sample count (JSON:
default ``WORKDIR/benchmark_<step>.json``). Its convention (``grcnn_jax.evaluation.protocol``
has the details):

* the denominator is every record of the set. Labels are adapted to the charset as
  PARSeq's CharsetAdapter does (lowercased for a lowercase charset, accents folded, other
  characters removed), not skipped; a record that still cannot be used (undecodable image,
  label left empty, label too long for the frames, missing record) counts as wrong and is
  listed with its key. Why: PARSeq and DTRB drop such records before counting (DTRB: labels
  with characters outside its charset; PARSeq: labels over 25 characters or empty), so
  their denominators depend on the model; counting everything keeps the published set
  sizes and makes models comparable; DTRB already counts a corrupt image as wrong.
* accuracy: exact match after reducing both words to letters and digits, case-insensitive
  (PARSeq's default 36-character test charset; ``--case_sensitive`` is its ``--cased``).
* 1 - NED: ICDAR 2019, 1 - ED(pred, gt) / max(len(pred), len(gt)) per image, averaged, as
  PARSeq's ``_eval_step`` and DTRB's ``validation`` compute it; an unusable record scores 0.
* confidence: p(prediction | image) over all CTC alignments (0 for an unusable record);
  PARSeq's CTC models report the single best path's probability, which is never larger.
* Combined: weighted by sample count over the sets listed (PARSeq's Combined, DTRB's
  total_accuracy); PARSeq's two six-set groups get their own rows when complete.
"""

from __future__ import annotations

import json
import os
import sys

from grcnn_jax.inference import load
from grcnn_jax.evaluation.scoring import evaluate_checkpoint, format_table, split_specs
from grcnn_jax.workdir.writers import atomic_path
from grcnn_jax.cli import common
from grcnn_jax import process


# ----------------------------------------------------------------------------- command line
def _define_flags() -> None:
    from absl import flags


    common.define_checkpoint_flags()
    flags.DEFINE_string("benchmark", None, "Score the standard benchmarks in this folder "
                        "(IIIT5k_3000, SVT, IC03_860, ..., CUTE80 and any other set there) "
                        "under the benchmark protocol: every record counted, PARSeq's table. "
                        "Not with --data.")
    flags.DEFINE_multi_string("data", None, "Dataset spec(s), comma-separated or repeated: an "
                              "LMDB, an ICDAR-03-style folder, 'synth', 'tfds:NAME/SPLIT'. "
                              "Default: the config's validation set.")
    flags.DEFINE_integer("batch_size", None, "Eval batch size (default: config.eval_batch_size).")
    flags.DEFINE_bool("case_sensitive", False, "Compare case (default: case-insensitive, the "
                      "standard protocol).")
    flags.DEFINE_integer("beam_width", 1, "Lexicon-free decoding: 1 = greedy, more = prefix beam "
                         "search.")
    common.define_view_flags()
    flags.DEFINE_integer("num_workers", None, "Loader worker processes (default: none for "
                         "stored sets, config.data.num_workers for the generator).")
    flags.DEFINE_string("output", None, "JSON report path (default: WORKDIR/eval_<step>.json, "
                        "WORKDIR/benchmark_<step>.json with --benchmark; none for the shipped "
                        "model).")
    flags.DEFINE_string("predictions", None, "Optional JSON-lines file: one line per image "
                        "(dataset, key, text, prediction, lexicon_prediction; with --benchmark: "
                        "dataset, key, text, prediction, confidence, correct, ned, problem).")


def main(argv: list[str]) -> None:
    from absl import app, flags


    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.beam_width < 1:
        raise app.UsageError(f"--beam_width must be >= 1, got {FLAGS.beam_width}")
    if FLAGS.benchmark and FLAGS.data:
        raise app.UsageError("give --benchmark DIR or --data, not both: --benchmark scores the "
                             "sets it finds in DIR")
    process.log_our_progress()
    with common.refusals_as_one_line():
        ckpt = load.with_lm(load.load_for_inference(FLAGS.workdir, FLAGS.checkpoint,
                                                    FLAGS.step), FLAGS.lm)
        predictions: dict | None = {} if FLAGS.predictions else None
        if FLAGS.benchmark:
            from grcnn_jax.evaluation import protocol as benchmark_protocol

            report = benchmark_protocol.evaluate_benchmark(
                ckpt, FLAGS.benchmark, batch_size=FLAGS.batch_size,
                case_sensitive=FLAGS.case_sensitive, beam_width=FLAGS.beam_width,
                num_workers=FLAGS.num_workers, predictions=predictions, turn=FLAGS.turn,
                frame=FLAGS.frame, unbend=FLAGS.unbend)
        else:
            report = evaluate_checkpoint(
                ckpt, split_specs(FLAGS.data), batch_size=FLAGS.batch_size,
                case_sensitive=FLAGS.case_sensitive, beam_width=FLAGS.beam_width,
                num_workers=FLAGS.num_workers, predictions=predictions, turn=FLAGS.turn,
                frame=FLAGS.frame, unbend=FLAGS.unbend)
    if FLAGS.benchmark:
        print(benchmark_protocol.format_table(report), flush=True)
    else:
        print(format_table(report), flush=True)
    # The shipped model has no workdir: its report is written only where --output says.
    prefix = "benchmark" if FLAGS.benchmark else "eval"
    output = FLAGS.output or (os.path.join(ckpt.workdir, f"{prefix}_{ckpt.step}.json")
                              if ckpt.workdir else None)
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        with atomic_path(output) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {output}", file=sys.stderr)
    if predictions is not None:
        with atomic_path(FLAGS.predictions) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for name, items in predictions.items():
                for item in items:
                    f.write(json.dumps({"dataset": name, **item}) + "\n")
        print(f"wrote {FLAGS.predictions}", file=sys.stderr)


def run() -> None:
    """The ``grcnn-evaluate`` command (``python -m grcnn_jax.evaluate``)."""
    common.run_command(main, _define_flags)


if __name__ == "__main__":
    run()
