"""Files out: written whole or not at all (``atomic_path``) and checksummed (``sha256_file``);
metrics: a JSON-lines file and TensorBoard event files in the workdir, and a progress bar."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from typing import Any, Iterator

from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"
# The legs behind the reader a run started from (config.init_from), read when it started.
INIT_LINEAGE_FILE = "init_lineage.json"
# The font faces the synthetic generator drew from, counted by source, found when it started.
SYNTH_FACES_FILE = "synth_faces.json"


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """``with atomic_path(out) as tmp: write(tmp)``: ``out`` appears whole when the block
    ends, or not at all (a failure or Ctrl-C inside removes ``tmp``; an older ``out`` stays)."""
    tmp = f"{path}.partial"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def sha256_file(path: str) -> str:
    """The SHA-256 of a file's bytes, hex (read in 1 MB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class MetricWriter:
    """Writes ``{"step", "time", "<prefix>/<name>": value}`` lines and TensorBoard scalars.

    Only one process of a multi-host run should write: pass ``enabled=False`` elsewhere.
    ``after_step``: the step training starts from; rows of later steps (written by a run
    that stopped before its next checkpoint, and about to be written again) are dropped, so
    that the file holds each step once.
    """

    def __init__(self, workdir: str, enabled: bool = True, after_step: int | None = None):
        self.enabled = enabled
        self._jsonl = None
        self._tb = None
        if enabled:
            if after_step is not None:
                _drop_rows_after(os.path.join(workdir, METRICS_FILE), after_step)
            self._jsonl = open(os.path.join(workdir, METRICS_FILE), "a", encoding="utf-8")
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
        self._workdir = workdir

    def write_config(self, config_json: dict) -> None:
        """``workdir/config.json``: the run's config (``ConfigDict.to_json_best_effort``)."""
        if self.enabled:
            with open(os.path.join(self._workdir, "config.json"), "w", encoding="utf-8") as f:
                f.write(json.dumps(config_json, indent=2))

    def write_init_lineage(self, legs: list[dict]) -> None:
        """``workdir/init_lineage.json``: the training legs behind the reader this run
        started from, as they were when it started (that reader may be rewritten later,
        say by this run's own weights being shipped in its place)."""
        self._write_json(INIT_LINEAGE_FILE, legs)

    def write_synth_faces(self, faces: dict[str, int]) -> None:
        """``workdir/synth_faces.json``: how many font faces the synthetic generator drew
        from, by source (``fonts.faces_by_source``), as installed when the run started."""
        self._write_json(SYNTH_FACES_FILE, faces)

    def _write_json(self, name: str, value: Any) -> None:
        if self.enabled:
            path = os.path.join(self._workdir, name)
            with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps(value, indent=1))

    def scalars(self, step: int, values: dict[str, Any], prefix: str) -> None:
        if not self.enabled:
            return
        row = {"step": step, "time": round(time.time(), 3)}
        for name, value in values.items():
            if isinstance(value, (int, float)):
                row[f"{prefix}/{name}"] = value
                self._tb.add_scalar(f"{prefix}/{name}", value, step)
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()

    def progress(self, total: int, initial: int = 0) -> tqdm:
        """Step progress bar with ETA; silent on processes that do not write."""
        return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                    disable=not self.enabled, file=sys.stderr, smoothing=0.05)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _drop_rows_after(path: str, step: int) -> None:
    """Rewrites ``path`` (atomically) without the rows of steps after ``step``."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
    except FileNotFoundError:
        return
    def kept(line: str) -> bool:
        try:
            return json.loads(line).get("step", 0) <= step
        except ValueError:                   # a line cut short by a killed process
            return False

    keep = [line for line in lines if kept(line)]
    if len(keep) == len(lines):
        return
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.writelines(line if line.endswith("\n") else line + "\n" for line in keep)


def read_metrics(workdir: str) -> list[dict]:
    """The rows of ``workdir/metrics.jsonl``, in order."""
    with open(os.path.join(workdir, METRICS_FILE), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
