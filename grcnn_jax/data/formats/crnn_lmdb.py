"""CRNN-format LMDBs: writing one from a label file or an ICDAR-03 folder (``write_lmdb``)
and reading one (``LmdbSource``). The command: ``grcnn_jax.cli.make_lmdb``.
"""

from __future__ import annotations

import os
import shutil
from typing import Iterable, Iterator

import lmdb

from grcnn_jax.data.errors import DataError

NUM_SAMPLES_KEY = b"num-samples"

# One read-only environment per path and process: LMDB forbids opening the same
# environment twice in a process, and copies of a source (pickled to workers, or
# copied by the loader) must share it. After a fork the inherited handles are
# dropped, not used.
_ENVS: dict[str, lmdb.Environment] = {}
_ENVS_PID = os.getpid()


def _open_readonly(path: str) -> lmdb.Environment:
    global _ENVS_PID
    if _ENVS_PID != os.getpid():
        _ENVS.clear()
        _ENVS_PID = os.getpid()
    env = _ENVS.get(path)
    if env is None:
        env = lmdb.open(path, readonly=True, lock=False, readahead=False, meminit=False,
                        max_readers=256, subdir=os.path.isdir(path))
        _ENVS[path] = env
    return env


def image_key(i: int) -> bytes:
    return b"image-%09d" % i


def label_key(i: int) -> bytes:
    return b"label-%09d" % i


def lexicon_key(i: int) -> bytes:
    return b"lexicon-%09d" % i


class LmdbSource:
    """Random-access reader: ``source[i]`` (0-based) is record ``i + 1`` of the LMDB.

    The environment is opened lazily in each process (read-only, no lock) and
    is not part of the object, so the source pickles to loader worker processes.
    Raises DataError at once if the path is missing, not an LMDB, or empty.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise DataError(f"LMDB dataset {self.path!r} does not exist")
        try:
            with self._txn() as txn:
                raw = txn.get(NUM_SAMPLES_KEY)
        except lmdb.Error as e:
            raise DataError(f"{self.path!r} is not a readable LMDB dataset: {e}") from None
        if raw is None:
            raise DataError(f"LMDB dataset {self.path!r} has no 'num-samples' key (not CRNN format)")
        try:
            self._len = int(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise DataError(f"LMDB dataset {self.path!r}: 'num-samples' is {raw[:40]!r}, "
                            "not ASCII digits") from None
        if self._len <= 0:
            raise DataError(f"LMDB dataset {self.path!r} is empty (num-samples = {self._len})")

    def _txn(self) -> lmdb.Transaction:
        # Opened lazily in each process; the source itself holds no handle, so pickles cleanly.
        return _open_readonly(self.path).begin(write=False, buffers=False)

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i: int) -> dict:
        if not -self._len <= i < self._len:
            raise IndexError(f"index {i} out of range for {self._len} records in {self.path!r}")
        n = int(i) % self._len + 1
        with self._txn() as txn:
            image, label = txn.get(image_key(n)), txn.get(label_key(n))
            lexicon = txn.get(lexicon_key(n))
        key = f"{self.path}:{image_key(n).decode()}"
        record = {"key": key, "image": image if image is not None else b"",
                  "text": label.decode("utf-8", errors="replace") if label is not None else ""}
        missing = [k.decode() for k, v in ((image_key(n), image), (label_key(n), label))
                   if v is None]
        if missing:                        # num-samples promises a record that is not there
            record["missing"] = f"no {' or '.join(missing)} in the LMDB"
        if lexicon is not None:
            record["lexicon"] = [w for w in lexicon.decode("utf-8").split(",") if w]
        return record

    def __repr__(self) -> str:
        return f"LmdbSource({self.path!r}, {self._len} records)"


def write_lmdb(path: str | os.PathLike, records: Iterable[dict], map_size: int = 1 << 40,
               commit_every: int = 1000) -> int:
    """Writes records (dicts with ``image`` bytes, ``text`` and optional ``lexicon``) to a new LMDB.

    Returns the number written. ``map_size`` is the address space reserved
    (sparse on Linux, so 1 TiB costs nothing). If writing fails (a bad record, Ctrl-C), what
    this call created is removed, so the same command can be run again.
    """
    path = os.fspath(path)
    if os.path.isfile(path) or (os.path.isdir(path) and os.listdir(path)):
        raise DataError(f"refusing to write into existing non-empty {path!r}")
    created = not os.path.isdir(path)
    os.makedirs(path, exist_ok=True)
    env = lmdb.open(path, map_size=map_size)
    n = 0
    txn = env.begin(write=True)
    try:
        for record in records:
            n += 1
            image = record["image"]
            if not isinstance(image, (bytes, bytearray)):
                raise DataError(f"record {record.get('key', n)!r}: write_lmdb needs encoded image "
                                f"bytes, got {type(image).__name__}")
            txn.put(image_key(n), bytes(image))
            txn.put(label_key(n), record["text"].encode("utf-8"))
            if record.get("lexicon"):
                txn.put(lexicon_key(n), ",".join(record["lexicon"]).encode("utf-8"))
            if n % commit_every == 0:
                txn.commit()
                txn = env.begin(write=True)
        txn.put(NUM_SAMPLES_KEY, str(n).encode("ascii"))
        txn.commit()
    except BaseException:
        txn.abort()
        env.close()
        if created:
            shutil.rmtree(path, ignore_errors=True)
        else:
            for name in os.listdir(path):           # data.mdb, lock.mdb: the folder was empty
                os.remove(os.path.join(path, name))
        raise
    env.close()
    return n


def read_label_file(path: str | os.PathLike) -> Iterator[dict]:
    """Yields ``{"key", "image" (bytes), "text"}`` for each ``path<TAB or space>text`` line.

    Raises DataError naming the file and line for a malformed line or a missing image.
    """
    path = os.fspath(path)
    root = os.path.dirname(os.path.abspath(path))
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot read label file {path!r}: {e}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            sep = "\t" if "\t" in line else " "
            image_path, _, text = line.partition(sep)
            if not image_path or not _:
                raise DataError(f"{path}:{lineno}: expected 'path<TAB or space>text', got {line!r}")
            full = os.path.join(root, image_path)
            try:
                with open(full, "rb") as img:
                    data = img.read()
            except OSError as e:
                raise DataError(f"{path}:{lineno}: cannot read image {full!r}: {e}") from None
            yield {"key": f"{path}:{lineno}", "image": data, "text": text}
