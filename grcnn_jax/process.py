"""Process settings for the command-line entry points (training, evaluation, recognition,
benchmarks). ``configure()`` is the first thing each command's ``__main__`` block does.

Huge pages. XLA:CPU allocates its buffers afresh for every execution, and glibc hands large
allocations back to the kernel when they are freed, so a train step touches its temporaries
as new pages: ~270,000 page faults (~1 GB) per step of the paper model at batch 32 (jax
0.10.2). With ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` glibc asks for transparent huge
pages, 2 MiB instead of 4 KiB, and those faults all but vanish: the paper model's gradient
on a 2-core VM 2.1 s -> 1.85 s before the Winograd convolutions, 5-10% faster now
(benchmarks/NOTES.md, entry 7). glibc reads the variable only at start-up, so
where it is missing and would help (Linux, glibc >= 2.35, transparent huge pages in
'madvise' mode) the command starts itself again with it set.
``GRCNN_HUGE_PAGES=0`` turns this off.

Compilation cache. The paper model's train step takes tens of seconds to compile on a small
CPU; jax's persistent compilation cache keeps the compiled programs in
``$XDG_CACHE_HOME/grcnn_jax/xla`` (~/.cache/...), so that resuming, evaluating or running
the same config again starts at once. ``JAX_COMPILATION_CACHE_DIR`` picks another folder,
``GRCNN_COMPILATION_CACHE=0`` turns it off.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable, Sequence

log = logging.getLogger(__name__)

HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_version() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, OSError, ValueError):
        return None


def _thp_mode() -> str | None:
    """'always', 'madvise' or 'never' (the bracketed word of the kernel's setting)."""
    try:
        with open(THP_MODE_FILE) as f:
            text = f.read()
    except OSError:
        return None
    return text[text.find("[") + 1:text.find("]")] if "[" in text else None


def huge_pages_would_help(environ: dict | None = None) -> bool:
    """Whether starting again with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` changes anything."""
    environ = os.environ if environ is None else environ
    if environ.get("GRCNN_HUGE_PAGES", "1") == "0":
        return False
    if "glibc.malloc.hugetlb" in environ.get("GLIBC_TUNABLES", ""):
        return False
    version = _glibc_version()
    return (sys.platform.startswith("linux") and version is not None and version >= (2, 35)
            and _thp_mode() == "madvise")


def use_huge_pages() -> None:
    """Restarts this process with glibc's malloc on transparent huge pages, if that helps."""
    if not huge_pages_would_help():
        return
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    os.environ["GLIBC_TUNABLES"] = f"{tunables}:{HUGE_PAGES_TUNABLE}" if tunables \
        else HUGE_PAGES_TUNABLE
    sys.stdout.flush()
    sys.stderr.flush()
    # orig_argv: the interpreter's own command line ('python -m grcnn_jax.main ...').
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def enable_compilation_cache() -> str | None:
    """Turns on jax's persistent compilation cache; returns its folder (None: off)."""
    if os.environ.get("GRCNN_COMPILATION_CACHE", "1") == "0":
        return None
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "grcnn_jax", "xla")
    if sys.modules.get("jax") is not None:
        import jax

        jax.config.update("jax_compilation_cache_dir", path)
    else:
        # jax reads it when it is first imported: a command that never needs jax (reading a
        # word with onnxruntime) does not pay the ~2.7 s of importing it here.
        os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    return path


def _closed_loop_callback(hook_args) -> bool:
    """The error of a tensorstore I/O callback that completes after orbax closed the event
    loop awaiting it: it follows a checkpoint write or read that has failed already (and is
    reported), once per pending operation, up to hundreds of 5-line tracebacks. pybind11
    hands it to ``sys.unraisablehook`` with no object and no Python caller."""
    tb = hook_args.exc_traceback
    return (hook_args.exc_type is RuntimeError and str(hook_args.exc_value) ==
            "Event loop is closed" and hook_args.object is None and tb is not None
            and tb.tb_frame.f_code.co_name == "call_soon_threadsafe")


def quiet_closed_loop_callbacks() -> None:
    """Leaves ``_closed_loop_callback`` errors out of ``sys.unraisablehook``; all else passes."""
    previous = sys.unraisablehook
    if getattr(previous, "grcnn_quiet", False):
        return

    def hook(hook_args):
        if not _closed_loop_callback(hook_args):
            previous(hook_args)

    hook.grcnn_quiet = True
    sys.unraisablehook = hook


STEP_PRESET = "CPU_OPT_PRESET_FAST_COMPILE"


