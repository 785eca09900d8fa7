"""The command layer's shared part: absl flags in one style, and refusals as one line.

Every command (``grcnn_jax.cli.*``) starts through ``run_command`` (process settings, its
flags, ``app.run``) or parses into a fresh ``FlagValues`` with ``parse_command_line``; a
refusal (``REFUSALS``: bad config, data, file, checkpoint, flag) ends it with one
``FATAL <Error>: <what>`` line, Ctrl-C with ``interrupted (Ctrl-C)`` and status 130.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Sequence

from grcnn_jax.process import (INTERRUPTED_STATUS, Interrupted, configure, fatal_line,
                               traceback_requested)
from grcnn_jax.workdir.lock import WorkdirLockedError

# What a command refuses with one line: bad config, data, charset, checkpoint or workdir
# (ValueError and its subclasses), files and disks (OSError), a missing key, a locked
# workdir, a non-finite loss. Anything else is a bug and keeps its traceback.
REFUSALS = (ValueError, OSError, KeyError, FloatingPointError)


class refusals_as_one_line:
    """``with refusals_as_one_line(): ...`` -- a REFUSALS error (and WorkdirLockedError) exits
    with ``fatal_line`` instead of a traceback, unless ``traceback_requested(argv)``; Ctrl-C
    (KeyboardInterrupt, or ``Interrupted`` with its message) exits with one line and status
    130."""

    def __init__(self, argv: Sequence[str] | None = None):
        self.argv = None if argv is None else list(argv)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        interrupted = isinstance(error, (KeyboardInterrupt, Interrupted))
        if error is None or not (interrupted or isinstance(error, (*REFUSALS,
                                                                    WorkdirLockedError))):
            return False
        if traceback_requested(self.argv):
            return False
        sys.stderr.flush()
        if isinstance(error, Interrupted):           # stopped cleanly, what it kept said
            print(error, file=sys.stderr, flush=True)
            raise SystemExit(INTERRUPTED_STATUS) from None
        if interrupted:
            # Stopped mid-work: XLA's threads may still be compiling or running, and tearing
            # the interpreter down under them can crash it; outputs are written atomically
            # (nothing half-written is left), so leave at once.
            print("interrupted (Ctrl-C)", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(INTERRUPTED_STATUS)
        raise SystemExit(fatal_line(error)) from None


def run_command(main, define_flags=None, flags_parser=None, huge_pages: bool = True) -> None:
    """An absl command's whole start: ``configure(huge_pages)``, its flags, ``app.run(main)``;
    what each entry point (``python -m grcnn_jax.X`` and the installed ``grcnn-X``) calls."""
    from absl import app

    configure(huge_pages)
    if define_flags is not None:
        define_flags()
    with refusals_as_one_line():            # Ctrl-C anywhere, imports and set-up included
        if flags_parser is None:
            app.run(main)
        else:
            app.run(main, flags_parser=flags_parser)


# ----------------------------------------------------------------------------- absl flags
def define_checkpoint_flags() -> None:
    """absl flags --workdir, --checkpoint, --step: which checkpoint a command reads
    (``resolve_step_dir`` turns them into a step directory)."""
    from absl import flags

    flags.DEFINE_string("workdir", None, "Training workdir (holds checkpoints/ and metrics.jsonl). "
                        "Without --workdir and --checkpoint: the model shipped in the package.")
    flags.DEFINE_string("checkpoint", None, "A checkpoint step directory "
                        "WORKDIR/checkpoints/<step> (instead of --workdir and --step), a "
                        "training workdir, a reader folder (meta.json + variables.npz, as "
                        "grcnn_jax.inference.pretrained writes it), or 'pretrained' for the shipped "
                        "model.")
    flags.DEFINE_string("step", "latest", "'latest', 'best' (highest val/word_accuracy in "
                        "metrics.jsonl among the saved steps) or a step number.")
    flags.DEFINE_string("lm", None, "The character language model to read with: a file "
                        "grcnn-lm wrote, or 'none'. Default: the reader's own (the shipped "
                        "reader has one; training checkpoints have none).")


def define_view_flags(flag_values=None) -> None:
    """absl flags --turn, --frame, --unbend: which other views of an image the readers
    (``evaluate``, ``recognize``, ``benchmarks.peer_accuracy``) read
    (``grcnn_jax.data.preprocess``), on ``flag_values`` (default: absl's global flags)."""
    from absl import flags

    # listed in --help with the command that defines them
    where = {"module_name": _calling_module()}
    if flag_values is not None:
        where["flag_values"] = flag_values

    flags.DEFINE_bool("turn", True, "Also read images at least 1.25 times as tall as wide "
                      "turned a quarter each way, keeping the reading the model is surest of "
                      "(--noturn: every image as given).", **where)
    flags.DEFINE_bool("frame", True, "Also read images whose reading is unsure (p < 0.5) "
                      "framed tighter and looser, keeping the reading ranked first "
                      "(--noframe: every image once).", **where)
    flags.DEFINE_bool("unbend", True, "With --frame, also read images still unsure after "
                      "framing unbent along arcs (curved words), keeping an unbent reading "
                      "only where it ranks clearly first (--nounbend: framed only).", **where)


# The small commands (benchmarks, data tools) parse their flags into a FlagValues of their
# own rather than absl's global FLAGS: their flag names overlap (--workdir, --out, --json),
# and the tests call several of them in one process as ``main([...])``.
def _int_list_parser():
    """absl's comma-separated list parser, giving integers (absl has lists of strings only)."""
    from absl import flags

    class IntListParser(flags.ListParser):
        def parse(self, argument):
            items = super().parse(argument)
            try:
                return [int(item) for item in items]
            except ValueError:
                raise ValueError(f"expected comma-separated integers, got {argument!r}") \
                    from None

    return IntListParser()


def _calling_module() -> str:
    """The module that called the caller, named as absl names the module a flag belongs to
    (``__main__`` is the script's path), so that --help lists the flag with its command's."""
    name = sys._getframe(2).f_globals.get("__name__", "")
    return sys.argv[0] if name == "__main__" and sys.argv else name


def define_int_list(name: str, default: list[int], help: str, flag_values: Any,
                    lower_bound: int | None = None) -> None:
    """A comma-separated integer list flag (``--batches=32,64`` -> [32, 64]) on ``flag_values``;
    with ``lower_bound``, one or more integers, each at least that."""
    from absl import flags

    flags.DEFINE(_int_list_parser(), name, ",".join(map(str, default)), help, flag_values,
                 serializer=flags.CsvListSerializer(","), module_name=_calling_module())
    if lower_bound is not None:
        flags.register_validator(name, lambda v: bool(v) and min(v) >= lower_bound,
                                 f"--{name} takes one or more integers >= {lower_bound}",
                                 flag_values=flag_values)


def define_choice_list(name: str, default: list[str], choices: Callable[[], Sequence[str]],
                       help: str, flag_values: Any) -> None:
    """A comma-separated list flag on ``flag_values`` of one or more of ``choices()`` (read when
    the flag is parsed, so that a table the command extends later counts)."""
    from absl import flags

    flags.DEFINE_list(name, default, f"{help}, comma-separated: {', '.join(choices())}",
                      flag_values=flag_values, module_name=_calling_module())
    flags.register_validator(
        name, lambda items: bool(items) and all(i in choices() for i in items),
        f"--{name} takes a comma-separated list of {', '.join(choices())}",
        flag_values=flag_values)


HELP_ARGS = ("-h", "--help", "-help", "--helpshort", "--helpfull", "-?")


def usage_error(message: str) -> SystemExit:
    """A wrong command line, as one line: ``raise runtime.usage_error("--frame is empty")``."""
    message = "; ".join(part.strip() for part in message.splitlines() if part.strip())
    return SystemExit(f"FATAL Flags parsing error: {message}; pass --help to see the flags")


@contextlib.contextmanager
def overrides_refused_in_one_line(argv: Sequence[str]):
    """Within it, a ``--config.FIELD`` override in ``argv`` that names no field of the config
    (ml_collections raises AttributeError or KeyError for it) exits with one FATAL line;
    without overrides those errors pass through."""
    overrides = [a.split("=")[0] for a in argv if a.startswith("--config.")]
    try:
        yield
    except (AttributeError, KeyError) as e:
        if not overrides:
            raise
        message = str(e).replace("\\'", "").replace("\\n", " ").replace("\n", " ").strip("'\" ")
        raise SystemExit(f"FATAL a --config override names no config field ({message}); "
                         f"overrides given: {' '.join(overrides)}") from None


def parse_command_line(define_flags: Callable[[Any], None], argv: Sequence[str] | None = None,
                       usage: str = "", positional: bool = False) -> tuple[Any, list[str]]:
    """Parses ``argv`` (default ``sys.argv[1:]``) with absl into a fresh ``FlagValues`` on which
    ``define_flags(flag_values)`` defined the command's flags; returns ``(flag_values,
    positional arguments)`` (refused unless ``positional``). Every command also takes ``-v N``
    (``--verbosity``; >= 1: full tracebacks, see ``traceback_requested``) and ``--flagfile``.
    ``--help`` prints ``usage`` and the flags and exits 0; a bad command line exits with one
    ``usage_error`` line."""
    from absl import flags

    args = list(sys.argv[1:] if argv is None else argv)
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "command"
    flag_values = flags.FlagValues()
    with overrides_refused_in_one_line(args):   # a config flag's default is parsed here
        define_flags(flag_values)
    flags.DEFINE_integer("verbosity", 0, "1 or more: refusals keep their traceback.",
                         short_name="v", flag_values=flag_values)
    if any(a in HELP_ARGS for a in args):
        print(usage.strip() + "\n\nflags:\n" + flag_values.get_help(include_special_flags=False))
        raise SystemExit(0)
    try:
        with overrides_refused_in_one_line(args):
            rest = flag_values([prog, *args])[1:]
    except flags.Error as e:
        raise usage_error(str(e)) from None
    if rest and not positional:
        lists = [f.name for m in flag_values.flags_by_module_dict().values() for f in m
                 if isinstance(f.parser, flags.ListParser)]
        hint = f" (lists are comma-separated: --{lists[0]}=a,b)" if lists else ""
        raise usage_error(f"unexpected arguments {' '.join(rest)}{hint}")
    return flag_values, rest
