"""ICDAR-03-style benchmark folders, as the seed ships them.

    FOLDER/test.txt         one image path per line (may be absolute paths from another
                            machine: a path that does not exist is resolved by its file
                            name inside FOLDER)
    FOLDER/test_label.txt   the transcription of each image, same order
    FOLDER/lexicon_50.txt   optional: one comma-separated lexicon per image, same order
"""

from __future__ import annotations

import os

from grcnn_jax.data.errors import DataError

IMAGES_FILE, LABELS_FILE, LEXICON_FILE = "test.txt", "test_label.txt", "lexicon_50.txt"


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.rstrip("\r\n") for ln in f]
    except OSError as e:
        raise DataError(f"cannot read {path!r}: {e}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


class Icdar03Folder:
    """Random-access source over an ICDAR-03-style folder; records carry ``lexicon`` if present.

    Image files are read (bytes) on access; everything else is checked at once:
    missing folder or files, line counts that disagree, image paths that resolve
    nowhere -- each a DataError naming the file and line.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise DataError(f"ICDAR-03-style folder {self.root!r} does not exist")
        images_file = os.path.join(self.root, IMAGES_FILE)
        labels_file = os.path.join(self.root, LABELS_FILE)
        for f in (images_file, labels_file):
            if not os.path.isfile(f):
                raise DataError(f"{self.root!r} is not an ICDAR-03-style folder: {f!r} is missing")
        paths, labels = _read_lines(images_file), _read_lines(labels_file)
        if not paths:
            raise DataError(f"{images_file!r} lists no images")
        if len(paths) != len(labels):
            raise DataError(f"{images_file!r} has {len(paths)} lines but {labels_file!r} has "
                            f"{len(labels)}")
        self.lexicons: list[list[str]] | None = None
        lexicon_file = os.path.join(self.root, LEXICON_FILE)
        if os.path.isfile(lexicon_file):
            lex_lines = _read_lines(lexicon_file)
            if len(lex_lines) != len(paths):
                raise DataError(f"{lexicon_file!r} has {len(lex_lines)} lines but {images_file!r} "
                                f"has {len(paths)}")
            self.lexicons = [[w.strip() for w in ln.split(",") if w.strip()] for ln in lex_lines]
        by_name = None
        self.files: list[str] = []
        for lineno, p in enumerate(paths, 1):
            p = p.strip()
            candidates = [p, os.path.join(self.root, p)]
            found = next((c for c in candidates if os.path.isfile(c)), None)
            if found is None:
                if by_name is None:
                    by_name = {}
                    for d, _, names in os.walk(self.root):
                        for n in names:
                            by_name.setdefault(n, os.path.join(d, n))
                found = by_name.get(os.path.basename(p.replace("\\", "/")))
            if found is None:
                raise DataError(f"{images_file}:{lineno}: image {p!r} not found, nor a file "
                                f"named {os.path.basename(p)!r} inside {self.root!r}")
            self.files.append(found)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        path = self.files[i]
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            data = b""                               # reported by the loader as undecodable
        record = {"key": path, "image": data, "text": self.labels[i]}
        if self.lexicons is not None:
            record["lexicon"] = self.lexicons[i]
        return record

    def __repr__(self) -> str:
        return f"Icdar03Folder({self.root!r}, {len(self)} images)"
