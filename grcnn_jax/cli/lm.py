"""The ``grcnn-lm`` command: a character language model to read with (``grcnn_jax.text.char_lm``).

    grcnn-lm --texts runs/data/train.tsv --out lm.npz
    grcnn-lm --texts runs/data/real_train.lmdb,more.txt --label_weight 3 --out lm.npz
    python -m grcnn_jax.evaluate --data DIR --lm lm.npz         # try it
    grcnn-pretrained --checkpoint pretrained --lm lm.npz --out DIR   # a reader that has it

The model is built from the generator's English word list (SCOWL, inside the package; leave
it out with ``--nowords``), ``--numbers`` texts without letters drawn as the generator writes
them (prices, times, dates), and the texts of ``--texts``: LMDBs or ICDAR-03 folders (their
labels), or text files (one text per line; a line with a tab: the text after the first tab,
as in a label file). Use training labels only: a model built from the texts of a set you
measure on reads that set better than it reads anything else. The settings it is read with
(``--weight``, ``--length_bonus``, ``--beam_width``, ``--confident``, ``--min_prob``) are
stored in the file.
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import flags

from grcnn_jax import process
from grcnn_jax.cli import common


def define_flags(flag_values) -> None:
    """The flags of ``grcnn-lm`` (on ``flag_values``)."""
    from grcnn_jax.text.char_lm import Settings

    d = Settings()
    flags.DEFINE_list("texts", [], "where the texts come from (comma-separated): LMDBs, "
                      "ICDAR-03 folders, text files", flag_values=flag_values)
    flags.DEFINE_string("out", None, "the model file to write (.npz)", flag_values=flag_values)
    flags.mark_flag_as_required("out", flag_values=flag_values)
    flags.DEFINE_bool("words", True, "include the generator's English word list, each word once",
                      flag_values=flag_values)
    flags.DEFINE_integer("numbers", 5000, "texts without letters drawn from the generator",
                         flag_values=flag_values)
    flags.DEFINE_float("label_weight", 3.0, "how many times each text of --texts counts",
                       flag_values=flag_values)
    flags.DEFINE_integer("order", 6, "n: characters of context + 1", flag_values=flag_values)
    flags.DEFINE_float("weight", d.weight, "fusion weight of the model's log-probability",
                       flag_values=flag_values)
    flags.DEFINE_float("length_bonus", d.length_bonus, "nats added per character",
                       flag_values=flag_values)
    flags.DEFINE_integer("beam_width", d.beam_width, "prefixes kept per frame",
                         flag_values=flag_values)
    flags.DEFINE_float("confident", d.confident, "greedy readings this probable or more are "
                       "kept without a search (above 1: search every image)",
                       flag_values=flag_values)
    flags.DEFINE_float("min_prob", d.min_prob, "a frame's classes less probable than this are "
                       "not tried as extensions (0: every class)", flag_values=flag_values)


def read_texts(spec: str) -> list[str]:
    """The texts of one ``--texts`` entry (see the module doc); DataError names it."""
    from grcnn_jax.data.errors import DataError

    if os.path.isfile(spec):
        try:
            with open(spec, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"--texts {spec!r}: cannot read it as UTF-8 text ({e})") from None
        return [line.partition("\t")[2] if "\t" in line else line for line in lines]
    from grcnn_jax.data.sources import open_source

    source = open_source(spec, what="--texts")
    return [source[i]["text"] for i in range(len(source))]


def main(argv: Sequence[str] | None = None) -> int:
    """Builds and writes the model; returns the exit status."""
    FLAGS, _ = common.parse_command_line(define_flags, argv, __doc__)
    if not FLAGS.texts and not FLAGS.words and not FLAGS.numbers:
        raise common.usage_error("nothing to build from: give --texts, or keep --words")
    with common.refusals_as_one_line(argv):
        from grcnn_jax.text.char_lm import CharLM, Settings, training_texts

        settings = Settings(FLAGS.weight, FLAGS.length_bonus, FLAGS.beam_width, FLAGS.confident,
                            FLAGS.min_prob)
        labels = [t for spec in FLAGS.texts for t in read_texts(spec)]
        texts = training_texts(labels, FLAGS.label_weight, None if FLAGS.words else (),
                               FLAGS.numbers)
        parts = []
        if FLAGS.words:
            parts.append("the generator's English words")
        if FLAGS.numbers:
            parts.append(f"{FLAGS.numbers} of its numbers")
        if FLAGS.texts:
            parts.append(f"{len(labels)} texts of {', '.join(FLAGS.texts)} "
                         f"(x{FLAGS.label_weight:g})")
        lm = CharLM.train(texts, FLAGS.order, settings, about=" + ".join(parts))
        from grcnn_jax.workdir.writers import atomic_path

        with atomic_path(FLAGS.out) as tmp:
            lm.save(tmp)
    print(f"wrote {FLAGS.out}: order {lm.order}, {len(lm.tables()[0]):,} n-grams from {lm.about}, "
          f"{os.path.getsize(FLAGS.out) / 1e6:.1f} MB")
    return 0


def run() -> None:
    """The ``grcnn-lm`` command: refusals exit with one FATAL line."""
    process.configure()
    with common.refusals_as_one_line():
        raise SystemExit(main())


if __name__ == "__main__":
    run()
