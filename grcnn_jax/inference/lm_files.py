"""A reader's language model as files: which one it reads with (a ``--lm`` value), and its
``lm.npz`` beside a reader folder's or a served model's files, named and checksummed in
their meta.json. numpy only (the ONNX reader uses it); the model is ``text.char_lm``."""

from __future__ import annotations

import dataclasses
import os

from grcnn_jax.text.char_lm import CharLM, LmError
from grcnn_jax.workdir.writers import atomic_path, sha256_file

LM_FILE = "lm.npz"              # its name beside a reader's files
NO_LM = "none"                  # the --lm value that reads without one


def save_in_folder(lm: CharLM, folder: str) -> dict:
    """Writes ``lm`` as ``folder/lm.npz`` (whole or not at all); returns the record a
    meta.json keeps of it (``lm``: file, sha256, order, settings, what it was built from)."""
    path = os.path.join(folder, LM_FILE)
    with atomic_path(path) as tmp:
        lm.save(tmp)
    return {"file": LM_FILE, "sha256": sha256_file(path), "order": lm.order, "about": lm.about,
            "ngrams": len(lm.tables()[0]), **dataclasses.asdict(lm.settings)}


def load_in_folder(folder: str, entry: dict | None) -> CharLM | None:
    """The model a meta.json ``lm`` record names (None where there is none), checked against
    its sha256; LmError names the file when it is missing or damaged."""
    if not entry:
        return None
    path = os.path.join(folder, entry.get("file", LM_FILE))
    if not os.path.isfile(path):
        raise LmError(f"language model {path!r} is missing (meta.json names it)")
    digest = sha256_file(path)
    if digest != entry.get("sha256"):
        raise LmError(f"language model {path!r} does not match its checksum in meta.json "
                      f"(sha256 {digest}, expected {entry.get('sha256')}): the file is damaged")
    return CharLM.load(path)


def choose_lm(spec: str | None, default: CharLM | None) -> CharLM | None:
    """The model a ``--lm`` value names: None or '' -> ``default`` (the reader's own),
    'none' -> None, else the path of a model file (LmError names it if unusable)."""
    if not spec:
        return default
    if spec.strip().lower() == NO_LM:
        return None
    try:
        return CharLM.load(os.path.expanduser(spec))
    except LmError as e:
        raise LmError(f"--lm {spec!r}: {e}") from None
