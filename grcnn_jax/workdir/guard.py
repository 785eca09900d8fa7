"""Checkpoints that fail: a step checked before it is used and set aside when unreadable,
and a failed save reported in one line (see ``checkpoints`` for the layout).
"""

from __future__ import annotations

import errno
import json
import logging
import os
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from grcnn_jax.text.charset import Charset
from grcnn_jax.process import traceback_requested

log = logging.getLogger(__name__)

class CheckpointError(ValueError):
    """A checkpoint step that cannot be used, or no usable one (the message says which)."""


class CheckpointSaveError(OSError):
    """Writing a checkpoint failed (disk full, permissions); the message names the step."""


QUARANTINE_DIR = "checkpoints_unreadable"


def first_line(e: BaseException, limit: int = 240) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def step_problem(step_dir: str) -> str | None:
    """Why the checkpoint step directory cannot be used, or None if it reads.

    Reads every stored value of ``state`` once, one at a time (a few ms per MB): a missing
    or truncated file shows here as one clear reason, before orbax's parallel reader would
    fail on it with a traceback and leave its I/O callbacks running.
    """
    import tensorstore as ts

    for item in ("state", "meta"):
        if not os.path.isdir(os.path.join(step_dir, item)):
            return f"it has no {item}/"
    for name in (os.path.join("state", "_METADATA"), os.path.join("meta", "metadata")):
        path = os.path.join(step_dir, name)
        try:
            with open(path, encoding="utf-8") as f:
                json.load(f)
        except (OSError, ValueError) as e:
            return f"{name} is unreadable ({first_line(e)})"
    try:
        # A file:// address takes an absolute path (a relative one reads as a host name).
        state = os.path.join(os.path.abspath(step_dir), "state")
        store = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{state}/"}).result()
        for key in store.list().result():
            store.read(key).result()
    except Exception as e:  # noqa: BLE001 -- tensorstore raises ValueError and others
        return f"state/ is unreadable ({first_line(e)})"
    return None


def quarantine(workdir: str, step: int) -> str:
    """Moves ``checkpoints/<step>`` to ``checkpoints_unreadable/<step>`` (kept, never deleted,
    out of the way of the step's next save); returns the new path."""
    src = os.path.join(os.path.abspath(workdir), "checkpoints", str(step))
    root = os.path.join(os.path.abspath(workdir), QUARANTINE_DIR)
    os.makedirs(root, exist_ok=True)
    dst, n = os.path.join(root, str(step)), 1
    while os.path.exists(dst):
        n += 1
        dst = os.path.join(root, f"{step}.{n}")
    os.rename(src, dst)
    return dst


def set_aside(manager: ocp.CheckpointManager, workdir: str, bad: list[tuple[int, str]],
               used: int) -> None:
    """Quarantines the unreadable steps newer than ``used`` (primary process) and makes every
    process's manager forget them."""
    if not bad:
        return
    if jax.process_index() == 0:
        for step, reason in bad:
            log.warning("checkpoint step %d was unreadable (%s); resumed from step %d; the bad "
                        "step is kept at %s", step, reason, used, quarantine(workdir, step))
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("grcnn_jax quarantine")
    manager.reload()


# What the operating system says when a write fails: the reason a user can act on.
_OS_REASONS = tuple(os.strerror(e) for e in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG,
                                             errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO))


def _with_os_reason(cause: str, texts: list[str]) -> str:
    """``cause``, prefixed with the operating system's reason if any of the failure's reports
    (orbax's threads report one failure several ways, some only as a later read error)
    names one and ``cause`` does not."""
    reason = next((r for t in texts for r in _OS_REASONS if r in t), None)
    return cause if reason is None or reason in cause else f"{reason}; {cause}"


