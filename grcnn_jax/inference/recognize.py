"""Reading word images with any reader: files and folders in, predictions out; which
model folder a command's flags name (``choose_folder``). The command: ``grcnn_jax.cli.recognize``.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple, Sequence

import numpy as np

from grcnn_jax import assets


if TYPE_CHECKING:
    from grcnn_jax.workdir.checkpoints import InferenceCheckpoint

log = logging.getLogger(__name__)

# Up to this many images the shipped reader's ONNX form reads them sooner than jax: jax
# starts ~2.5 s later and then reads ~1.7x faster (3.3 vs 5.5 ms an image on 2 cores,
# docs/speed.md), so it catches up after ~1,100 images.
ONNX_UP_TO = 1000

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                    ".ppm", ".pbm", ".pnm")


def expand_paths(paths: Iterable[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Files given, and the image files (by extension) inside folders given, recursively, in
    sorted order. Returns (files, problems) with problems as (path, reason)."""
    files, problems = [], []
    for p in paths:
        if os.path.isdir(p):
            found = []
            for root, dirs, names in os.walk(p):
                dirs.sort()
                found += [os.path.join(root, n) for n in sorted(names)
                          if n.lower().endswith(IMAGE_EXTENSIONS)]
            if not found:
                problems.append((p, "folder holds no image files"))
            files += found
        elif os.path.exists(p):
            files.append(p)
        else:
            problems.append((p, "no such file or folder"))
    return files, problems


def split_words(text: str) -> list[str]:
    """Words separated by commas and/or newlines, stripped, blank entries dropped."""
    return [w.strip() for line in text.splitlines() for w in line.split(",") if w.strip()]


