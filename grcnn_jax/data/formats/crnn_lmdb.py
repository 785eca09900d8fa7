"""LMDB datasets in the CRNN format (the seed's and clovaai's): read at random, write, create.

Keys (1-based ``%09d`` indices), values as bytes::

    num-samples       ASCII digits, the number of records N
    image-000000001   encoded image (any format Pillow decodes)
    label-000000001   the transcription, UTF-8
    lexicon-000000001 optional: the image's lexicon, comma-separated words

Create one from a label file or an ICDAR-03-style folder::

    python -m grcnn_jax.data.formats.crnn_lmdb --labels data/train.txt OUT_LMDB
    python -m grcnn_jax.data.formats.crnn_lmdb --icdar03 data/IC03 OUT_LMDB

A label file has one ``path<TAB or space>text`` per line, paths relative to the
file (a tab separates first if present, so texts may hold spaces then).
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Iterable, Iterator, Sequence

import lmdb
from absl import flags

from grcnn_jax import process as runtime
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


def define_flags(flag_values) -> None:
    """The flags of ``python -m grcnn_jax.data.formats.crnn_lmdb`` (on ``flag_values``); the LMDB to
    create is the one positional argument."""
    flags.DEFINE_string("labels", None, "label file: 'path<TAB or space>text' per line",
                        flag_values=flag_values)
    flags.DEFINE_string("icdar03", None, "ICDAR-03-style folder (test.txt, test_label.txt, "
                        "optional lexicon_50.txt)", flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> int:
    """Creates a CRNN-format LMDB; returns the exit status (2: the input is bad)."""
    FLAGS, rest = runtime.parse_command_line(define_flags, argv, __doc__, positional=True)
    given = [f"--{name}" for name in ("labels", "icdar03") if FLAGS[name].value is not None]
    if len(given) != 1:
        raise runtime.usage_error("give one of --labels FILE or --icdar03 FOLDER, got "
                                  f"{' and '.join(given) if given else 'neither'}")
    if len(rest) != 1:
        got = f"{len(rest)}: {' '.join(rest)!r}" if rest else "none"
        raise runtime.usage_error(f"give one OUTPUT path, the LMDB directory to create (got {got})")
    output, = rest

    from tqdm import tqdm

    try:
        if FLAGS.labels is not None:
            with open(FLAGS.labels, encoding="utf-8", errors="replace") as f:
                total = sum(1 for line in f if line.strip())
            records = read_label_file(FLAGS.labels)
        else:
            from grcnn_jax.data.formats.folders import Icdar03Folder

            folder = Icdar03Folder(FLAGS.icdar03)
            total = len(folder)
            records = (folder[i] for i in range(total))
        n = write_lmdb(output, tqdm(records, total=total, unit="img", desc="writing"))
    except DataError as e:
        if FLAGS.verbosity >= 1 or runtime.traceback_requested(argv):
            raise
        print(runtime.fatal_line(e), file=sys.stderr)
        return 2
    print(f"wrote {n} records to {output}")
    return 0


def run() -> None:
    """The ``grcnn-make-lmdb`` command (``python -m grcnn_jax.data.formats.crnn_lmdb``): refusals exit
    with one FATAL line."""
    with runtime.refusals_as_one_line():
        raise SystemExit(main())


if __name__ == "__main__":
    run()
