"""Unsure readings read framed: the views (``preprocess.framed_views``), the choice among
them (``ctc_host.ranked_view``, ``LmDecoder.rank``) and every reader that reads them (the
Evaluator's predict and evaluate, the ONNX reader, the demo), on a stand-in model whose
reading depends on how the image is framed."""

import io

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from helpers import stand_in_onnx_reader

from grcnn_jax.data.preprocess import FRAME_MARGIN, UNSURE, framed_views
from grcnn_jax.text import ctc_host
from grcnn_jax.text.char_lm import CharLM, LmDecoder, Settings
from grcnn_jax.text.charset import Charset

H, W, T = 32, 100, 6
CHARSET = Charset()


def _frames(text: str, peak: float) -> np.ndarray:
    """[T, C] logits spelling ``text`` one character a frame (blanks after), each frame's
    chosen class at ``peak`` above the others."""
    logits = np.zeros((T, CHARSET.num_classes), np.float32)
    ids = CHARSET.encode(text) + [0] * (T - len(text))
    logits[np.arange(T), ids] = peak
    return logits


class FramedModel:
    """Reads 'ok' surely where the image's top-left pixel is dark, else 'no' unsurely
    (p < UNSURE): a bright border cut off (the tighter view) makes it sure."""

    sure, unsure = _frames("ok", 12.0), _frames("no", 4.0)

    def apply(self, variables, images, train=False):
        bright = jnp.asarray(images)[:, 0, 0] >= 128
        return jnp.where(bright[:, None, None], self.unsure, self.sure)


def _bordered(inside: int = 0) -> np.ndarray:
    """uint8 [H, W]: ``inside`` within a bright border exactly the tighter view's margin."""
    image = np.full((H, W), 255, np.uint8)
    dy, dx = round(FRAME_MARGIN[0] * H), round(FRAME_MARGIN[1] * W)
    image[dy:H - dy, dx:W - dx] = inside
    return image


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def _evaluator(frame: bool, lm=None, batch_size: int = 4):
    from grcnn_jax.assemble import make_mesh
    from grcnn_jax.evaluation.evaluator import Evaluator

    return Evaluator(FramedModel(), CHARSET, make_mesh(), batch_size, confidence=True, lm=lm,
                     frame=frame)


def test_the_unsure_reading_is_unsure_and_the_sure_one_sure():
    lp = ctc_host.log_softmax(np.stack([FramedModel.unsure, FramedModel.sure]))
    p = [np.exp(ctc_host.ctc_log_likelihood(x, CHARSET.encode(t))) for x, t in
         zip(lp, ["no", "ok"])]
    assert p[0] < UNSURE < p[1]


