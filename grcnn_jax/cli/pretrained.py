"""The ``grcnn-pretrained`` command: a reader folder (the shipped reader's format, see
``grcnn_jax.inference.pretrained``) written from a training checkpoint.

    grcnn-pretrained --workdir runs/reader [--step latest] \
        [--out grcnn_jax/assets/reader] [--note "IC03-dev 0.80 / 0.97"]
    grcnn-pretrained --checkpoint runs/reader/checkpoints/12000 [...]
    grcnn-pretrained --workdir runs/a --average runs/b,pretrained [...]
    grcnn-pretrained --checkpoint pretrained --lm lm.npz --out DIR    # another language model

With ``--average``, the folder holds the mean of the checkpoint's weights and those of each
listed reader (``grcnn_jax.inference.average``): fine-tunes of one reader with different
seeds or data mixes, averaged, read as well as the best of them or better. The folder
keeps the language model of the checkpoint it is written from (a reader folder's
``lm.npz``) unless ``--lm`` gives another (``grcnn-lm`` writes one) or 'none'.
"""

from __future__ import annotations

import os
from typing import Sequence

from absl import flags

from grcnn_jax.inference import load
from grcnn_jax import process
from grcnn_jax.cli import common
from grcnn_jax.inference.average import average
from grcnn_jax.inference.pretrained import ASSET_DIR, VARIABLES_FILE, export, ingredient


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
    flags.DEFINE_list("average", [], "readers whose weights are averaged with the checkpoint's "
                      "(comma-separated: 'pretrained', reader folders, workdirs (their latest "
                      "step), checkpoint step directories); same model, input size and charset",
                      flag_values=flag_values)
    flags.DEFINE_string("lm", None, "the character language model the reader reads with: a "
                        "file grcnn-lm wrote, or 'none' (default: the checkpoint's own, if it "
                        "has one)", flag_values=flag_values)


def _load_named(spec: str):
    """A reader of ``--average``, its refusal naming the flag and the value."""
    try:
        return load.load_for_inference(checkpoint=spec)
    except (OSError, ValueError) as e:
        e.args = (f"--average {spec!r}: {e}",)
        raise e from None


def main(argv: Sequence[str] | None = None) -> int:
    """Writes a checkpoint as the shipped model's folder; returns the exit status."""

    FLAGS, _ = common.parse_command_line(define_flags, argv, __doc__)
    if not FLAGS.workdir and not FLAGS.checkpoint:
        raise common.usage_error("give --workdir or --checkpoint: the checkpoint to ship")
    with common.refusals_as_one_line(argv):
        ckpt = load.with_lm(load.load_for_inference(FLAGS.workdir, FLAGS.checkpoint,
                                                    FLAGS.step), FLAGS.lm)
        others = [_load_named(spec) for spec in FLAGS.average]
        ingredients = [ingredient(other, spec) for spec, other in zip(FLAGS.average, others)]
        if others:
            ckpt = average([ckpt, *others],
                           [FLAGS.checkpoint or FLAGS.workdir, *FLAGS.average])
        meta = export(ckpt, FLAGS.out, FLAGS.note, averaged_with=ingredients)
    size = os.path.getsize(os.path.join(FLAGS.out, VARIABLES_FILE))
    mean = f", the mean of {len(FLAGS.average) + 1} readers" if FLAGS.average else ""
    lm = f", language model of {meta['lm']['ngrams']:,} n-grams" if meta.get("lm") else ""
    print(f"wrote {FLAGS.out}: step {meta['step']}{mean}, {meta['parameters']:,} parameters, "
          f"{size / 1e6:.1f} MB, sha256 {meta['sha256'][:16]}...{lm}")
    return 0


def run() -> None:
    """The ``grcnn-pretrained`` command: refusals exit with one FATAL line."""
    # A failed checkpoint read leaves orbax's pending I/O callbacks: one error, not hundreds.
    process.quiet_closed_loop_callbacks()
    with common.refusals_as_one_line():
        raise SystemExit(main())


if __name__ == "__main__":
    run()
