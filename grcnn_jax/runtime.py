"""Process settings for the command-line entry points (training, evaluation, recognition,
benchmarks). ``configure()`` is the first thing each command's ``__main__`` block does.

Huge pages. XLA:CPU allocates its buffers afresh for every execution, and glibc hands large
allocations back to the kernel when they are freed, so a train step touches its temporaries
as new pages: ~270,000 page faults (~1 GB) per step of the paper model at batch 32 (jax
0.10.2). With ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` glibc asks for transparent huge
pages, 2 MiB instead of 4 KiB, and those faults all but vanish: the paper model's gradient
on a 2-core VM 2.1 s -> 1.85 s before the Winograd convolutions, 5-10% faster now
(grcnn_jax/benchmarks/NOTES.md, entry 7). glibc reads the variable only at start-up, so
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
    import jax

    jax.config.update("jax_compilation_cache_dir", path)
    return path


def configure() -> None:
    """Both of the above: call it first in a command's ``__main__`` block."""
    use_huge_pages()
    enable_compilation_cache()
