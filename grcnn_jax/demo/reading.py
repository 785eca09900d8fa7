"""What the demo page shows for one word image: the reading, its alternatives, and where the
model read each character. Numpy and Pillow only: the model is anything with
``reader(images) -> logits``, ``reader.meta`` and ``reader.charset`` (``OnnxReader``,
``export.ExportedReader``, or ``CheckpointReader`` for a checkpoint).

``read_word`` takes the uploaded file's bytes and refuses, with ``UploadError`` and a
sentence a person can act on, an empty file, a file that is not an image Pillow decodes,
and one over ``MAX_BYTES`` or ``MAX_PIXELS``; ``draw_reading`` draws the per-frame
character probabilities under the image as the model saw it.
"""

from __future__ import annotations

import dataclasses
import io
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from grcnn_jax.text import settle
from grcnn_jax.text.char_lm import LmDecoder
from grcnn_jax.text.charset import BLANK_ID
from grcnn_jax.text.ctc_host import (BEAM_CLASS_THRESHOLD, best_view, collapse,
                                     ctc_log_likelihood, ctc_log_likelihoods, kept_unbent,
                                     lexicon_forms, log_softmax, prefix_beam_search,
                                     view_scores)

MAX_BYTES = 20 * 1024 * 1024     # an upload larger than this is refused
MAX_PIXELS = 40_000_000          # ... and so is one that decodes to more pixels (a word crop
                                 # is rarely over 1 MP; PIL's own bomb guard stops at 179 MP)


class UploadError(ValueError):
    """An upload the page cannot read; the message says why, for the person who sent it."""


@dataclasses.dataclass
class WordReading:
    """One image's reading.

    Attributes:
      text, confidence: the reading (greedy, or with the reader's language model as
        ``recognize`` reads) and p(text | image) over all its alignments.
      alternatives: (text, p(text | image)) of the prefix beam search's final beam, best
        first: by that probability, or where the reader has a language model by the search's
        fused score (the image and the language model together).
      lexicon: with a lexicon, (word, probability) of its best words, best first; else None.
      probs: float32 [frames, classes] per-frame probabilities (softmax of the logits).
      image: uint8 [H, W], the image as the model saw it (grayscale, resized; turned,
        framed or unbent where ``turned``, ``framed`` or ``unbent`` says).
      turned: 'clockwise' or 'anticlockwise' where a tall image was read turned a quarter
        that way (its greedy reading was surer so), else None.
      framed: 'tighter' or 'looser' where an unsure reading's image was read framed so (its
        reading ranked first so: ``ctc_host.view_scores``), else None.
      unbent: the arc (radians, ``preprocess.unbend_arc``'s sign) along which a reading
        still unsure after framing was unbent (``ctc_host.kept_unbent``), else None.
    """

    text: str
    confidence: float
    alternatives: list[tuple[str, float]]
    lexicon: list[tuple[str, float]] | None
    probs: np.ndarray
    image: np.ndarray
    turned: str | None = None
    framed: str | None = None
    unbent: float | None = None


class CheckpointReader:
    """A checkpoint (``load.load_for_inference``) with the readers' interface:
    ``reader(images)`` -> logits, ``meta`` as an export's ``meta.json``, ``charset``."""

    def __init__(self, ckpt: Any):
        import jax

        from grcnn_jax.inference.export import serving_meta
        from grcnn_jax.models import create_model, frames_for_width

        model = create_model(ckpt.config.model, ckpt.charset.num_classes)
        variables = {"params": ckpt.params, "batch_stats": ckpt.batch_stats}
        self._logits = jax.jit(lambda x: model.apply(variables, x, train=False))
        self.charset, self.lm = ckpt.charset, ckpt.lm
        self.meta = serving_meta(ckpt, frames_for_width(ckpt.config.image_width),
                                 ckpt.charset.num_classes)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self._logits(images))


