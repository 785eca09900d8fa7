"""One training run per workdir: an exclusive lock held for the run's lifetime.

The lock is ``WORKDIR/.lock``, held with ``fcntl.flock`` and holding the owner's host,
pid and start time. The kernel releases a flock when its process dies however it dies
(SIGKILL included), so a lock file left by a killed run is not held: the next run takes
it over and says whose it was. A second run while the first is alive is refused at once,
naming the holder. flock needs a local or lock-aware file system (NFSv4, Lustre with
flock enabled); on one without it the lock cannot protect and says so.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class WorkdirLockedError(RuntimeError):
    """Another live process holds the workdir's lock (the message names it)."""


def _describe(info: dict) -> str:
    if not info:
        return "an unknown process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("time", 0)))
    return f"pid {info.get('pid')} on host {info.get('host')!r} (started {started})"


class WorkdirLock:
    """``with WorkdirLock(workdir):`` -- or ``acquire()`` / ``release()``.

    Raises WorkdirLockedError from ``acquire`` when a live process holds it.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self._fd: int | None = None

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                return json.loads(f.read() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "WorkdirLock":
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkdirLockedError(
                    f"workdir {os.path.dirname(self.path)!r} is in use by another training run: "
                    f"{_describe(self._read())}; wait for it, stop it, or use another "
                    "--workdir") from None
            raise WorkdirLockedError(f"cannot lock {self.path!r} ({e.strerror}); this file "
                                     "system may not support flock") from None
        previous = self._read()
        if previous:
            log.info("workdir lock %s was left by %s, which has ended; taking it over",
                     self.path, _describe(previous))
        me = {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Unlocks and empties the lock file (an empty file: no run was interrupted)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        finally:
            os.close(self._fd)                 # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
