"""Read the text in word images with a trained checkpoint, or the shipped model.

    python -m grcnn_jax.recognize word.png                    # the model shipped in the package
    python -m grcnn_jax.recognize --workdir DIR word.png more/ ...
    python -m grcnn_jax.recognize --workdir DIR --lexicon words.txt crops/
    python -m grcnn_jax.recognize --checkpoint DIR/checkpoints/6000 --beam_width 10 crops/
    python -m grcnn_jax.recognize --checkpoint my_reader/ word.png  # a reader folder
    python -m grcnn_jax.recognize --exported model/ word.png   # see grcnn_jax.export

Prints one line per image: ``path<TAB>text<TAB>confidence``, where confidence is
p(text | image) in [0, 1], summed over all CTC alignments of the text. Folders
are expanded (recursively, sorted) to their image files. Images are prepared
exactly as the training loader does (grayscale per ``config.data.grayscale``, resized
to the config's height and width, stretched or aspect-kept per ``config.data.keep_aspect``).

``--lexicon FILE`` (words separated by commas and/or newlines) picks, for each
image, the lexicon word of highest CTC likelihood instead; words are mapped like
labels (lowercased under the default policy), words that still do not fit the
charset are skipped with a warning. ``--beam_width N`` (N > 1) decodes with a
prefix beam search instead of greedy.

``--exported DIR`` runs a model written by ``python -m grcnn_jax.export --out DIR``
instead of a checkpoint (not with --workdir/--checkpoint/--step): images are prepared
per its ``meta.json``, and its logits go through the same decoders (greedy, beam,
lexicon) and the same confidence computation, so the output equals the checkpoint's.
``--onnx DIR`` runs a model written by ``python -m grcnn_jax.export --format onnx --out
DIR`` with onnxruntime (``grcnn_jax.inference.onnx_reader``: the same decoders and confidence).
``--checkpoint`` given either kind of folder runs it so.

The shipped reader also ships as ONNX (``grcnn_jax/assets/reader_onnx``). ``--engine auto``
(the default) reads with it when onnxruntime is installed and at most ``ONNX_UP_TO``
images are given: the command then never imports jax, and one word takes a
fraction of a second instead of the ~3 s of starting jax. Beyond that, jax's batched
evaluation is the faster. ``--engine jax`` / ``--engine onnx`` choose for themselves.

Unreadable or missing files are reported on stderr with their path and skipped;
the exit status is nonzero only if no image could be read.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Iterable, Sequence

from typing import TYPE_CHECKING

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
    from PIL import UnidentifiedImageError

    from grcnn_jax.data.preprocess import prepare_image

    images, good, problems = [], [], []
    for path in files:
        try:
            with open(path, "rb") as f:
                data = f.read()
            images.append(prepare_image(data, height, width, keep_aspect, grayscale))
            good.append(path)
        except UnidentifiedImageError:
            problems.append((path, "cannot read image: not an image format Pillow decodes"))
        except Exception as e:  # noqa: BLE001 -- any failure to read or decode: skip this file
            problems.append((path, f"cannot read image ({type(e).__name__}: {e})"))
    array = np.stack(images) if images else np.zeros((0, height, width), np.uint8)
    return array, good, problems


def recognize_images(ckpt: InferenceCheckpoint, images: np.ndarray,
                     lexicon: Sequence[str] | None = None, beam_width: int = 1,
                     batch_size: int | None = None) -> list:
    """Reads preprocessed uint8 [N, H, W] images; returns N ``evaluation.Prediction``s (with
    ``confidence``; with a lexicon also ``lexicon_text`` / ``lexicon_confidence``)."""
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
                               beam_width=beam_width, confidence=True)
    lexicons = None if lexicon is None else [lexicon] * len(images)
    return evaluator.predict(ckpt.params, ckpt.batch_stats, images, lexicons)


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


class _ExportedModule:
    """An exported program where the ``Evaluator`` expects a flax module: its variables are
    inside the program, so ``apply`` takes none."""

    def __init__(self, exported: Any):
        self.exported = exported

    def apply(self, variables: dict, images: Any, train: bool = False) -> Any:
        return self.exported.call(images)


def recognize_exported(reader, images: np.ndarray, lexicon: Sequence[str] | None = None,
                       beam_width: int = 1, batch_size: int | None = None) -> list:
    """``recognize_images`` for a model from ``grcnn_jax.export.load_exported``: the same
    ``Evaluator`` (decoders, confidences, lexicon scores) on its program, on one device."""
    import jax
    from jax.sharding import Mesh

    from grcnn_jax.evaluation.evaluator import Evaluator

    lowercase = bool(reader.meta.get("lowercase", True))
    if lexicon is not None:
        lexicon = fitting_words(lexicon, reader.charset, int(reader.meta["frames"]), lowercase)
    # The program was exported without shardings: it runs on one device.
    mesh = Mesh(np.array(jax.local_devices()[:1]), ("data",))
    evaluator = Evaluator(_ExportedModule(reader.exported), reader.charset, mesh,
                          batch_size or min(64, max(len(images), 1)), beam_width=beam_width,
                          lexicon_lowercase=lowercase, confidence=True)
    lexicons = None if lexicon is None else [lexicon] * len(images)
    return evaluator.predict({}, {}, images, lexicons)


# ----------------------------------------------------------------------------- command line
def _define_flags() -> None:
    from absl import flags

    from grcnn_jax import process as runtime

    runtime.define_checkpoint_flags()
    flags.DEFINE_enum("engine", "auto", ["auto", "jax", "onnx"], "How the shipped reader "
                      "runs: onnx = its ONNX form in onnxruntime (starts at once), jax = the "
                      "jitted model (starts in seconds, faster over a thousand images), auto = "
                      f"onnx for up to {ONNX_UP_TO} images where onnxruntime is installed, "
                      "else jax.")
    flags.DEFINE_string("lexicon", None, "Words (comma- and/or newline-separated): print the most "
                        "likely of them for each image.")
    flags.DEFINE_integer("beam_width", 1, "1 = greedy decoding, more = prefix beam search.")
    flags.DEFINE_integer("batch_size", None, "Images per jitted call (default: the config's "
                         "eval_batch_size, at most the number of images; 64 with --exported).")
    flags.DEFINE_string("exported", None, "Run a model folder written by grcnn_jax.export "
                        "(model.jax + meta.json) instead of a checkpoint.")
    flags.DEFINE_string("onnx", None, "Run an ONNX model folder written by grcnn_jax.export "
                        "--format onnx (model.onnx + meta.json) with onnxruntime.")


def choose_folder(workdir: str | None, checkpoint: str | None, step_given: bool,
                  exported: str | None, onnx: str | None, engine: str = "auto",
                  n_images: int = 1) -> tuple[str, str | None]:
    """What runs a command's model flags: ('onnx', folder), ('exported', folder) or
    ('checkpoint', None) for ``checkpoints.load_for_inference(workdir, checkpoint, step)``.
    The shipped reader (no flags, or checkpoint 'pretrained') runs as its ONNX form with
    ``engine`` 'onnx', and with 'auto' where onnxruntime is installed and at most
    ``ONNX_UP_TO`` images are read. Raises ValueError naming flags that cannot go together."""
    if (exported or onnx) and (workdir or checkpoint or step_given or (exported and onnx)):
        name = "onnx" if onnx else "exported"
        raise ValueError(f"--{name} runs a model folder of its own: give it without --workdir, "
                         "--checkpoint, --step" + (" and --exported" if onnx else ""))
    shipped = not (workdir or step_given or exported or onnx) and checkpoint in (
        None, assets.PRETRAINED)
    if engine != "auto" and not shipped:
        raise ValueError("--engine chooses how the shipped reader runs: give it without "
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
    from grcnn_jax.inference.export import is_exported_folder
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


def main(argv: list[str]) -> None:
    from absl import app, flags

    from grcnn_jax import process as runtime

    FLAGS = flags.FLAGS
    paths = argv[1:]
    if not paths:
        raise app.UsageError("give image files and/or folders to read")
    if FLAGS.beam_width < 1:
        raise app.UsageError(f"--beam_width must be >= 1, got {FLAGS.beam_width}")
    files, problems = expand_paths(paths)
    try:
        kind, folder = choose_folder(FLAGS.workdir, FLAGS.checkpoint, FLAGS["step"].present,
                                     FLAGS.exported, FLAGS.onnx, FLAGS.engine, len(files))
    except ValueError as e:
        raise app.UsageError(str(e)) from None
    runtime.log_our_progress()
    with runtime.refusals_as_one_line():
        lexicon = read_lexicon(FLAGS.lexicon) if FLAGS.lexicon else None
        if kind != "checkpoint":
            if kind == "onnx":
                from grcnn_jax.inference.onnx_reader import OnnxReader

                reader = OnnxReader(folder)
            else:
                from grcnn_jax.inference.export import load_exported

                reader = load_exported(folder)
            m = reader.meta
            shape = (m["image_height"], m["image_width"], m["keep_aspect"], m["grayscale"])
        else:
            from grcnn_jax.workdir import checkpoints
            from grcnn_jax.assemble import gray_mode

            ckpt = checkpoints.load_for_inference(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)
            c = ckpt.config
            shape = (c.image_height, c.image_width, c.data.keep_aspect, gray_mode(c))
        images, good, unreadable = load_images(files, *shape)
        for path, reason in problems + unreadable:
            print(f"{path}: {reason}; skipped", file=sys.stderr)
        if not good:
            raise SystemExit(f"FATAL no image could be read from {' '.join(paths)}")
        if kind == "onnx":
            predictions = reader.read(list(images), lexicon, batch_size=FLAGS.batch_size or 64,
                                      beam_width=FLAGS.beam_width)
        elif kind == "exported":
            predictions = recognize_exported(reader, images, lexicon, FLAGS.beam_width,
                                             FLAGS.batch_size)
        else:
            predictions = recognize_images(ckpt, images, lexicon, FLAGS.beam_width,
                                           FLAGS.batch_size)
    for path, p in zip(good, predictions):
        if lexicon is not None:
            print(f"{path}\t{p.lexicon_text}\t{p.lexicon_confidence:.4g}")
        else:
            print(f"{path}\t{p.text}\t{p.confidence:.4g}")
    sys.stdout.flush()


def run() -> None:
    """The ``grcnn-recognize`` command (``python -m grcnn_jax.recognize``)."""
    from grcnn_jax import process as runtime

    # No restart for huge pages: it costs more than it saves on the few words read at once.
    runtime.run_command(main, _define_flags, huge_pages=False)


if __name__ == "__main__":
    run()
