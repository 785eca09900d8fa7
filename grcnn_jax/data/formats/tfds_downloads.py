"""Reading a benchmark's hand download for the tfds builders (``tfds_builders``): an
extracted folder or a .zip / .tar / .tar.gz / .tgz archive, the same way (``DownloadTree``),
finding the file that anchors a dataset in it (``find_file``), and small byte helpers.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from typing import Callable, Sequence

from PIL import Image

from grcnn_jax.data.errors import DataError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


# ---------------------------------------------------------------------------------------------
# Reading a download: an extracted folder or an archive, the same way.


def _clean(name: str) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _is_junk(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return "__MACOSX/" in name or base.startswith("._") or base in (".DS_Store", "Thumbs.db")


class DownloadTree:
    """A read-only file tree: a folder, a .zip, or a .tar / .tar.gz / .tgz.

    ``names`` are '/'-separated paths relative to the tree's top (archive members as
    stored, so usually under the archive's own top folder). A tar archive is read into
    memory in one pass (gzip streams cannot seek); a zip or folder is read per file.
    """

    def __init__(self, path: str):
        self.path = path
        self._zip: zipfile.ZipFile | None = None
        self._data: dict[str, bytes] | None = None
        if os.path.isdir(path):
            names = []
            for d, dirs, files in os.walk(path):
                dirs.sort()
                rel = os.path.relpath(d, path).replace(os.sep, "/")
                names += [f if rel == "." else f"{rel}/{f}" for f in sorted(files)]
        elif path.lower().endswith(".zip"):
            try:
                self._zip = zipfile.ZipFile(path)
            except (OSError, zipfile.BadZipFile) as e:
                raise DataError(f"cannot read zip archive {path!r}: {e}") from None
            names = [n for n in self._zip.namelist() if not n.endswith("/")]
        else:
            self._data = {}
            try:
                with tarfile.open(path) as tar:
                    for member in tar:
                        if member.isfile() and not _is_junk(member.name):
                            self._data[_clean(member.name)] = tar.extractfile(member).read()
            except (OSError, tarfile.TarError, EOFError) as e:
                raise DataError(f"cannot read tar archive {path!r}: {e}") from None
            names = list(self._data)
        self.names = [n for n in names if not _is_junk(n)]
        self._names = set(self.names)
        self._lower = {}
        for n in self.names:
            self._lower.setdefault(n.rsplit("/", 1)[-1].lower(), []).append(n)

    def read(self, name: str) -> bytes:
        try:
            if self._data is not None:
                return self._data[name]
            if self._zip is not None:
                return self._zip.read(name)
            with open(os.path.join(self.path, name), "rb") as f:
                return f.read()
        except (OSError, KeyError, zipfile.BadZipFile) as e:
            raise DataError(f"cannot read {name!r} in {self.path!r}: {e}") from None

    def with_basename(self, basename: str) -> list[str]:
        """Names whose last component is ``basename`` (case-insensitive)."""
        return self._lower.get(basename.lower(), [])

    def resolve(self, root: str, rel: str, where: str) -> str:
        """The name of ``rel`` (a path from an annotation file in folder ``root``).

        Tried in turn: ``root/rel``; ``rel`` itself; the only name ending in '/rel'; the only
        name with rel's file name (preferring names under ``root``). DataError names ``where``.
        """
        rel = _clean(rel.strip())
        joined = f"{root}/{rel}" if root else rel
        for candidate in (joined, rel):
            if candidate in self._names:
                return candidate
        same_base = self.with_basename(rel.rsplit("/", 1)[-1])
        for pool in ([n for n in same_base if n.lower().endswith("/" + rel.lower())
                      or n.lower() == rel.lower()],
                     [n for n in same_base if not root or n.startswith(root + "/")],
                     same_base):
            if len(pool) == 1:
                return pool[0]
            if len(pool) > 1:
                raise DataError(f"{where}: image {rel!r} is ambiguous in {self.path!r}: "
                                f"{pool[:3]}")
        raise DataError(f"{where}: image {rel!r} not found in {self.path!r} (nor a file named "
                        f"{rel.rsplit('/', 1)[-1]!r})")

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __repr__(self) -> str:
        return self.path


def parent_name(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else ""


def _archives_in(folder: str) -> list[str]:
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return []
    return [os.path.join(folder, e) for e in entries
            if e.lower().endswith(ARCHIVE_SUFFIXES) and os.path.isfile(os.path.join(folder, e))]


def find_file(folder: str, anchor: str, prefer: Sequence[str] = (),
          skip: Callable[[str], bool] = lambda name: False) -> tuple[DownloadTree, str] | None:
    """The tree holding a file named ``anchor`` (case-insensitive), and its name there.

    Looks in the extracted folder tree of ``folder`` first (but not at names that ``skip``),
    then in the archives directly inside it, those whose file names start with one of
    ``prefer`` first.
    """
    if not os.path.isdir(folder):
        return None
    tree = DownloadTree(folder)
    hits = sorted((n for n in tree.with_basename(anchor) if not skip(n)),
                  key=lambda n: (n.count("/"), n))
    if hits:
        return tree, hits[0]
    archives = _archives_in(folder)
    archives.sort(key=lambda p: not os.path.basename(p).lower().startswith(
        tuple(s.lower() for s in prefer)) if prefer else False)
    for path in archives:
        tree = DownloadTree(path)
        hits = sorted(tree.with_basename(anchor), key=lambda n: (n.count("/"), n))
        if hits:
            return tree, hits[0]
        tree.close()
    return None


def decode_text(raw: bytes) -> str:
    """UTF-8 (with or without BOM), else Latin-1: annotation files of the era are either."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def png_bytes(image: Image.Image) -> bytes:
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def lexicon_words(text: str | None) -> list[str]:
    return [w.strip() for w in (text or "").split(",") if w.strip()]
