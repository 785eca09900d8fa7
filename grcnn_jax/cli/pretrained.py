"""The ``grcnn-pretrained`` command: a reader folder (the shipped reader's format, see
``grcnn_jax.inference.pretrained``) written from a training checkpoint.

    grcnn-pretrained --workdir runs/reader [--step latest] \
        [--out grcnn_jax/assets/reader] [--note "IC03-dev 0.80 / 0.97"]
    grcnn-pretrained --checkpoint runs/reader/checkpoints/12000 [...]
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import flags

from grcnn_jax.inference import load
from grcnn_jax import process
from grcnn_jax.cli import common
from grcnn_jax.inference.pretrained import ASSET_DIR, VARIABLES_FILE, export


def define_flags(flag_values) -> None:
    """The flags of ``grcnn-pretrained`` (on ``flag_values``)."""
    flags.DEFINE_string("workdir", None, "training workdir", flag_values=flag_values)
    flags.DEFINE_string("checkpoint", None, "a checkpoint step directory (instead of --workdir)",
                        flag_values=flag_values)
    flags.DEFINE_string("step", "latest", "checkpoint of --workdir: 'latest', 'best' or a step "
                        "number", flag_values=flag_values)
    flags.DEFINE_string("out", ASSET_DIR, "the folder to write", flag_values=flag_values)
    flags.DEFINE_string("note", "", "a line stored in meta.json (what it measured)",
                        flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> int:
    """Writes a checkpoint as the shipped model's folder; returns the exit status."""

    FLAGS, _ = common.parse_command_line(define_flags, argv, __doc__)
    if not FLAGS.workdir and not FLAGS.checkpoint:
        raise common.usage_error("give --workdir or --checkpoint: the checkpoint to ship")
    with common.refusals_as_one_line(argv):
        ckpt = load.load_for_inference(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
        meta = export(ckpt, FLAGS.out, FLAGS.note)
    size = os.path.getsize(os.path.join(FLAGS.out, VARIABLES_FILE))
    print(f"wrote {FLAGS.out}: step {meta['step']}, {meta['parameters']:,} parameters, "
          f"{size / 1e6:.1f} MB, sha256 {meta['sha256'][:16]}...")
    return 0


def run() -> None:
    """The ``grcnn-pretrained`` command: refusals exit with one FATAL line."""
    # A failed checkpoint read leaves orbax's pending I/O callbacks: one error, not hundreds.
    process.quiet_closed_loop_callbacks()
    with common.refusals_as_one_line():
        raise SystemExit(main())


if __name__ == "__main__":
    run()
