"""The ``grcnn-demo`` command: its flags and its run; the work is ``grcnn_jax.demo.page``'s."""

from __future__ import annotations

import os
import tempfile

from grcnn_jax.demo.page import build_page, example_images, load_reader
from grcnn_jax.demo.reading import MAX_BYTES
from grcnn_jax.inference.recognize import FlagConflict
from grcnn_jax.cli import common
from grcnn_jax import process


# ----------------------------------------------------------------------------- command line
def _define_flags() -> None:
    from absl import flags


    common.define_checkpoint_flags()
    flags.DEFINE_string("exported", None, "Serve a model folder written by grcnn_jax.export.")
    flags.DEFINE_string("onnx", None, "Serve an ONNX model folder (grcnn_jax.export --format "
                        "onnx).")
    flags.DEFINE_enum("engine", "auto", ["auto", "jax", "onnx"], "How the shipped reader runs "
                      "(auto: its ONNX form where onnxruntime is installed).")
    flags.DEFINE_string("host", "127.0.0.1", "Address to serve on (0.0.0.0: every interface).")
    flags.DEFINE_integer("port", 7860, "Port to serve on.", lower_bound=1, upper_bound=65535)
    flags.DEFINE_integer("beam_width", 5, "The beam width the page starts with.",
                         lower_bound=1, upper_bound=20)
    flags.DEFINE_integer("concurrency", 2, "Requests read at once (the rest wait in the queue).",
                         lower_bound=1)


def main(argv: list[str]) -> None:
    from absl import app, flags


    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise app.UsageError(f"grcnn-demo takes flags only, got {' '.join(argv[1:])}")
    process.log_our_progress()
    with common.refusals_as_one_line():
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise SystemExit("FATAL the demo page needs gradio: pip install "
                             "'grcnn_jax[demo]'") from None
        try:
            reader, what = load_reader(FLAGS.workdir, FLAGS.checkpoint, FLAGS.step,
                                       FLAGS["step"].present, FLAGS.exported, FLAGS.onnx,
                                       FLAGS.engine, FLAGS.lm)
        except FlagConflict as e:
            raise app.UsageError(str(e)) from None
        work_dir = tempfile.mkdtemp(prefix="grcnn_demo_")
        examples = example_images(work_dir)
        page = build_page(reader, what, examples, FLAGS.beam_width, work_dir)
        print(f"serving {what}", flush=True)
        page.queue(default_concurrency_limit=FLAGS.concurrency).launch(
            server_name=FLAGS.host, server_port=FLAGS.port, max_file_size=MAX_BYTES,
            show_error=True, quiet=False)


def run() -> None:
    """The ``grcnn-demo`` command (``python -m grcnn_jax.cli.demo``)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")   # nothing leaves the machine

    common.run_command(main, _define_flags, huge_pages=False)


if __name__ == "__main__":
    run()
