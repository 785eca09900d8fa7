"""Read words with an exported ONNX model: onnxruntime, numpy and Pillow, no jax.

    from grcnn_jax.inference.onnx_reader import OnnxReader
    reader = OnnxReader("model/")                      # python -m grcnn_jax.export --format onnx
    for r in reader.read(["word.png", "sign.jpg"]):
        print(r.text, r.confidence)

Images are prepared as training and ``recognize`` prepare them (``meta.json``: grayscale
mode, size, keep_aspect; ``grcnn_jax.data.images`` and ``grcnn_jax.data.preprocess``, which
import no jax), read by greedy CTC, and given the same confidence as ``recognize``:
p(text | image) summed over all CTC alignments. With a lexicon, each image's answer is the
lexicon word of highest CTC likelihood (scored in its case forms for a model that writes
both cases); ``beam_width`` > 1 decodes with the prefix beam search ``recognize`` uses, and
a folder with a language model (``lm.npz``, ``grcnn_jax.text.char_lm``) reads with it as
``recognize`` does; a tall image is also read turned a quarter each way and the reading the
model is surest of kept, and an unsure reading's image also read framed tighter and looser
and the reading ranked first kept (still unsure, unbent along arcs too: a curved word), and
each reading's end marks and mixed case settled
(``text.settle``), as ``recognize`` does. Nothing here imports jax, flax or the
training code.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import numpy as np

from grcnn_jax.inference.lm_files import load_in_folder
from grcnn_jax.text import settle
from grcnn_jax.text.char_lm import LmDecoder
from grcnn_jax.text.charset import Charset
from grcnn_jax.data.preprocess import FRAMES, TURNS, UNSURE, framed_views, unbent_views
from grcnn_jax.text.ctc_host import (BEAM_CLASS_THRESHOLD, best_view, collapse,
                                     ctc_log_likelihoods, kept_unbent, lexicon_forms,
                                     log_softmax, prefix_beam_search, view_scores)

ONNX_FILE, META_FILE = "model.onnx", "meta.json"


def is_onnx_folder(path: str) -> bool:
    """Whether ``path`` is a folder ``grcnn_jax.inference.onnx_export`` wrote (it holds model.onnx)."""
    return os.path.isfile(os.path.join(os.path.expanduser(path), ONNX_FILE))


def session(model: str | bytes) -> Any:
    """An onnxruntime CPU session on a model file or its bytes, its warnings off."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("reading an ONNX model needs onnxruntime: pip install "
                          "'grcnn_jax[onnx]' (or just onnxruntime)") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3          # not the unused-initializer notes of every load
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


@dataclasses.dataclass
class Reading:
    """One image's reading: the text, p(text | image), and with a lexicon its best word and
    that word's probability (None without one); ``turned``: 'clockwise' or 'anticlockwise'
    where the image was read turned a quarter that way; ``framed``: 'tighter' or 'looser'
    where the reading is of the image framed so; ``unbent``: the arc (radians,
    ``preprocess.unbend_arc``'s sign) along which the image was unbent for the reading."""

    text: str
    confidence: float
    lexicon_text: str | None = None
    lexicon_confidence: float | None = None
    turned: str | None = None
    framed: str | None = None
    unbent: float | None = None


def _readings(log_probs: np.ndarray, decoder: LmDecoder | None, beam_width: int
              ) -> list[list[int]]:
    """[N, T, C] log-probabilities -> each row's reading as ``OnnxReader.read`` decodes it:
    the language model's search, else the prefix beam search (``beam_width`` > 1), else
    greedy."""
    if decoder is not None:
        return [list(ids) for ids, _ in decoder.read(log_probs, exact=False)]
    if beam_width > 1:
        return [list(prefix_beam_search(lp, beam_width, BEAM_CLASS_THRESHOLD)[0][0])
                for lp in log_probs]
    return collapse(log_probs.argmax(-1))


