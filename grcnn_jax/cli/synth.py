"""The ``grcnn-synth`` command: its flags and its run; the work is ``grcnn_jax.data.synth.generator``'s."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from absl import flags

from grcnn_jax.cli import common
from grcnn_jax.data.synth import fonts
from grcnn_jax.data.synth.generator import SynthWords, benchmark, contact_sheet
from grcnn_jax.text.charset import DEFAULT_CHARS, Charset


def define_flags(flag_values) -> None:
    """The flags of ``grcnn-synth`` (on ``flag_values``)."""
    flags.DEFINE_string("contact_sheet", None, "write a grid of samples to this PNG file",
                        flag_values=flag_values)
    flags.DEFINE_string("real", None, "with --contact_sheet: rows of real crops from this "
                        "dataset (ICDAR-03 folder, LMDB) above the generated rows",
                        flag_values=flag_values)
    flags.DEFINE_bool("benchmark", False, "print images/s on one core", flag_values=flag_values)
    flags.DEFINE_bool("fonts", False, "list the faces the generator found, and why others were "
                      "left out", flag_values=flag_values)
    flags.DEFINE_integer("n", None, "samples (sheet: 64, benchmark: 2000)", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "selects the samples", flag_values=flag_values)
    flags.DEFINE_integer("height", 32, "image height, px", flag_values=flag_values)
    flags.DEFINE_string("charset", None, "the target charset, as config.charset gives it "
                        "(characters, or file:PATH; 'cased': digits, both cases and the ASCII "
                        "punctuation); default: 0-9a-z", flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> int:
    """The command; returns the exit status."""
    FLAGS, _ = common.parse_command_line(define_flags, argv, __doc__)
    if not (FLAGS.contact_sheet or FLAGS.benchmark or FLAGS.fonts):
        raise common.usage_error("give --contact_sheet OUT.png, --benchmark and/or --fonts")
    from grcnn_jax.config.defaults import CASED_CHARSET

    charset = (None if not FLAGS.charset else Charset(CASED_CHARSET) if FLAGS.charset == "cased"
               else Charset.from_spec(FLAGS.charset))
    if FLAGS.fonts:
        print("\n".join(fonts.report(charset.chars if charset else DEFAULT_CHARS)))
    if FLAGS.contact_sheet:
        n = FLAGS.n or 64
        src = SynthWords(n, seed=FLAGS.seed, height=FLAGS.height, charset=charset)
        real = ()
        if FLAGS.real:
            from grcnn_jax.data.sources import open_source

            data = open_source(FLAGS.real, what="--real")
            picks = np.random.default_rng(FLAGS.seed).permutation(len(data))[:n]
            real = [data[int(j)] for j in picks]
        contact_sheet(src, n, real=real).save(FLAGS.contact_sheet)
        print(f"wrote {n} samples to {FLAGS.contact_sheet}")
    if FLAGS.benchmark:
        n = FLAGS.n or 2000
        src = SynthWords(n, seed=FLAGS.seed, height=FLAGS.height, charset=charset)
        print(f"{benchmark(src, n):.0f} images/s on one core ({n} images, height {FLAGS.height}, "
              f"{len(src.fonts)} fonts)")
    return 0


def run() -> None:
    """The ``grcnn-synth`` command: refusals exit with one FATAL line."""
    with common.refusals_as_one_line():
        raise SystemExit(main())


if __name__ == "__main__":
    run()