def read_lexicon(path: str) -> list[str]:
    """Words from a file, separated by commas and/or newlines (blank entries dropped)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise FileNotFoundError(f"cannot read --lexicon {path!r}: {e}") from None
    words = split_words(text)
    if not words:
        raise ValueError(f"--lexicon {path!r} holds no words")
    return words


def load_images(files: Sequence[str], height: int, width: int, keep_aspect: bool,
                grayscale: str = "principal"
                ) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """Decodes and resizes like the loader: (uint8 [N, height, width], the files read,
    problems (path, reason) for the rest)."""
    loaded = load_views(files, height, width, keep_aspect, grayscale, turn=False)
    return loaded.images, loaded.files, loaded.problems


class LoadedViews(NamedTuple):
    """What ``load_views`` read: images uint8 [N, H, W]; per image its turned views (uint8
    [2, H, W] or None; the list None where none were made) and its crop to unbend
    (``preprocess.source_image``; the list None where none were kept); the files read;
    problems (path, reason) for the rest."""

    images: np.ndarray
    turned: list[np.ndarray | None] | None
    files: list[str]
    problems: list[tuple[str, str]]
    sources: list[np.ndarray | None] | None = None


def load_views(files: Sequence[str], height: int, width: int, keep_aspect: bool,
               grayscale: str = "principal", turn: bool = True, unbend: bool = False
               ) -> LoadedViews:
    """``load_images`` with each image's ``preprocess.turned_views`` (uint8 [2, height,
    width], None for a crop that is not tall) where ``turn``, and its crop to unbend
    (``preprocess.source_image``) where ``unbend``."""
    from PIL import UnidentifiedImageError

    from grcnn_jax.data.preprocess import prepare_image, prepare_views

    images, turned, sources, good, problems = [], [], [], [], []
    for path in files:
        try:
            with open(path, "rb") as f:
                data = f.read()
            if turn or unbend:
                image, views, source = prepare_views(data, height, width, keep_aspect,
                                                     grayscale, unbend)
            else:
                image = prepare_image(data, height, width, keep_aspect, grayscale)
                views = source = None
            images.append(image)
            turned.append(views)
            sources.append(source)
            good.append(path)
        except UnidentifiedImageError:
            problems.append((path, "cannot read image: not an image format Pillow decodes"))
        except Exception as e:  # noqa: BLE001 -- any failure to read or decode: skip this file
            problems.append((path, f"cannot read image ({type(e).__name__}: {e})"))
    array = np.stack(images) if images else np.zeros((0, height, width), np.uint8)
    return LoadedViews(array, turned if turn else None, good, problems,
                       sources if unbend else None)


def recognize_images(ckpt: InferenceCheckpoint, images: np.ndarray,
                     lexicon: Sequence[str] | None = None, beam_width: int = 1,
                     batch_size: int | None = None,
                     turned: Sequence[np.ndarray | None] | None = None,
                     frame: bool = True,
                     sources: Sequence[np.ndarray | None] | None = None) -> list:
    """Reads preprocessed uint8 [N, H, W] images; returns N ``evaluation.Prediction``s (with
    ``confidence``; with a lexicon also ``lexicon_text`` / ``lexicon_confidence``).
    ``turned``: per image its turned views (``load_views``), read too where given;
    ``frame``: unsure readings' images also read framed (``Evaluator``'s ``frame``);
    ``sources``: per image its crop to unbend (``load_views``): with ``frame``, images
    still unsure are read unbent too where given (``Evaluator``'s ``unbend``)."""
    from grcnn_jax.assemble import lexicon_lowercase, make_mesh
    from grcnn_jax.evaluation.evaluator import make_evaluator
    from grcnn_jax.models import frames_for_width

    config, charset = ckpt.config, ckpt.charset
    mesh = make_mesh()
    batch_size = batch_size or min(config.eval_batch_size, max(len(images), 1))
    batch_size = -(-batch_size // mesh.size) * mesh.size          # a multiple of the devices
    if lexicon is not None:
        lexicon = fitting_words(lexicon, charset, frames_for_width(config.image_width),
                                lexicon_lowercase(config))
    evaluator = make_evaluator(config, charset, mesh, batch_size, what="--batch_size",
                               beam_width=beam_width, confidence=True, lm=ckpt.lm,
                               turn=turned is not None, frame=frame,
                               unbend=sources is not None)
    lexicons = None if lexicon is None else [lexicon] * len(images)
    return evaluator.predict(ckpt.params, ckpt.batch_stats, images, lexicons, turned, sources)


def fitting_words(lexicon: Sequence[str], charset, frames: int, lowercase: bool) -> list[str]:
    """The lexicon words as scored (lowercased per the policy, unless the model writes both
    cases); warns about the words that do not fit the charset or the frames, raises
    ValueError if none fits."""
    from grcnn_jax.text import ctc_host
    from grcnn_jax.text import decode

    enc = decode.encode_lexicons([lexicon], charset, frames, lowercase=lowercase,
                                 case_variants=ctc_host.writes_both_cases(charset))
    if enc.skipped:
        log.warning("lexicon: skipping %d word(s) that do not fit the charset %r or the "
                    "%d frames: %s", len(enc.skipped), charset.chars, frames,
                    ", ".join(enc.skipped[:10]))
    if not enc.words[0]:
        raise ValueError("no lexicon word fits the charset")
    return list(dict.fromkeys(enc.words[0]))         # a word's case forms: one entry


class ExportedModule:
    """An exported program where the ``Evaluator`` expects a flax module: its variables are
    inside the program, so ``apply`` takes none."""

    def __init__(self, exported: Any):
        self.exported = exported

    def apply(self, variables: dict, images: Any, train: bool = False) -> Any:
        return self.exported.call(images)


def recognize_exported(reader, images: np.ndarray, lexicon: Sequence[str] | None = None,
                       beam_width: int = 1, batch_size: int | None = None,
                       turned: Sequence[np.ndarray | None] | None = None,
                       frame: bool = True,
                       sources: Sequence[np.ndarray | None] | None = None) -> list:
    """``recognize_images`` for a model from ``inference.exported.load_exported``: the same
    ``Evaluator`` (decoders, confidences, lexicon scores) on its program, on one device."""
    import jax
    from jax.sharding import Mesh

    from grcnn_jax.evaluation.evaluator import Evaluator

    lowercase = bool(reader.meta.get("lowercase", True))
    if lexicon is not None:
        lexicon = fitting_words(lexicon, reader.charset, int(reader.meta["frames"]), lowercase)
    # The program was exported without shardings: it runs on one device.
    mesh = Mesh(np.array(jax.local_devices()[:1]), ("data",))
    evaluator = Evaluator(ExportedModule(reader.exported), reader.charset, mesh,
                          batch_size or min(64, max(len(images), 1)), beam_width=beam_width,
                          lexicon_lowercase=lowercase, confidence=True, lm=reader.lm,
                          turn=turned is not None, frame=frame, unbend=sources is not None,
                          keep_aspect=bool(reader.meta.get("keep_aspect", False)))
    lexicons = None if lexicon is None else [lexicon] * len(images)
    return evaluator.predict({}, {}, images, lexicons, turned, sources)


class FlagConflict(ValueError):
    """Model flags that cannot go together (the message names them): a usage error."""


def choose_folder(workdir: str | None, checkpoint: str | None, step_given: bool,
                  exported: str | None, onnx: str | None, engine: str = "auto",
                  n_images: int = 1) -> tuple[str, str | None]:
    """What runs a command's model flags: ('onnx', folder), ('exported', folder) or
    ('checkpoint', None) for ``load.load_for_inference(workdir, checkpoint, step)``.
    The shipped reader (no flags, or checkpoint 'pretrained') runs as its ONNX form with
    ``engine`` 'onnx', and with 'auto' where onnxruntime is installed and at most
    ``ONNX_UP_TO`` images are read. Raises FlagConflict naming flags that cannot go together."""
    if (exported or onnx) and (workdir or checkpoint or step_given or (exported and onnx)):
        name = "onnx" if onnx else "exported"
        raise FlagConflict(f"--{name} runs a model folder of its own: give it without --workdir, "
                         "--checkpoint, --step" + (" and --exported" if onnx else ""))
    shipped = not (workdir or step_given or exported or onnx) and checkpoint in (
        None, assets.PRETRAINED)
    if engine != "auto" and not shipped:
        raise FlagConflict("--engine chooses how the shipped reader runs: give it without "
                         "--workdir, --checkpoint (but 'pretrained'), --step, --exported and "
                         "--onnx (export a checkpoint with grcnn-export --format onnx and read "
                         "it with --onnx DIR)")
    if onnx:
        return "onnx", onnx
    if exported:
        return "exported", exported
    if shipped:
        if engine == "onnx" or (engine == "auto" and n_images <= ONNX_UP_TO
                                and _shipped_onnx_usable()):
            return "onnx", assets.READER_ONNX_DIR
        return "checkpoint", None
    from grcnn_jax.inference.exported import is_exported_folder
    from grcnn_jax.inference.onnx_reader import is_onnx_folder

    if checkpoint and is_exported_folder(checkpoint):
        return "exported", checkpoint           # --checkpoint names an exported folder
    if checkpoint and is_onnx_folder(checkpoint):
        return "onnx", checkpoint               # ... or an ONNX one
    return "checkpoint", None


def _shipped_onnx_usable() -> bool:
    import importlib.util

    return (os.path.isfile(os.path.join(assets.READER_ONNX_DIR, "model.onnx"))
            and importlib.util.find_spec("onnxruntime") is not None)