def step_compiler_options() -> dict[str, str] | None:
    """XLA options for compiling the train step: on the CPU, XLA's ``FAST_COMPILE``
    optimization preset; None on other backends, or where ``XLA_FLAGS`` names a preset itself.

    Despite its name it gives the faster step here. With the default preset XLA:CPU fuses
    each BatchNorm backward into all 16 transform fusions of the Winograd backward that
    follows it, and so computes it 16 times; this preset fuses less greedily and computes it
    once. Measured, both compiled in one process, alternating rounds: the paper config's step
    626 -> 594 ms at batch 32, 1,331 -> 1,302 ms at 64, the small config's 551 -> 527 ms;
    compile time and inference the same (benchmarks/NOTES.md, 24).
    """
    import jax

    if jax.default_backend() != "cpu" or "xla_cpu_opt_preset" in os.environ.get("XLA_FLAGS", ""):
        return None
    return {"xla_cpu_opt_preset": STEP_PRESET}


def release_free_memory() -> None:
    """Hands the C heap's free memory back to the kernel (glibc's ``malloc_trim``; elsewhere
    nothing). XLA compiles with ~1 GB of scratch memory for the paper model's train step on
    the CPU, and glibc keeps what is freed for reuse: without this, a training process holds
    it for its whole run (RSS 2.2 GB instead of 1.2 GB at batch 32, benchmarks/NOTES.md)."""
    import ctypes

    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):         # not glibc
        pass


def log_our_progress() -> None:
    """Our progress and warnings at INFO; orbax and jax are chatty at INFO, so only their
    warnings (absl's verbosity: call it after the flags are parsed)."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("grcnn_jax").setLevel(logging.INFO)


def configure(huge_pages: bool = True) -> None:
    """All of the above: call it first in a command's ``__main__`` block. ``huge_pages=False``
    for commands whose work is usually shorter than the restart (~3-4 s): reading a word."""
    if huge_pages:
        use_huge_pages()
    enable_compilation_cache()
    quiet_closed_loop_callbacks()


# What a command refuses with one line: bad config, data, charset, checkpoint or workdir
# (ValueError and its subclasses), files and disks (OSError), a missing key, a locked
# workdir, a non-finite loss. Anything else is a bug and keeps its traceback.
REFUSALS = (ValueError, OSError, KeyError, FloatingPointError)


def traceback_requested(argv: list[str] | None = None) -> bool:
    """True when the command line asked for tracebacks: absl's ``-v 1`` (``--verbosity``) or
    more, or ``GRCNN_TRACEBACK=1`` in the environment.

    Read from the command line itself: the commands lower absl's verbosity to WARNING after
    parsing (jax and orbax are chatty at INFO), so the flag's current value is not the user's.
    """
    if os.environ.get("GRCNN_TRACEBACK", "0") not in ("", "0"):
        return True
    args = list(sys.argv[1:] if argv is None else argv)
    for i, arg in enumerate(args):
        for name in ("-v", "--v", "-verbosity", "--verbosity"):
            if arg == name and i + 1 < len(args):
                value = args[i + 1]
            elif arg.startswith(name + "="):
                value = arg.split("=", 1)[1]
            else:
                continue
            try:
                return int(value) >= 1
            except ValueError:
                return False
    return False


def fatal_line(error: BaseException) -> str:
    """``FATAL <type>: <message>`` on one line (newlines in the message become '; ')."""
    message = "; ".join(part.strip() for part in str(error).splitlines() if part.strip())
    return f"FATAL {type(error).__name__}: {message}"


INTERRUPTED_STATUS = 130          # the shell's status for a command stopped by SIGINT


class Interrupted(Exception):
    """Ctrl-C stopped a command after it kept what it could; the message says what and where
    (the command exits with ``INTERRUPTED_STATUS``)."""


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
        from grcnn_jax.workdir.lock import WorkdirLockedError

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
    define_flags(flag_values)
    flags.DEFINE_integer("verbosity", 0, "1 or more: refusals keep their traceback.",
                         short_name="v", flag_values=flag_values)
    if any(a in HELP_ARGS for a in args):
        print(usage.strip() + "\n\nflags:\n" + flag_values.get_help(include_special_flags=False))
        raise SystemExit(0)
    try:
        rest = flag_values([prog, *args])[1:]
    except flags.Error as e:
        raise usage_error(str(e)) from None
    if rest and not positional:
        lists = [f.name for m in flag_values.flags_by_module_dict().values() for f in m
                 if isinstance(f.parser, flags.ListParser)]
        hint = f" (lists are comma-separated: --{lists[0]}=a,b)" if lists else ""
        raise usage_error(f"unexpected arguments {' '.join(rest)}{hint}")
    return flag_values, rest
