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

import sys

from grcnn_jax.inference.recognize import (ONNX_UP_TO, FlagConflict, choose_folder,
                                           expand_paths, load_views, read_lexicon,
                                           recognize_exported, recognize_images)


# ----------------------------------------------------------------------------- command line
def _define_flags() -> None:
    from absl import flags

    from grcnn_jax.cli import common

    common.define_checkpoint_flags()
    flags.DEFINE_enum("engine", "auto", ["auto", "jax", "onnx"], "How the shipped reader "
                      "runs: onnx = its ONNX form in onnxruntime (starts at once), jax = the "
                      "jitted model (starts in seconds, faster over a thousand images), auto = "
                      f"onnx for up to {ONNX_UP_TO} images where onnxruntime is installed, "
                      "else jax.")
    flags.DEFINE_string("lexicon", None, "A file of words (comma- and/or newline-separated): "
                        "print the most likely of them for each image.")
    flags.DEFINE_integer("beam_width", 1, "1 = greedy decoding, more = prefix beam search.")
    common.define_view_flags()
    flags.DEFINE_integer("batch_size", None, "Images per jitted call (default: the config's "
                         "eval_batch_size, at most the number of images; 64 with --exported).")
    flags.DEFINE_string("exported", None, "Run a model folder written by grcnn_jax.export "
                        "(model.jax + meta.json) instead of a checkpoint.")
    flags.DEFINE_string("onnx", None, "Run an ONNX model folder written by grcnn_jax.export "
                        "--format onnx (model.onnx + meta.json) with onnxruntime.")


def main(argv: list[str]) -> None:
    from absl import app, flags

    from grcnn_jax import process
    from grcnn_jax.cli import common

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
    except FlagConflict as e:
        raise app.UsageError(str(e)) from None
    process.log_our_progress()
    with common.refusals_as_one_line():
        lexicon = read_lexicon(FLAGS.lexicon) if FLAGS.lexicon else None
        if kind != "checkpoint":
            if kind == "onnx":
                from grcnn_jax.inference.onnx_reader import OnnxReader

                reader = OnnxReader(folder)
            else:
                from grcnn_jax.inference.exported import load_exported

                reader = load_exported(folder)
            from grcnn_jax.inference.lm_files import choose_lm

            reader.lm = choose_lm(FLAGS.lm, reader.lm)
            m = reader.meta
            shape = (m["image_height"], m["image_width"], m["keep_aspect"], m["grayscale"])
        else:
            from grcnn_jax.config.defaults import gray_mode
            from grcnn_jax.inference.load import load_for_inference, with_lm

            ckpt = with_lm(load_for_inference(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step),
                           FLAGS.lm)
            c = ckpt.config
            shape = (c.image_height, c.image_width, c.data.keep_aspect, gray_mode(c))
        unbend = FLAGS.frame and FLAGS.unbend
        images, turned, good, unreadable, sources = load_views(files, *shape, turn=FLAGS.turn,
                                                               unbend=unbend)
        for path, reason in problems + unreadable:
            print(f"{path}: {reason}; skipped", file=sys.stderr)
        if not good:
            raise SystemExit(f"FATAL no image could be read from {' '.join(paths)}")
        if kind == "onnx":
            predictions = reader.read(list(images), lexicon, batch_size=FLAGS.batch_size or 64,
                                      beam_width=FLAGS.beam_width, turn=FLAGS.turn,
                                      turned=turned, frame=FLAGS.frame, unbend=unbend,
                                      sources=sources)
        elif kind == "exported":
            predictions = recognize_exported(reader, images, lexicon, FLAGS.beam_width,
                                             FLAGS.batch_size, turned, FLAGS.frame, sources)
        else:
            predictions = recognize_images(ckpt, images, lexicon, FLAGS.beam_width,
                                           FLAGS.batch_size, turned, FLAGS.frame, sources)
    for path, p in zip(good, predictions):
        if lexicon is not None:
            print(f"{path}\t{p.lexicon_text}\t{p.lexicon_confidence:.4g}")
        else:
            print(f"{path}\t{p.text}\t{p.confidence:.4g}")
    sys.stdout.flush()


def run() -> None:
    """The ``grcnn-recognize`` command (``python -m grcnn_jax.recognize``)."""
    from grcnn_jax.cli import common

    # No restart for huge pages: it costs more than it saves on the few words read at once.
    common.run_command(main, _define_flags, huge_pages=False)


if __name__ == "__main__":
    run()