class _SaveFailures(logging.Filter):
    """Keeps the first line of each error orbax logs (a failed background save is logged from
    its threads, three times with tracebacks, rather than raised) for ``Saver`` to report in
    one line; the records themselves are dropped unless tracebacks were asked for
    (``runtime.traceback_requested``). Other records pass."""

    def __init__(self):
        super().__init__()
        self.errors: list[str] = []           # first lines, for the message
        self.texts: list[str] = []            # whole messages, searched for the OS's reason

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or f"{os.sep}orbax{os.sep}" not in record.pathname:
            return True
        exc = record.exc_info[1] if record.exc_info else None
        self.errors.append(first_line(exc) if exc else record.getMessage()[:240])
        self.texts.append(f"{record.getMessage()} {exc!r}")

        return traceback_requested()


def save(manager: ocp.CheckpointManager, step: int, state: Any, data_iterator: Any,
         config_json: dict, charset: Charset) -> None:
    """Saves (asynchronously where enabled) the state, the data position and the metadata:
    the run's config (as JSON), its charset and the step."""
    manager.save(step, force=True, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator.grain_iterator),
        meta=ocp.args.JsonSave({"config": config_json, "charset": charset.chars,
                                "step": step})))


class Saver:
    """Writes checkpoints (in the background where configured) and notices a failed one.

    ``check(step)`` is called every step: once the pending save has finished (a flag read,
    no I/O while it runs), a failure raises CheckpointSaveError naming the cause, the step
    it was for, the current step and the last good checkpoint; training stops there.
    """

    def __init__(self, manager: ocp.CheckpointManager, config_json: dict, charset: Charset):
        self.manager = manager
        self._config_json, self._charset = config_json, charset
        self.last_good = manager.latest_step()
        self._pending: int | None = None
        self._failures = _SaveFailures()
        logging.getLogger("absl").addFilter(self._failures)

    def save(self, step: int, state: Any, data_iterator: Any) -> None:
        """Starts saving ``step``; first raises if the save before it failed."""
        self.check(step, wait=True)
        try:
            save(self.manager, step, state, data_iterator, self._config_json, self._charset)
        except Exception as e:  # noqa: BLE001 -- disk full, permissions, ...: one message
            self._pending = step
            raise CheckpointSaveError(self._message(step, first_line(e), step)) from None
        self._pending = step

    def check(self, step: int, wait: bool = False) -> None:
        """Raises CheckpointSaveError if the pending save failed; cheap while it runs."""
        if self._pending is None:
            return
        if not wait and not self._failures.errors and self.manager.is_saving_in_progress():
            return
        error = None
        try:
            self.manager.wait_until_finished()
            self.manager.check_for_errors()
        except Exception as e:  # noqa: BLE001
            error = first_line(e)
        causes = self._failures.errors + ([error] if error else [])
        if causes:
            error = _with_os_reason(causes[0], self._failures.texts + causes)
        step_dir = os.path.join(str(self.manager.directory), str(self._pending))
        if error is None and not os.path.exists(os.path.join(step_dir, "_CHECKPOINT_METADATA")):
            error = f"{step_dir} was not completed"
        if error is not None:
            # orbax leaves the failed save's futures behind; asyncio would log each one at
            # exit ("exception was never retrieved"): the cause is in our message already.
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            raise CheckpointSaveError(self._message(self._pending, error, step))
        self.last_good, self._pending = self._pending, None

    def _message(self, pending: int, cause: str, step: int) -> str:
        last = (f"step {self.last_good} in {self.manager.directory}" if self.last_good is not None
                else "none")
        return (f"saving the checkpoint of step {pending} failed ({cause}); training stopped "
                f"at step {step}; the last good checkpoint is {last}")

    def close(self) -> None:
        """Waits for a save in flight, closes the manager, stops catching orbax's records."""
        try:
            self.manager.wait_until_finished()
            self.manager.close()
        except Exception:  # noqa: BLE001 -- already reported by check(), or about to be
            pass
        finally:
            logging.getLogger("absl").removeFilter(self._failures)
