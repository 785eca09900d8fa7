"""The ``grcnn-tfds`` command: its flags and its run; the work is ``grcnn_jax.data.formats.tfds_builders``'s."""

from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from grcnn_jax import process
from grcnn_jax.cli import common
from grcnn_jax.data.errors import DataError
from grcnn_jax.data.formats.tfds_builders import BUILDERS, SYNTH_TEST_SEED, build


# ---------------------------------------------------------------------------------------------
# The command.


SUBCOMMANDS = ("build", "instructions")
_BUILD_FLAGS = ("manual_dir", "data_dir", "size", "seed", "height")
_SYNTH_FLAGS = ("size", "seed", "height")


def define_flags(flag_values) -> None:
    """The flags of ``grcnn-tfds`` (on ``flag_values``): all of
    them are ``build``'s; ``instructions NAME`` takes none."""
    flags.DEFINE_string("manual_dir", None, "build: the hand-downloaded files (benchmarks; "
                        "default DATA_DIR/downloads/manual)", flag_values=flag_values)
    flags.DEFINE_string("data_dir", None, "build: where to write (default: tfds's, "
                        "~/tensorflow_datasets)", flag_values=flag_values)
    flags.DEFINE_integer("size", None, "build grcnn_synth: number of examples", lower_bound=1,
                         flag_values=flag_values)
    flags.DEFINE_integer("seed", SYNTH_TEST_SEED, "build grcnn_synth: seed",
                         flag_values=flag_values)
    flags.DEFINE_integer("height", 32, "build grcnn_synth: image height, pixels", lower_bound=8,
                         flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> int:
    """``build NAME [flags]`` or ``instructions NAME``; returns the exit status (2: the
    download or the name is bad)."""
    usage = (__doc__ + "\nCommands: build NAME (NAME: one of "
             f"{', '.join(sorted(BUILDERS))}; grcnn_synth/10k, /100k: a config), "
             "instructions NAME (a benchmark's download instructions).")
    FLAGS, rest = common.parse_command_line(define_flags, argv, usage, positional=True)
    if not rest or rest[0] not in SUBCOMMANDS:
        got = f"got {rest[0]!r}" if rest else "got none"
        raise common.usage_error(f"give a command, 'build NAME' or 'instructions NAME' ({got})")
    command = rest[0]
    if len(rest) != 2:
        got = f"{' '.join(map(repr, rest[1:]))}" if len(rest) > 2 else "none"
        raise common.usage_error(f"{command} takes one dataset NAME (got {got})")
    name = rest[1]
    if command == "instructions":
        given = [f"--{f}" for f in _BUILD_FLAGS if FLAGS[f].present]
        if given:
            raise common.usage_error(f"{', '.join(given)}: for 'build' only, 'instructions' "
                                      "takes none")
        benchmarks = sorted(n for n in BUILDERS if n != "grcnn_synth")
        if name not in benchmarks:
            raise common.usage_error(f"instructions {name!r}: there are instructions for "
                               f"{', '.join(benchmarks)}")
        print(BUILDERS[name].MANUAL_DOWNLOAD_INSTRUCTIONS)
        return 0
    synth = {}
    if name.partition("/")[0] == "grcnn_synth":
        synth = {"size": FLAGS.size, "seed": FLAGS.seed, "height": FLAGS.height}
    else:
        given = [f"--{f}" for f in _SYNTH_FLAGS if FLAGS[f].present]
        if given:
            raise common.usage_error(f"{', '.join(given)}: for grcnn_synth only, not {name!r}")
    try:
        builder = build(name, FLAGS.data_dir, FLAGS.manual_dir, **synth)
    except DataError as e:
        if FLAGS.verbosity >= 1 or process.traceback_requested(argv):
            raise
        print(process.fatal_line(e), file=sys.stderr)
        return 2
    name = builder.name + (f"/{builder.builder_config.name}" if builder.builder_config else "")
    print(f"\nprepared {name} {builder.version} in {builder.data_dir}")
    for split, info in sorted(builder.info.splits.items()):
        print(f"  {split}: {info.num_examples} examples   (config spec: tfds:{name}/{split})")
    return 0


def run() -> None:
    """The ``grcnn-tfds`` command (``python -m grcnn_jax.cli.tfds``): refusals exit
    with one FATAL line."""
    # Run the module's own copy, not __main__'s, so that what it defines is importable by name.
    from grcnn_jax.cli import tfds

    with common.refusals_as_one_line():
        raise SystemExit(tfds.main())


if __name__ == "__main__":
    run()
