"""The demo page: a local web page where a person reads word images with a model.

    pip install 'grcnn_jax[demo]'
    grcnn-demo                                  # the shipped reader, http://127.0.0.1:7860
    grcnn-demo --checkpoint runs/mine --port 8000 --host 0.0.0.0
    grcnn-demo --onnx model_onnx/               # or --exported model/, a reader folder, ...

A person drops, pastes or picks a word image and sees the text, its confidence, the beam
search's alternatives, the best words of an optional lexicon, and a picture of what the
model read where: each frame's character probabilities drawn under the image as the model
saw it. Any checkpoint, reader folder, exported or ONNX model can be served (the model flags
are ``recognize``'s); the shipped reader runs as its ONNX form where onnxruntime is installed.
A bad upload (empty, not an image, too large) gets a sentence on the page; the server goes on
serving. Gradio (the ``[demo]`` extra) serves the page and queues requests.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Sequence

from grcnn_jax.demo.reading import UploadError, draw_reading, read_word

EXAMPLE_WORDS = ("Hotel", "EXIT", "12:45", "Coffee")
TITLE = "grcnn_jax: read a word"


def load_reader(workdir: str | None = None, checkpoint: str | None = None, step: str = "latest",
                step_given: bool = False, exported: str | None = None, onnx: str | None = None,
                engine: str = "auto", lm: str | None = None) -> tuple[Any, str]:
    """The model to serve, chosen as ``recognize`` chooses it (``lm`` as its ``--lm``), and a
    line saying what it is."""
    from grcnn_jax import assets
    from grcnn_jax.inference.recognize import choose_folder
    from grcnn_jax.inference.lm_files import choose_lm

    kind, folder = choose_folder(workdir, checkpoint, step_given, exported, onnx, engine)
    if kind == "onnx":
        from grcnn_jax.inference.onnx_reader import OnnxReader

        reader, how = OnnxReader(folder), "ONNX, onnxruntime"
    elif kind == "exported":
        from grcnn_jax.inference.exported import load_exported

        reader, how = load_exported(folder), "jax.export program"
    else:
        from grcnn_jax.inference.load import load_for_inference
        from grcnn_jax.demo.reading import CheckpointReader

        reader, how = CheckpointReader(load_for_inference(workdir, checkpoint, step)), "jax"
    reader.lm = choose_lm(lm, reader.lm)
    source = reader.meta.get("source", folder)
    name = "the shipped reader" if source == assets.PRETRAINED else str(source)
    reads = ", with its language model" if reader.lm is not None else ""
    return reader, (f"{name}: step {reader.meta.get('step', '?')}, "
                    f"{len(reader.charset.chars)} characters, {how}{reads}")


def example_images(folder: str, words: Sequence[str] = EXAMPLE_WORDS) -> list[str]:
    """PNG files of ``words`` drawn by the synthetic generator (fixed seeds, legible ones),
    for the page's examples: the package ships no photographs."""
    import numpy as np
    from PIL import Image

    from grcnn_jax.data.synth import fonts
    from grcnn_jax.data.synth import generator as synth

    faces = fonts.usable_fonts()
    paths = []
    for k, word in enumerate(words):
        for seed in range(100 * k + 1, 100 * k + 50):
            r = synth.render(np.random.default_rng(seed), word, faces, 64)
            if r.legible:
                break
        path = os.path.join(folder, f"{k + 1}_{word.replace(':', '')}.png")
        Image.fromarray(r.rgb).save(path)
        paths.append(path)
    return paths


class _Pictures:
    """The answers' pictures as PNG files named by their content, each written whole
    (``os.replace``), for Gradio to copy into its cache. Handed a PIL image, Gradio rewrites
    its cached file in place whenever two answers draw the same picture, and a download of
    it at that moment gets a truncated file. Files older than ``keep_s`` are deleted."""

    def __init__(self, folder: str, keep_s: float = 600.0):
        self.folder, self.keep_s = folder, keep_s
        os.makedirs(folder, exist_ok=True)

    def save(self, picture: Any) -> str:
        import hashlib
        import io
        import time

        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        data = buffer.getvalue()
        path = os.path.join(self.folder, hashlib.sha256(data).hexdigest()[:24] + ".png")
        if not os.path.exists(path):
            fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        now = time.time()
        for name in os.listdir(self.folder):
            old = os.path.join(self.folder, name)
            try:
                if now - os.path.getmtime(old) > self.keep_s and old != path:
                    os.remove(old)
            except OSError:                 # removed by a concurrent answer
                pass
        return path