def check_upload(data: bytes | None) -> None:
    """Raises ``UploadError`` for bytes the page will not read (see the module doc)."""
    if not data:
        raise UploadError("The file is empty: upload a photo or scan of one word.")
    if len(data) > MAX_BYTES:
        raise UploadError(f"The file is {len(data) / 2**20:.1f} MB; the page reads images "
                          f"up to {MAX_BYTES // 2**20} MB (a word crop is usually a few KB).")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except Exception:  # noqa: BLE001 -- whatever Pillow fails with, it is not an image it reads
        raise UploadError("This file is not an image the page can read (PNG, JPEG, WebP, "
                          "GIF, BMP, TIFF, ...).") from None
    if width * height > MAX_PIXELS:
        raise UploadError(f"The image is {width} x {height} pixels; the page reads up to "
                          f"{MAX_PIXELS / 1e6:.0f} megapixels: crop it to the word.")


def read_word(reader: Any, data: bytes, lexicon: Sequence[str] | None = None,
              beam_width: int = 5) -> WordReading:
    """Reads one encoded image with ``reader``; raises ``UploadError`` for a bad upload and
    ValueError when no lexicon word fits the model's charset."""
    from grcnn_jax.data.preprocess import (FRAMES, TURNS, UNSURE, framed_views, prepare_views,
                                           unbent_views)

    check_upload(data)
    meta = reader.meta
    shape = (int(meta["image_height"]), int(meta["image_width"]),
             bool(meta.get("keep_aspect", False)))
    try:
        image, views, source = prepare_views(data, *shape, meta.get("grayscale", "luma"),
                                             unbend=True)
    except Exception as e:  # noqa: BLE001 -- a truncated or odd file Pillow opened but not decoded
        raise UploadError(f"The image could not be decoded ({type(e).__name__}: {e}).") from None
    candidates = image[None] if views is None else np.concatenate([image[None], views])
    all_log_probs = log_softmax(np.asarray(reader(candidates)))
    k = best_view(all_log_probs)                # a tall image: the view read best
    log_probs, turned = all_log_probs[k], None if k == 0 else TURNS[k - 1]
    image = candidates[k]
    ids = collapse(log_probs.argmax(-1)[None])[0]
    charset = reader.charset
    lm = getattr(reader, "lm", None)
    fusion = None if lm is None else LmDecoder(lm, charset)
    framed = None
    rank = None if fusion is None else fusion.rank
    unsure = views is None and ctc_log_likelihood(log_probs, ids) < np.log(UNSURE)
    if unsure:                                  # read framed too: the reading ranked first
        candidates = np.concatenate([image[None], framed_views(image)])
        all_log_probs = np.concatenate([log_probs[None],
                                        log_softmax(np.asarray(reader(candidates[1:])))])
        readings = (collapse(all_log_probs.argmax(-1)) if fusion is None
                    else [list(r) for r, _ in fusion.read(all_log_probs)])
        scores = view_scores(all_log_probs, readings, rank)
        k = int(np.argmax(scores))              # the first on ties
        log_probs, image, framed = all_log_probs[k], candidates[k], (None if k == 0
                                                                     else FRAMES[k - 1])
        ids = list(readings[k])
    elif fusion is not None:
        ids = fusion.read(log_probs[None])[0][0]
    as_framed = log_probs                       # a lexicon's word is picked from these
    greedy = collapse(log_probs.argmax(-1)[None])
    ids = settle.reading(log_probs[None], [ids], greedy, charset)[0][0]
    unbent = None
    if unsure and ctc_log_likelihood(log_probs, greedy[0]) < np.log(UNSURE):
        straight, angles = unbent_views(source, *shape)
        if len(straight):                       # still unsure: read unbent too
            lp = log_softmax(np.asarray(reader(straight)))
            first = collapse(lp.argmax(-1))
            found = first if fusion is None else [list(r) for r, _ in fusion.read(lp)]
            done = settle.reading(lp, found, first, charset)[0]
            pick = kept_unbent((charset.decode(ids), scores[k]),
                               [(charset.decode(d), sc)
                                for d, sc in zip(done, view_scores(lp, found, rank))])
            if pick is not None:
                log_probs, image, unbent = lp[pick], straight[pick], angles[pick]
                ids = list(done[pick])
    beam = prefix_beam_search(log_probs, max(1, beam_width), BEAM_CLASS_THRESHOLD, fusion)
    alternatives = [(charset.decode(list(p)), float(np.exp(s))) for p, s in beam]
    words = None
    if lexicon:
        forms = lexicon_forms(lexicon, charset, int(meta["frames"]),
                              bool(meta.get("lowercase", True)))
        best: dict[str, float] = {}
        scores = np.exp(ctc_log_likelihoods(np.broadcast_to(as_framed, (len(forms),
                                                                        *as_framed.shape)),
                                            [form_ids for _, form_ids in forms]))
        for (word, _), p in zip(forms, scores.tolist()):   # a word's best case form counts
            best[word] = max(best.get(word, 0.0), p)
        words = sorted(best.items(), key=lambda kv: -kv[1])[:5]
    return WordReading(text=charset.decode(ids),
                       confidence=float(np.exp(ctc_log_likelihood(log_probs, ids))),
                       alternatives=alternatives, lexicon=words,
                       probs=np.exp(log_probs).astype(np.float32), image=image, turned=turned,
                       framed=framed, unbent=unbent)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                       # Pillow without FreeType: its bitmap font
        return ImageFont.load_default()


