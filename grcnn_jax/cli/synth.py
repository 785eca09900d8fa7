"""The ``grcnn-synth`` command: its flags and its run; the work is ``grcnn_jax.data.synth.generator``'s."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from absl import flags

from grcnn_jax.cli import common
from grcnn_jax.data.errors import DataError
from grcnn_jax.data.synth import fonts
from grcnn_jax.data.synth.generator import SynthWords, benchmark, contact_sheet
from grcnn_jax.data.synth.styles import parse_styles
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
    flags.DEFINE_string("palettes_from", None, "measure (text, background) colour pairs on the "
                        "crops of this dataset (ICDAR-03 folder, LMDB) and write them to "
                        "--palettes (a .npy file; config.data.synth_palettes reads it)",
                        flag_values=flag_values)
    flags.DEFINE_string("palettes", None, "with --palettes_from: the .npy file to write; "
                        "otherwise the samples of --contact_sheet and --benchmark are painted "
                        "with the pairs in it, as training with config.data.synth_palettes",
                        flag_values=flag_values)
    flags.DEFINE_string("styles", None, "with --contact_sheet and --benchmark: extra lettering "
                        "styles, comma-separated: dots (LED / dot-matrix), relief (raised or cut "
                        "in the surface), each for a few per cent of the words, as training with "
                        "config.data.synth_styles", flag_values=flag_values)
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
    if not (FLAGS.contact_sheet or FLAGS.benchmark or FLAGS.fonts or FLAGS.palettes_from):
        raise common.usage_error("give --contact_sheet OUT.png, --benchmark, --fonts and/or "
                                 "--palettes_from DATA --palettes OUT.npy")
    if FLAGS.palettes_from and not FLAGS.palettes:
        raise common.usage_error("--palettes_from needs --palettes OUT.npy (where to write)")
    from grcnn_jax.config.defaults import CASED_CHARSET

    charset = (None if not FLAGS.charset else Charset(CASED_CHARSET) if FLAGS.charset == "cased"
               else Charset.from_spec(FLAGS.charset))
    if FLAGS.fonts:
        print("\n".join(fonts.report(charset.chars if charset else DEFAULT_CHARS)))
    if FLAGS.palettes_from:
        from grcnn_jax.data.sources import open_source
        from grcnn_jax.data.synth.palettes import build_palette

        data = open_source(FLAGS.palettes_from, what="--palettes_from")
        palette = build_palette(data)
        if not len(palette):
            raise DataError(f"--palettes_from={FLAGS.palettes_from!r}: no crop of its "
                            f"{len(data)} gave two colours apart enough to use")
        np.save(FLAGS.palettes, palette)
        print(f"wrote {len(palette)} colour pairs from {len(data)} crops to {FLAGS.palettes}")
    painted = None if FLAGS.palettes_from else FLAGS.palettes
    try:
        styles = parse_styles(FLAGS.styles)
    except ValueError as e:
        raise common.usage_error(f"--styles={FLAGS.styles!r}: {e}") from None
    if FLAGS.contact_sheet:
        n = FLAGS.n or 64
        src = SynthWords(n, seed=FLAGS.seed, height=FLAGS.height, charset=charset,
                         palettes=painted, palettes_setting="--palettes", styles=styles)
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
        src = SynthWords(n, seed=FLAGS.seed, height=FLAGS.height, charset=charset,
                         palettes=painted, palettes_setting="--palettes", styles=styles)
        print(f"{benchmark(src, n):.0f} images/s on one core ({n} images, height {FLAGS.height}, "
              f"{len(src.fonts)} fonts)")
    return 0


def run() -> None:
    """The ``grcnn-synth`` command: refusals exit with one FATAL line."""
    with common.refusals_as_one_line():
        raise SystemExit(main())


if __name__ == "__main__":
    run()
