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