def test_framed_views_cut_and_add_the_margin():
    image = _bordered()
    views = framed_views(image)
    assert views.shape == (2, H, W) and views.dtype == np.uint8
    tighter, looser = views
    assert (tighter == 0).all()                   # the border is cut off exactly
    # Looser: the image shrunk into the middle, its edge pixels repeated around it.
    assert (looser[:, :3] == 255).all() and (looser[:3] == 255).all()
    assert (looser[H // 2, W // 2 - 10:W // 2 + 10] == 0).all()
    assert (looser < 128).sum() < (image < 128).sum()
    # A tiny image keeps its own pixels as its tighter view rather than vanishing.
    tiny = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert framed_views(tiny)[0].shape == (2, 3)


def test_ranked_view_prefers_what_the_language_model_reads():
    lm = CharLM.train([("the", 1.0), ("then", 1.0), ("that", 1.0)], order=3,
                      settings=Settings())
    decoder = LmDecoder(lm, CHARSET)
    tbe, the = _frames("tbe", 3.0), _frames("the", 2.6)
    log_probs = ctc_host.log_softmax(np.stack([tbe, the]))
    readings = [CHARSET.encode("tbe"), CHARSET.encode("the")]
    assert ctc_host.ranked_view(log_probs, readings) == 0          # the surer CTC reading
    assert ctc_host.ranked_view(log_probs, readings, decoder.rank) == 1
    lp = ctc_host.ctc_log_likelihood(log_probs[1], readings[1])
    s = lm.settings
    assert decoder.rank(readings[1], lp) == pytest.approx(
        lp + s.weight * lm.word_log_prob("the") + 3 * s.length_bonus)
    assert ctc_host.ranked_view(log_probs[[0, 0]], readings[:1] * 2) == 0   # ties: the first


@pytest.mark.parametrize("with_lm", [False, True])
def test_predict_reads_unsure_images_framed(with_lm):
    lm = CharLM.train([("ok", 1.0), ("no", 1.0)], order=3) if with_lm else None
    # unsure, then read right tighter; sure as given; unsure in every framing (a tie: kept).
    images = np.stack([_bordered(), np.zeros((H, W), np.uint8), _bordered(255)] * 2)
    framed = _evaluator(True, lm).predict({}, {}, images)
    plain = _evaluator(False, lm).predict({}, {}, images)
    assert [p.text for p in plain] == ["no", "ok", "no"] * 2
    assert [p.text for p in framed] == ["ok", "ok", "no"] * 2
    assert [p.framed for p in framed] == ["tighter", None, None] * 2
    assert all(p.framed is None for p in plain)
    assert framed[0].confidence > UNSURE > plain[0].confidence
    assert framed[2].confidence == pytest.approx(plain[2].confidence)


def test_framing_ranks_searched_readings_by_their_exact_log_p():
    """evaluate's Evaluator (no ``confidence``) ranks framed views as recognize's does: by the
    exact p(reading | view), not the search's lower bound (the surviving alignments')."""
    from grcnn_jax.assemble import make_mesh
    from grcnn_jax.evaluation.evaluator import Evaluator

    lm = CharLM.train([("ok", 1.0), ("no", 1.0)], order=3)
    evaluator = Evaluator(FramedModel(), CHARSET, make_mesh(), 4, lm=lm, frame=True)
    read = evaluator.predict({}, {}, np.stack([_bordered(255)] * 2))   # searched in every view
    exact = ctc_host.ctc_log_likelihood(ctc_host.log_softmax(FramedModel.unsure),
                                        CHARSET.encode("no"))
    assert [p.text for p in read] == ["no", "no"]
    assert read[0].confidence == pytest.approx(np.exp(exact), rel=1e-9)


def test_evaluate_counts_the_framed_reading():
    images = np.stack([_bordered(), np.zeros((H, W), np.uint8), _bordered(255)])
    texts = ["ok", "ok", "ok"]
    labels = np.zeros((4, T), np.int32)
    paddings = np.ones((4, T), np.float32)
    for i, t in enumerate(texts):
        labels[i, :len(t)], paddings[i, :len(t)] = CHARSET.encode(t), 0.0
    batch = {"image": np.concatenate([images, np.zeros((1, H, W), np.uint8)]),
             "labels": labels, "label_paddings": paddings,
             "mask": np.array([1, 1, 1, 0], np.float32),
             "meta": {"text": texts, "key": ["a", "b", "c"]}}
    rows = []
    framed = _evaluator(True).evaluate({}, {}, [batch], predictions=rows)
    plain = _evaluator(False).evaluate({}, {}, [batch])
    assert framed["count"] == plain["count"] == 3
    assert framed["word_accuracy"] == pytest.approx(2 / 3)
    assert plain["word_accuracy"] == pytest.approx(1 / 3)
    assert [r["key"] for r in rows] == ["a", "b", "c"]
    assert [r["prediction"] for r in rows] == ["ok", "ok", "no"]


def test_the_onnx_reader_and_the_demo_read_unsure_images_framed():
    from grcnn_jax.demo.reading import read_word

    reader = stand_in_onnx_reader(FramedModel(), CHARSET, H, W, T)
    images = [_bordered(), np.zeros((H, W), np.uint8), _bordered(255)]
    read = reader.read(images)
    assert [(r.text, r.framed) for r in read] == [("ok", "tighter"), ("ok", None), ("no", None)]
    assert [r.text for r in reader.read(images, frame=False)] == ["no", "ok", "no"]
    assert read[0].confidence > UNSURE
    with_lexicon = reader.read(images, lexicon=["no", "ok"])
    assert [r.lexicon_text for r in with_lexicon] == ["ok", "ok", "no"]
    reading = read_word(reader, _png(_bordered()))
    assert (reading.text, reading.framed) == ("ok", "tighter")
    assert (reading.image == framed_views(_bordered())[0]).all()
    assert read_word(reader, _png(np.zeros((H, W), np.uint8))).framed is None
