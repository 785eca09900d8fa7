"""LMDB datasets in the CRNN format (the seed's and clovaai's): read at random, write, create.

Keys (1-based ``%09d`` indices), values as bytes::

    num-samples       ASCII digits, the number of records N
    image-000000001   encoded image (any format Pillow decodes)
    label-000000001   the transcription, UTF-8
    lexicon-000000001 optional: the image's lexicon, comma-separated words

Create one from a label file or an ICDAR-03-style folder::

    grcnn-make-lmdb --labels data/train.txt OUT_LMDB
    grcnn-make-lmdb --icdar03 data/IC03 OUT_LMDB

A label file has one ``path<TAB or space>text`` per line, paths relative to the
file (a tab separates first if present, so texts may hold spaces then).
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from grcnn_jax import process
from grcnn_jax.cli import common
from grcnn_jax.data.errors import DataError
from grcnn_jax.data.formats.crnn_lmdb import read_label_file, write_lmdb


def define_flags(flag_values) -> None:
    """The flags of ``grcnn-make-lmdb`` (on ``flag_values``); the LMDB to
    create is the one positional argument."""
    flags.DEFINE_string("labels", None, "label file: 'path<TAB or space>text' per line",
                        flag_values=flag_values)
    flags.DEFINE_string("icdar03", None, "ICDAR-03-style folder (test.txt, test_label.txt, "
                        "optional lexicon_50.txt)", flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> int:
    """Creates a CRNN-format LMDB; returns the exit status (2: the input is bad)."""
    FLAGS, rest = common.parse_command_line(define_flags, argv, __doc__, positional=True)
    given = [f"--{name}" for name in ("labels", "icdar03") if FLAGS[name].value is not None]
    if len(given) != 1:
        raise common.usage_error("give one of --labels FILE or --icdar03 FOLDER, got "
                                  f"{' and '.join(given) if given else 'neither'}")
    if len(rest) != 1:
        got = f"{len(rest)}: {' '.join(rest)!r}" if rest else "none"
        raise common.usage_error(f"give one OUTPUT path, the LMDB directory to create (got {got})")
    output, = rest

    from tqdm import tqdm

    try:
        if FLAGS.labels is not None:
            with open(FLAGS.labels, encoding="utf-8", errors="replace") as f:
                total = sum(1 for line in f if line.strip())
            records = read_label_file(FLAGS.labels)
        else:
            from grcnn_jax.data.formats.folders import Icdar03Folder

            folder = Icdar03Folder(FLAGS.icdar03)
            total = len(folder)
            records = (folder[i] for i in range(total))
        # Closed however writing ends, so that a refusal or Ctrl-C starts a line of its own.
        with tqdm(records, total=total, unit="img", desc="writing") as bar:
            n = write_lmdb(output, bar)
    except DataError as e:
        if FLAGS.verbosity >= 1 or process.traceback_requested(argv):
            raise
        print(process.fatal_line(e), file=sys.stderr)
        return 2
    print(f"wrote {n} records to {output}")
    return 0


def run() -> None:
    """The ``grcnn-make-lmdb`` command (``grcnn-make-lmdb``): refusals exit
    with one FATAL line."""
    with common.refusals_as_one_line():
        raise SystemExit(main())


if __name__ == "__main__":
    run()
