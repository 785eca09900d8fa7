"""Loading a reader from wherever it is: the shipped one, a reader folder, a training
workdir (its latest, best or a given step) or a checkpoint step directory.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from grcnn_jax.inference import pretrained
from grcnn_jax.inference.exported import is_exported_folder
from grcnn_jax.inference.lm_files import choose_lm
from grcnn_jax.workdir.checkpoints import (InferenceCheckpoint, read_for_inference,
                                           resolve_step_dir, saved_steps)
from grcnn_jax.workdir.guard import CheckpointError, first_line

log = logging.getLogger(__name__)


def load_for_inference(workdir: str | None = None, checkpoint: str | None = None,
                       step: str | int = "latest") -> InferenceCheckpoint:
    """Restores params, batch stats, config and charset: the one loader of readers.

    ``checkpoint`` may be 'pretrained' (the model shipped inside the package; also with
    neither argument), a reader folder in the shipped format (``meta.json`` and
    ``variables.npz``, as ``grcnn-pretrained --out DIR`` writes it; its
    checksum is checked), a training workdir (its ``step``) or a checkpoint step directory
    (see ``resolve_step_dir``). A folder written by ``grcnn_jax.export`` is refused naming
    what reads it.
    """
    if checkpoint == pretrained.NAME or (not workdir and not checkpoint):
        return pretrained.load()
    if checkpoint:
        path = os.path.expanduser(checkpoint)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{checkpoint!r} does not exist (give 'pretrained', a "
                                    "reader folder, a training workdir or a checkpoint step "
                                    "directory)")
        if pretrained.is_reader_folder(path):
            return pretrained.load(path)
        if is_exported_folder(path):
            raise CheckpointError(f"{checkpoint!r} is an exported program (model.jax), not "
                                  "weights: read it with `recognize --exported`")
        if os.path.isdir(os.path.join(path, "checkpoints")):        # a workdir
            workdir, checkpoint = path, None
    path = resolve_step_dir(workdir, checkpoint, step)
    latest = not checkpoint and str(step).strip().lower() == "latest"
    candidates = [path]
    if latest:                               # older steps, should the newest be unreadable
        number = int(os.path.basename(path))
        candidates += [os.path.join(os.path.dirname(path), str(s))
                       for s in reversed(saved_steps(workdir)) if s < number]
    reasons = []
    for candidate in candidates:
        try:
            ckpt = read_for_inference(candidate)
        except Exception as e:  # noqa: BLE001 -- any failure to read makes the step unusable
            reasons.append(f"{candidate}: {first_line(e)}")
            if not latest:
                raise CheckpointError(f"checkpoint {candidate!r} is unreadable "
                                      f"({first_line(e)})") from None
            log.warning("checkpoint %s is unreadable (%s); using the one before",
                        candidate, first_line(e))
            continue
        if reasons:
            log.warning("--step latest: using step %d; newer unreadable steps were left in "
                        "place", ckpt.step)
        return ckpt
    raise CheckpointError("no readable checkpoint: " + "; ".join(reasons))


def with_lm(ckpt: InferenceCheckpoint, spec: str | None) -> InferenceCheckpoint:
    """``ckpt`` reading with the language model ``spec`` names: None or '' keeps its own (a
    reader folder's ``lm.npz``, if it has one), 'none' reads without one, anything else is
    the path of a model ``grcnn-lm`` wrote (``char_lm.LmError`` names it if unusable)."""
    return dataclasses.replace(ckpt, lm=choose_lm(spec, ckpt.lm))