class OnnxReader:
    """A model folder written by ``python -m grcnn_jax.export --format onnx``.

    Attributes:
      meta: ``meta.json`` as a dict.
      charset: the label alphabet.
      shape: (height, width) of the images the model takes.
      lm: the language model it reads with (``char_lm.CharLM``): the folder's own, or None;
        set it to read with another (``lm_files.choose_lm``).
    """

    def __init__(self, model_dir: str):
        model_dir = os.path.expanduser(model_dir)
        paths = {name: os.path.join(model_dir, name) for name in (ONNX_FILE, META_FILE)}
        for path in paths.values():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"no ONNX model at {model_dir!r}: {path!r} is missing "
                                        "(write one with python -m grcnn_jax.export --format "
                                        "onnx --out DIR)")
        try:
            with open(paths[META_FILE], encoding="utf-8") as f:
                self.meta = json.load(f)
            self.charset = Charset(self.meta["charset"])
            self.shape = (int(self.meta["image_height"]), int(self.meta["image_width"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{paths[META_FILE]!r} is not an ONNX reader's meta.json "
                             f"({type(e).__name__}: {e})") from None
        try:
            self._session = session(paths[ONNX_FILE])
        except ImportError:                 # onnxruntime missing: its own message
            raise
        except Exception as e:  # noqa: BLE001 -- onnxruntime's load errors: not a model
            raise ValueError(f"{paths[ONNX_FILE]!r} does not load as an ONNX model "
                             f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
        self.lm = load_in_folder(model_dir, self.meta.get("lm"))

    def prepare(self, image: Any) -> np.ndarray:
        """An image (a path, encoded bytes, or an array) -> uint8 [H, W], as the loader does."""
        return self.prepare_views(image, turn=False)[0]

    def prepare_views(self, image: Any, turn: bool = True, unbend: bool = False
                      ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``prepare``, with ``turn`` the image's turned views (uint8 [2, H, W], None for
        an image that is not tall: ``preprocess.turned_views``) and with ``unbend`` the crop
        to unbend (``preprocess.source_image``; else None)."""
        from grcnn_jax.data.preprocess import prepare_image, prepare_views

        if isinstance(image, (str, os.PathLike)):
            with open(image, "rb") as f:
                image = f.read()
        how = (*self.shape, bool(self.meta.get("keep_aspect", False)),
               self.meta.get("grayscale", "luma"))
        if not (turn or unbend):
            return prepare_image(image, *how), None, None
        image, turned, source = prepare_views(image, *how, unbend=unbend)
        return image, turned if turn else None, source

    def __call__(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 [N, H, W] prepared images -> float32 [N, frames, classes] logits."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != self.shape:
            raise ValueError(f"images must be uint8 [N, {self.shape[0]}, {self.shape[1]}], got "
                             f"{images.dtype} {list(images.shape)}")
        out = [self._session.run(None, {"images": images[i:i + batch_size]})[0]
               for i in range(0, len(images), batch_size)]
        if not out:
            return np.zeros((0, self.meta["frames"], self.meta["num_classes"]), np.float32)
        return np.concatenate(out)

    def read(self, images: Sequence[Any], lexicon: Sequence[str] | None = None,
             batch_size: int = 64, beam_width: int = 1, turn: bool = True,
             turned: Sequence[np.ndarray | None] | None = None,
             frame: bool = True, unbend: bool = True,
             sources: Sequence[np.ndarray | None] | None = None) -> list[Reading]:
        """Images (paths, bytes, arrays, or prepared uint8 [H, W]) -> one ``Reading`` each;
        ``beam_width`` > 1 reads with a prefix beam search instead of greedy CTC (the text's
        confidence is still its exact probability). With ``turn``, tall images are also
        read turned (their views made here, or ``turned[k]`` for an image given prepared);
        with ``frame``, the other images whose greedy reading has p < ``UNSURE`` are also
        read framed tighter and looser, keeping the reading ranked first (``LmDecoder.rank``
        with a language model; without one, the most probable greedy reading); with
        ``unbend`` too, those still unsure are read unbent along arcs
        (``preprocess.unbent_views`` of the crop, or of ``sources[k]`` for an image given
        prepared: none without), an unbent reading kept where ``ctc_host.kept_unbent``
        says (its lexicon word is the one read before)."""
        def ready(im: Any) -> bool:
            return isinstance(im, np.ndarray) and im.dtype == np.uint8 and im.shape == self.shape

        unbend = unbend and frame
        prepared = np.zeros((len(images), *self.shape), np.uint8)
        views: list[tuple[int, np.ndarray]] = []        # (image, its turned views)
        kept: list[np.ndarray | None] = [None] * len(images)      # crops to unbend
        for k, im in enumerate(images):
            if ready(im):
                prepared[k], extra = im, turned[k] if turned is not None else None
                kept[k] = sources[k] if sources is not None and unbend else None
            else:
                prepared[k], extra, kept[k] = self.prepare_views(im, turn, unbend)
            if turn and extra is not None:
                views.append((k, extra))
        everything = np.concatenate([prepared] + [v for _, v in views]) if views else prepared
        log_probs = log_softmax(self(everything, batch_size))
        n, chosen = len(images), [None] * len(images)
        for j, (k, _) in enumerate(views):        # each tall image: the view read best
            first = n + 2 * j
            best = best_view(log_probs[[k, first, first + 1]])
            if best:
                log_probs[k] = log_probs[first + best - 1]
                chosen[k] = TURNS[best - 1]
        log_probs = log_probs[:n]
        tall = {k for k, _ in views}
        greedy = collapse(log_probs.argmax(-1))
        unsure = []
        if frame:
            greedy_log_p = ctc_log_likelihoods(log_probs, greedy)
            unsure = [k for k in range(n) if k not in tall and greedy_log_p[k] < np.log(UNSURE)]
        if unsure:                                # their framed views, after the images
            framed = log_softmax(self(np.concatenate([framed_views(prepared[k])
                                                      for k in unsure]), batch_size))
            log_probs = np.concatenate([log_probs, framed])
            greedy += collapse(framed.argmax(-1))
        forms = None if lexicon is None else lexicon_forms(
            lexicon, self.charset, int(self.meta["frames"]), bool(self.meta.get("lowercase", True)))
        readings = []
        decoder = None
        if self.lm is not None:
            decoder = LmDecoder(self.lm, self.charset, beam_width=beam_width)
        best = _readings(log_probs, decoder, beam_width)
        # Each reading settled (the views' too); the views are ranked as read.
        settled, _ = settle.reading(log_probs, best, greedy, self.charset)
        ranked = best if decoder else greedy
        framing: list[str | None] = [None] * n
        framed_pick: dict[int, tuple[int, float]] = {}      # image -> (its row, its score)
        for j, k in enumerate(unsure):            # each unsure image: the reading ranked first
            rows = [k, n + 2 * j, n + 2 * j + 1]
            scores = view_scores(log_probs[rows], [ranked[r] for r in rows],
                                 decoder.rank if decoder else None)
            pick = int(np.argmax(scores))
            framed_pick[k] = rows[pick], scores[pick]
            if pick:
                log_probs[k], settled[k], framing[k] = (log_probs[rows[pick]],
                                                        settled[rows[pick]], FRAMES[pick - 1])
        unbending: list[float | None] = [None] * n
        as_framed = log_probs[:n].copy()          # a lexicon's word is picked from these
        if unbend and unsure:
            self._unbend(framed_pick, kept, log_probs, greedy, settled, decoder, beam_width,
                         unbending, batch_size)
        best = settled[:n]
        confidence = np.exp(ctc_log_likelihoods(log_probs[:n], best))
        for lp, ids, p, turn_k, frame_k, arc in zip(as_framed, best, confidence, chosen,
                                                    framing, unbending):
            reading = Reading(self.charset.decode(ids), float(p), turned=turn_k, framed=frame_k,
                              unbent=arc)
            if forms:                       # ties go to the earlier word, as recognize's
                scores = ctc_log_likelihoods(np.broadcast_to(lp, (len(forms), *lp.shape)),
                                             [f_ids for _, f_ids in forms])
                top = int(np.argmax(scores))
                reading.lexicon_text = forms[top][0]
                reading.lexicon_confidence = float(np.exp(scores[top]))
            readings.append(reading)
        return readings

    def _unbend(self, framed_pick: dict[int, tuple[int, float]],
                sources: Sequence[np.ndarray | None], log_probs: np.ndarray, greedy: list,
                settled: list, decoder: LmDecoder | None, beam_width: int,
                unbending: list, batch_size: int) -> None:
        """``read``'s unbending: of the framed images (``framed_pick``: image -> the row of
        the view chosen and its reading's score), those whose chosen view's greedy reading
        is still unsure and that have a source are read unbent; where ``kept_unbent`` says,
        an unbent view's reading takes the image's place: ``log_probs[k]``, ``settled[k]``
        and ``unbending[k]`` (its arc) are set."""
        how = (*self.shape, bool(self.meta.get("keep_aspect", False)))
        framed = [k for k in framed_pick if sources[k] is not None]
        if not framed:
            return
        chosen = [framed_pick[k][0] for k in framed]
        still = ctc_log_likelihoods(log_probs[chosen], [greedy[r] for r in chosen]) < np.log(UNSURE)
        todo, stacks = [], []
        for k in (k for k, unsure in zip(framed, still) if unsure):
            views, angles = unbent_views(sources[k], *how)
            if len(views):
                todo.append((k, angles))
                stacks.append(views)
        if not todo:
            return
        lp = log_softmax(self(np.concatenate(stacks), batch_size))
        first = collapse(lp.argmax(-1))
        found = _readings(lp, decoder, beam_width)
        done, _ = settle.reading(lp, found, first, self.charset)
        scores = view_scores(lp, found if decoder else first, decoder.rank if decoder else None)
        start = 0
        for k, angles in todo:
            rows = list(range(start, start + len(angles)))
            start += len(angles)
            pick = kept_unbent((self.charset.decode(settled[k]), framed_pick[k][1]),
                               [(self.charset.decode(done[i]), scores[i]) for i in rows])
            if pick is not None:
                i = rows[pick]
                log_probs[k], settled[k], unbending[k] = lp[i], done[i], angles[pick]
