"""The ``grcnn-visualize`` command (receptive fields of trained or untrained models); the
work is ``grcnn_jax.analysis``'s."""

from __future__ import annotations

import os
from typing import Sequence

from absl import flags

from grcnn_jax.analysis.plots import plot_fields, plot_profiles
from grcnn_jax.analysis.receptive_fields import (MAX_GRID_FRAMES, TARGETS, effective_columns,
                                                 effective_fields, from_checkpoint, read_image,
                                                 render_word, theoretical_columns, untrained)
from grcnn_jax import process
from grcnn_jax.cli import common
from grcnn_jax.models import frames_for_width


def define_flags(flag_values) -> None:
    """The flags of ``grcnn-visualize`` (on ``flag_values``)."""
    flags.DEFINE_multi_string(
        "workdir", [], "a training workdir, repeatable (e.g. the CNN's, the RCL's, the GRCL's); "
        "none: the untrained models of configs/cnn.py, rcl.py, grcl.py", flag_values=flag_values)
    flags.DEFINE_string("step", "latest", "checkpoint of each workdir: 'latest', 'best' or a "
                        "step number", flag_values=flag_values)
    flags.DEFINE_string("image", None, "a word image file (default: --text rendered)",
                        flag_values=flag_values)
    flags.DEFINE_string("text", "gates", "the word to render when no --image is given",
                        flag_values=flag_values)
    common.define_int_list("frame", [13], "frame(s): one (13) or several (5,13,21: a grid, "
                            f"at most {MAX_GRID_FRAMES})", flag_values)
    flags.DEFINE_enum("target", "sum", TARGETS, "the frame output differentiated (see the "
                      "module doc)", flag_values=flag_values)
    flags.DEFINE_float("gamma", 1.0, "draw (|gradient| / max) ** gamma; below 1 shows faint "
                       "tails", flag_values=flag_values)
    flags.DEFINE_integer("seed", 0, "the untrained models' init seed", flag_values=flag_values)
    flags.DEFINE_string("out", "receptive_fields.png", "the PNG to write",
                        flag_values=flag_values)
    flags.DEFINE_string("profiles", None, "also draw every frame's column profile per model "
                        "to this PNG file", flag_values=flag_values)


def _check_frames(frames: list[int]) -> list[int]:
    shown = ",".join(map(str, frames))
    if not frames:
        raise common.usage_error("--frame is empty: give frame numbers, e.g. 13 or 5,13,21")
    if len(frames) > MAX_GRID_FRAMES:
        raise common.usage_error(f"--frame={shown}: at most {MAX_GRID_FRAMES} frames in one "
                                  "figure (--profiles draws every frame)")
    return frames


def main(argv: Sequence[str] | None = None) -> None:
    """The command: prints each field's columns and writes the figure(s)."""
    FLAGS, _ = common.parse_command_line(define_flags, argv, __doc__)
    frames = _check_frames(FLAGS.frame)
    with common.refusals_as_one_line(argv):
        models = ([from_checkpoint(w, FLAGS.step) for w in FLAGS.workdir] if FLAGS.workdir
                  else [untrained(n, seed=FLAGS.seed) for n in ("cnn", "rcl", "grcl")])
    sizes = {m.image_size for m in models}
    if len(sizes) > 1:
        raise SystemExit(f"FATAL the models read different image sizes {sorted(sizes)}: "
                         "give models of one input size")
    (height, width), = sizes
    if FLAGS.image:
        with common.refusals_as_one_line(argv):
            image = read_image(FLAGS.image, height, width, models[0].keep_aspect)
    else:
        image = render_word(FLAGS.text, height, width)
    n = frames_for_width(width)
    if any(not 0 <= f < n for f in frames):
        raise SystemExit(f"FATAL --frame={','.join(map(str, frames))}: the models have frames "
                         f"0..{n - 1}")

    everything = bool(FLAGS.profiles)
    fields = [effective_fields(m, image, None if everything else frames, FLAGS.target)
              for m in models]
    chosen = [f[frames] if everything else f for f in fields]
    for m, f in zip(models, chosen, strict=True):
        for k, frame in enumerate(frames):
            lo, hi = (0, width - 1) if FLAGS.target == "logit" else theoretical_columns(
                m.model_config, frame, width)
            elo, ehi = effective_columns(f[k])
            mlo, mhi = effective_columns(f[k], 0.9)
            print(f"{m.title:>26}  frame {frame:2d}: theoretical columns {lo}..{hi}, "
                  f"non-zero {elo}..{ehi}, 90% of |gradient| in {mlo}..{mhi}")
    fig = plot_fields(models, image, frames, chosen, FLAGS.target, FLAGS.gamma)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    fig.savefig(FLAGS.out, dpi=fig.dpi)
    print(f"wrote {FLAGS.out}")
    if FLAGS.profiles:
        plot_profiles(models, fields, FLAGS.target).savefig(FLAGS.profiles)
        print(f"wrote {FLAGS.profiles}")


def run() -> None:
    """The ``grcnn-visualize`` command (``grcnn-visualize``); exit status 0 once
    the figure is written."""
    process.configure()
    with common.refusals_as_one_line():
        main()


if __name__ == "__main__":
    run()