def _tolerant(preprocess):
    """An image input's preprocessing that hands a file Pillow cannot open to ``answer`` as its
    path, so that the page says what is wrong with it (Gradio's own raises). Set on the
    instance: a subclass of a Gradio component makes Gradio write a .pyi stub beside this
    file, inside the installed package."""
    def tolerant(payload):
        try:
            return preprocess(payload)
        except Exception:  # noqa: BLE001 -- not an image: answer() says so on the page
            return None if payload is None else str(payload.path)

    return tolerant


def build_page(reader: Any, what: str, examples: Sequence[str] = (), beam_width: int = 5,
               work_dir: str | None = None):
    """The Gradio page (``gr.Blocks``) serving ``reader``; ``work_dir`` holds the answers'
    pictures (default: a new temporary folder)."""
    import gradio as gr

    from grcnn_jax.inference.recognize import split_words

    pictures = _Pictures(os.path.join(work_dir or tempfile.mkdtemp(prefix="grcnn_demo_"),
                                      "pictures"))

    def answer(path: str | None, lexicon_text: str, width: float):
        blank = ("", "", {}, {}, None)
        if not path:
            return ("Drop, paste or pick a word image first.", *blank)
        try:
            with open(path, "rb") as f:
                data = f.read()
            words = split_words(lexicon_text or "")
            reading = read_word(reader, data, words or None, int(width))
        except UploadError as e:
            return (f"**{e}**", *blank)
        except ValueError as e:             # e.g. no lexicon word fits the charset
            return (f"**{e}.**", *blank)
        shown = lambda t: t if t else "(nothing)"  # noqa: E731
        alternatives = {shown(t): p for t, p in reading.alternatives}
        best = {w: p for w, p in reading.lexicon} if reading.lexicon else {}
        status = (f"Read **{shown(reading.text)}** with confidence {reading.confidence:.3f}"
                  + (f" (the image turned {reading.turned})" if reading.turned else "")
                  + (f" (the image framed {reading.framed})" if reading.framed else "")
                  + (f" (the image unbent along an arc of {reading.unbent:+.1f} rad)"
                     if reading.unbent is not None else "")
                  + (f"; best lexicon word **{reading.lexicon[0][0]}**" if reading.lexicon
                     else "") + ".")
        return (status, reading.text, f"{reading.confidence:.4f}", alternatives, best,
                pictures.save(draw_reading(reading, reader.charset)))

    # Gradio's cache of uploads and answers: files older than an hour go, hourly.
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=(3600, 3600)) as page:
        gr.Markdown(f"# {TITLE}\nServing {what}. Drop, paste or pick a photo of **one "
                    "word**; the model reads it as a 32 x 100 gray image.")
        with gr.Row():
            with gr.Column():
                # The upload's own file (image_mode=None): converting it, Gradio writes the
                # copy to a path named by its content, so identical uploads at the same
                # time overwrite the file another request is reading. read_word turns it
                # as its EXIF orientation says and converts it itself.
                image = gr.Image(type="filepath", image_mode=None, label="Word image",
                                 sources=["upload", "clipboard"], elem_id="word-image")
                image.preprocess = _tolerant(image.preprocess)
                lexicon = gr.Textbox(label="Lexicon (optional): words separated by commas or "
                                     "lines", lines=2, elem_id="lexicon")
                width = gr.Slider(1, 20, value=beam_width, step=1, label="Beam width "
                                  "(alternatives)", elem_id="beam-width")
                button = gr.Button("Read", variant="primary", elem_id="read")
                if examples:
                    gr.Examples(examples=[[p] for p in examples], inputs=[image],
                                label="Examples (drawn by the synthetic generator)")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                text = gr.Textbox(label="Text", elem_id="text")
                confidence = gr.Textbox(label="Confidence p(text | image)",
                                        elem_id="confidence")
                alternatives = gr.Label(label="Beam alternatives", num_top_classes=5,
                                        elem_id="alternatives")
                best = gr.Label(label="Best lexicon words", num_top_classes=5,
                                elem_id="lexicon-words")
        picture = gr.Image(label="What the model read where: the characters read at their "
                           "frames, and each frame's probabilities (darker = likelier)",
                           type="filepath", elem_id="picture", interactive=False)
        outputs = [status, text, confidence, alternatives, best, picture]
        button.click(answer, [image, lexicon, width], outputs, api_name="read")
        image.upload(answer, [image, lexicon, width], outputs, api_name=False)
    return page
