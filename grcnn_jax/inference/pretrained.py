"""The shipped reader: weights trained by configs/reader.py, carried inside the package.

    python -m grcnn_jax.recognize word.png                  # reads with the shipped model
    python -m grcnn_jax.evaluate --data DIR                 # scores it
    python -m grcnn_jax.main --config configs/reader.py --workdir DIR --config.init_from=pretrained

The folder ``grcnn_jax/assets/reader/`` holds

    variables.npz   params and batch statistics, float32, flat names
                    ``params/<module>/.../<leaf>`` and ``batch_stats/...``
    meta.json       the training config, the charset, the step, what it measured, and
                    ``sha256`` of variables.npz (checked on every load)
    lm.npz          optional: the character language model it reads with
                    (``grcnn_jax.text.char_lm``; meta.json's ``lm`` holds its sha256)

Write it from a training checkpoint with

    grcnn-pretrained --workdir runs/reader [--step latest] \
        [--out grcnn_jax/assets/reader] [--note "IC03-dev 0.80 / 0.97"] [--lm lm.npz]
    grcnn-pretrained --checkpoint runs/reader/checkpoints/12000 [...]
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable

import ml_collections
import numpy as np
from flax import traverse_util

from grcnn_jax import assets
from grcnn_jax.data.preprocess import EDGE_CUT
from grcnn_jax.inference.lm_files import LM_FILE, load_in_folder, save_in_folder
from grcnn_jax.text.char_lm import CharLM, LmError
from grcnn_jax.text.charset import Charset
from grcnn_jax.workdir.checkpoints import InferenceCheckpoint
from grcnn_jax.workdir.writers import (INIT_LINEAGE_FILE, SYNTH_FACES_FILE, atomic_path,
                                       sha256_file)

log = logging.getLogger(__name__)

NAME = assets.PRETRAINED   # the word that selects it: --checkpoint, --config.init_from
ASSET_DIR = assets.READER_DIR
VARIABLES_FILE, META_FILE = "variables.npz", "meta.json"


class PretrainedError(ValueError):
    """The shipped model is missing or damaged (the message names the file)."""


def is_reader_folder(path: str) -> bool:
    """Whether ``path`` is a folder in the shipped model's format (it holds ``meta.json`` or
    ``variables.npz``; ``load`` says what is missing or damaged)."""
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, name))
                                       for name in (VARIABLES_FILE, META_FILE))


def load(folder: str = ASSET_DIR) -> InferenceCheckpoint:
    """The shipped model, or a reader folder in its format, as an ``InferenceCheckpoint``
    (``workdir`` is '': it has none).

    Raises PretrainedError naming the file when a file is missing, unreadable, or the
    weights do not match the recorded checksum.
    """
    shipped = os.path.abspath(folder) == ASSET_DIR
    what = "the shipped model's" if shipped else "reader folder file"
    fix = "reinstall the package" if shipped else f"write {folder!r} again"
    var_path, meta_path = os.path.join(folder, VARIABLES_FILE), os.path.join(folder, META_FILE)
    for path in (var_path, meta_path):
        if not os.path.isfile(path):
            raise PretrainedError(f"{what} {path!r} is missing; {fix}"
                                  + (" or give --workdir/--checkpoint" if shipped else ""))
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        step, charset = int(meta["step"]), Charset(meta["charset"])
        config = ml_collections.ConfigDict(meta["config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PretrainedError(f"cannot read {meta_path!r} ({type(e).__name__}: {e}); {fix}") \
            from None
    digest = sha256_file(var_path)
    if digest != meta.get("sha256"):
        raise PretrainedError(f"{var_path!r} does not match its checksum in {meta_path!r} "
                              f"(sha256 {digest}, expected {meta.get('sha256')}): the file is "
                              f"damaged; {fix}")
    with np.load(var_path) as npz:
        flat = {tuple(k.split("/")): np.asarray(npz[k]) for k in npz.files}
    tree = traverse_util.unflatten_dict(flat)
    return InferenceCheckpoint(
        path=folder, workdir="", step=step, config=config, charset=charset,
        params=tree["params"], batch_stats=tree.get("batch_stats", {}),
        lm=_load_lm(folder, meta.get("lm"), fix))


def _load_lm(folder: str, entry: dict | None, fix: str) -> CharLM | None:
    try:
        return load_in_folder(folder, entry)
    except LmError as e:
        raise PretrainedError(f"{e}; {fix}") from None


def training_leg(ckpt: InferenceCheckpoint) -> dict:
    """What the run behind ``ckpt`` did, from its config and its workdir's metrics.jsonl:
    the data (with the generator, the font faces it drew from, where the run recorded
    them), where it started, the steps, the batch size and the minutes of training
    (evaluations and restarts left out)."""
    c = ckpt.config
    leg = {"train": c.data.train, "train_weights": c.data.get("train_weights", ""),
           "augment": bool(c.data.get("augment", False)), "init_from": c.get("init_from", ""),
           "steps": ckpt.step, "batch_size": c.batch_size, "charset_size": len(ckpt.charset)}
    if c.data.get("augment_strength", 1.0) != 1.0:
        leg["augment_strength"] = c.data.augment_strength
    if c.data.get("augment_edge_cut", EDGE_CUT) != EDGE_CUT:
        leg["augment_edge_cut"] = c.data.augment_edge_cut
    if c.get("confidence_penalty", 0.0):
        leg["confidence_penalty"] = c.confidence_penalty
    if c.get("sam_rho", 0.0):
        leg["sam_rho"] = c.sam_rho
    if c.get("guide_layers", 0):
        leg["guide"] = {"layers": c.guide_layers, "weight": c.guide_weight}
    if c.data.get("synth_palettes", ""):
        leg["synth_palettes"] = c.data.synth_palettes
    if c.data.get("synth_styles", ""):
        leg["synth_styles"] = c.data.synth_styles
    faces = _synth_faces(ckpt.workdir) if ckpt.workdir else None
    if faces is not None:
        leg["synth_faces"] = faces
    if ckpt.workdir:
        from grcnn_jax.workdir.writers import read_metrics

        try:
            rows = [r for r in read_metrics(ckpt.workdir) if "train/loss" in r]
        except (OSError, ValueError):
            rows = []
        # Time between consecutive log rows, scaled to all the steps trained; a span over 5x
        # the median time per step (a stopped run and its restart, with an evaluation or a
        # compile between them) is left out.
        spans = [(b["time"] - a["time"], b["step"] - a["step"]) for a, b in zip(rows, rows[1:])
                 if b["step"] > a["step"]]
        if spans:
            median = float(np.median([t / n for t, n in spans]))
            spans = [(t, n) for t, n in spans if t / n <= 5 * median]
        covered = sum(n for _, n in spans)
        if covered:
            leg["minutes"] = round(sum(t for t, _ in spans) / 60 * ckpt.step / covered, 2)
    return leg


def _folder_meta(ckpt: InferenceCheckpoint) -> dict:
    """A reader folder's meta.json ({} for a training checkpoint, or one unreadable)."""
    if ckpt.workdir:
        return {}
    try:
        with open(os.path.join(ckpt.path, META_FILE), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def lineage(ckpt: InferenceCheckpoint) -> list[dict]:
    """The legs that made ``ckpt``: those of the reader its run started from (its
    ``init_from``), then its own. A reader folder's (``workdir`` '') are those its
    ``meta.json`` records. A run's earlier legs are those it recorded when it started
    (``INIT_LINEAGE_FILE``); a workdir from before that file is read from its
    ``init_from`` as that folder is now (wrong if it has been rewritten since)."""
    legs = _folder_meta(ckpt).get("lineage")
    if legs:
        return list(legs)
    spec = ckpt.config.get("init_from", "")
    before: list[dict] = []
    recorded = _init_lineage(ckpt.workdir) if ckpt.workdir else None
    if recorded is not None:
        before = recorded
    elif spec:
        folder = ASSET_DIR if spec == NAME else os.path.expanduser(spec)
        try:
            with open(os.path.join(folder, META_FILE), encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            meta = None
        if meta is not None:
            before = meta.get("lineage") or [{"note": meta.get("note", ""),
                                              "steps": meta.get("step"),
                                              "charset_size": len(meta.get("charset", ""))}]
    return [*before, training_leg(ckpt)]


def _init_lineage(workdir: str) -> list[dict] | None:
    """The legs ``workdir``'s run recorded for its ``init_from`` when it started; None where
    it recorded none (a run from scratch, or one from before the file)."""
    return _recorded(workdir, INIT_LINEAGE_FILE, "a lineage", "a JSON list of legs",
                     lambda v: isinstance(v, list) and all(isinstance(leg, dict) for leg in v))


def _synth_faces(workdir: str) -> dict[str, int] | None:
    """The generator's font faces by source as ``workdir``'s run recorded them when it
    started (``SYNTH_FACES_FILE``); None where it recorded none (no generator in its data,
    or a run from before the file)."""
    return _recorded(workdir, SYNTH_FACES_FILE, "a count of faces",
                     "a JSON object of source: count",
                     lambda v: isinstance(v, dict) and all(
                         isinstance(k, str) and isinstance(n, int) for k, n in v.items()))


def _recorded(workdir: str, name: str, what: str, shape: str,
              valid: Callable[[Any], bool]) -> Any:
    """The JSON file ``name`` a run wrote in ``workdir``, None where there is none; a file
    that cannot be read or is not ``valid`` is refused naming it."""
    path = os.path.join(workdir, name)
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise PretrainedError(f"{path}: not {what} ({e})") from None
    if not valid(value):
        raise PretrainedError(f"{path}: not {what} ({shape})")
    return value


def ingredient(ckpt: InferenceCheckpoint, source: str) -> dict:
    """How ``meta.json``'s ``averaged_with`` names a reader averaged into the written one
    (``grcnn_jax.inference.average``): a reader folder by its step, checksum and note, a
    training checkpoint by its leg (``training_leg``)."""
    if not ckpt.workdir:
        meta = _folder_meta(ckpt)
        return {"source": source, "steps": ckpt.step, "sha256": meta.get("sha256", ""),
                "note": meta.get("note", ""), "legs": len(meta.get("lineage") or [])}
    return {"source": source, **training_leg(ckpt)}


def export(ckpt: InferenceCheckpoint, out: str, note: str = "",
           averaged_with: list[dict] | None = None) -> dict:
    """Writes ``ckpt``'s params, batch statistics, config and charset as a shipped-model folder.

    The validation sets of the training run are not part of the model: the saved config's
    ``data.val`` is reset to 'synth' (the original is kept as ``monitored_on``). ``lineage``
    records the training legs behind the weights (``lineage``); when ``ckpt`` is a mean of
    several readers, ``averaged_with`` (``ingredient`` of each one but the first) is stored too.
    ``ckpt.lm``, if any, is written as ``lm.npz``. A reader folder written again (say, with
    another language model) keeps its ``note``, ``averaged_with`` and ``monitored_on``
    unless new ones are given. Returns the written meta dict.
    """
    legs = lineage(ckpt)             # read before ``out`` (perhaps the source) is rewritten
    source = _folder_meta(ckpt)
    note = note or source.get("note", "")
    averaged_with = averaged_with or source.get("averaged_with")
    os.makedirs(out, exist_ok=True)
    flat = traverse_util.flatten_dict({"params": ckpt.params, "batch_stats": ckpt.batch_stats},
                                      sep="/")
    var_path = os.path.join(out, VARIABLES_FILE)
    with atomic_path(var_path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **{k: np.asarray(v, np.float32) for k, v in sorted(flat.items())})
    config = ckpt.config.to_dict()
    monitored = source.get("monitored_on") or config["data"]["val"]
    config["data"]["val"] = "synth"
    meta = {"step": ckpt.step, "charset": ckpt.charset.chars, "sha256": sha256_file(var_path),
            "parameters": int(sum(np.size(v) for v in flat.values())),
            "monitored_on": monitored, "note": note, "lineage": legs, "config": config}
    if averaged_with:
        meta["averaged_with"] = list(averaged_with)
    if ckpt.lm is not None:
        meta["lm"] = save_in_folder(ckpt.lm, out)
    elif os.path.isfile(os.path.join(out, LM_FILE)):
        os.remove(os.path.join(out, LM_FILE))
    # Written last: a folder whose meta.json is missing or older is refused by ``load``.
    with atomic_path(os.path.join(out, META_FILE)) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    return meta