def _shown(c: str) -> str:
    return "blank" if c == "" else ("space" if c == " " else c)


def draw_reading(reading: WordReading, charset: Any, scale: int = 4, rows: int = 8,
                 min_prob: float = 0.05) -> Image.Image:
    """The image as the model saw it (``scale`` x), each frame's column marked with the
    character greedy decoding took there, and under it a heat map: for each frame (a column,
    aligned with the image), the probability of the blank and of up to ``rows`` characters,
    those that reach ``min_prob`` somewhere, in reading order. RGB."""
    probs = reading.probs
    frames = probs.shape[0]
    h, w = reading.image.shape
    W, H = w * scale, h * scale
    col = W / frames
    best = probs.argmax(-1)
    # The characters to show: those reaching min_prob, ordered by the first frame they lead.
    strong = [c for c in range(1, probs.shape[1]) if probs[:, c].max() >= min_prob]
    strong.sort(key=lambda c: (-int((best == c).any()), int(np.argmax(probs[:, c]))))
    shown = sorted(strong[:rows], key=lambda c: int(np.argmax(probs[:, c])))
    row_ids = [BLANK_ID] + shown
    label_w, cell_h, strip_h, pad = 56, 20, 28, 6
    font, small = _font(18), _font(13)
    out = Image.new("RGB", (label_w + W + pad, H + strip_h + cell_h * len(row_ids) + 3 * pad),
                    "white")
    draw = ImageDraw.Draw(out)
    word = Image.fromarray(reading.image).resize((W, H), Image.NEAREST).convert("RGB")
    out.paste(word, (label_w, pad))
    draw.text((4, pad + H // 2 - 8), "input", fill=(90, 90, 90), font=small)
    top = pad + H
    previous = BLANK_ID
    for f in range(frames):                 # where each character was emitted
        c = int(best[f])
        if c != BLANK_ID and c != previous:
            x = label_w + (f + 0.5) * col
            p = float(probs[f, c])
            colour = (0, 130, 0) if p >= 0.9 else (200, 120, 0) if p >= 0.5 else (200, 0, 0)
            draw.line([(x, pad), (x, top + 4)], fill=colour, width=1)
            draw.text((x - 5, top + 4), charset.decode([c]), fill=colour, font=font)
        previous = c
    draw.text((4, top + 6), "read", fill=(90, 90, 90), font=small)
    grid_top = top + strip_h + pad
    for r, c in enumerate(row_ids):
        y = grid_top + r * cell_h
        label = "blank" if c == BLANK_ID else _shown(charset.decode([c]))
        draw.text((4, y + 3), label, fill=(0, 0, 0), font=small)
        for f in range(frames):
            v = float(probs[f, c])
            shade = (int(255 - 225 * v), int(255 - 170 * v), 255)      # white -> blue
            x0 = label_w + f * col
            draw.rectangle([x0, y, x0 + col - 1, y + cell_h - 2], fill=shade)
    return out
