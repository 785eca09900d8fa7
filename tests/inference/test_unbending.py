"""Readings still unsure after framing read unbent: the views (``preprocess.unbend_arc``,
``unbent_views``, ``source_image``), the choice (``ctc_host.kept_unbent``) and every reader
that reads them (the Evaluator's predict and evaluate, the loader's sources, the ONNX reader,
the demo), on a stand-in model that reads a word surely only where it is written straight."""

import io

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from helpers import stand_in_onnx_reader

from grcnn_jax.data.preprocess import (SOURCE_HEIGHT, UNBEND_ANGLES, UNSURE, Preprocess,
                                       bend_arc, framed_views, resize, source_image,
                                       unbend_arc, unbent_views)
from grcnn_jax.text import ctc_host
from grcnn_jax.text.char_lm import CharLM
from grcnn_jax.text.charset import Charset

H, W, T = 32, 100, 6
CHARSET = Charset()
ARC = 1.4                                      # one of UNBEND_ANGLES: the word's bend


def _frames(text: str, peak: float) -> np.ndarray:
    """[T, C] logits spelling ``text`` one character a frame (blanks after)."""
    logits = np.zeros((T, CHARSET.num_classes), np.float32)
    ids = CHARSET.encode(text) + [0] * (T - len(text))
    logits[np.arange(T), ids] = peak
    return logits


def _straight(images) -> jnp.ndarray:
    """Whether a dark bar runs straight along each prepared image's middle row."""
    row = jnp.asarray(images)[:, H // 2]
    return (row[:, 12] < 128) & (row[:, 50] < 128) & (row[:, 88] < 128)


class StraightModel:
    """Reads ``word`` surely where a bar runs straight along the image's middle row, else
    'no' unsurely (p < UNSURE)."""

    def __init__(self, word: str = "ok"):
        self.sure, self.unsure = _frames(word, 12.0), _frames("no", 2.0)

    def apply(self, variables, images, train=False):
        return jnp.where(_straight(images)[:, None, None], self.sure, self.unsure)


def _word(height: int = 40, width: int = 200) -> np.ndarray:
    """uint8 [height, width]: a dark bar along the middle row, as a word's strokes."""
    image = np.full((height, width), 255, np.uint8)
    image[height * 2 // 5:height * 3 // 5, width // 25:width - width // 25] = 0
    return image


BENT = bend_arc(_word(), ARC)                  # the word along an arc: the source crop


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "PNG")
    return buf.getvalue()


def _evaluator(unbend: bool, lm=None, model=None, batch_size: int = 4):
    from grcnn_jax.assemble import make_mesh
    from grcnn_jax.evaluation.evaluator import Evaluator

    return Evaluator(model or StraightModel(), CHARSET, make_mesh(), batch_size,
                     confidence=True, lm=lm, frame=True, unbend=unbend)


def test_the_stand_in_reads_the_bent_word_unsurely_and_only_its_unbent_view_surely():
    prepared = resize(BENT, H, W, False)
    views, angles = unbent_views(source_image(BENT), H, W, False)
    assert ARC in angles and set(angles) <= set(UNBEND_ANGLES)
    assert views.shape == (len(angles), H, W) and views.dtype == np.uint8
    assert not _straight(prepared[None])[0] and not _straight(framed_views(prepared)).any()
    assert list(np.asarray(_straight(views))) == [a == ARC for a in angles]
    lp = ctc_host.log_softmax(np.stack([_frames("no", 2.0), _frames("ok", 12.0)]))
    unsure, sure = (ctc_host.ctc_log_likelihood(x, CHARSET.encode(t))
                    for x, t in zip(lp, ["no", "ok"]))
    assert unsure < np.log(UNSURE) and sure - unsure > ctc_host.UNBEND_MARGIN


def test_unbend_arc_undoes_bend_arc():
    word = _word()
    word[16:24, (np.arange(200) // 6) % 2 == 1] = 160         # strokes 6 px wide along it
    for angle in (0.8, -0.8, 1.4, -1.9):
        back = resize(unbend_arc(bend_arc(word, angle), angle), *word.shape, False)
        wrong = resize(unbend_arc(bend_arc(word, angle), -angle), *word.shape, False)
        err = np.abs(back.astype(int) - word).mean()
        assert err < 8 and np.abs(wrong.astype(int) - word).mean() > 5 * err
    assert unbend_arc(word, 0.0) is word
    assert unbend_arc(np.zeros((10, 200), np.uint8), 2.5) is None   # no room for that arc
    up = unbend_arc(BENT, -ARC)                                # the circle above: flipped
    np.testing.assert_array_equal(up, unbend_arc(BENT[::-1], ARC)[::-1])


def test_source_image_keeps_small_crops_and_shrinks_tall_ones():
    small = _word(40, 200)
    assert source_image(small) is small
    tall = _word(4 * SOURCE_HEIGHT, 800)
    kept = source_image(tall)
    assert kept.shape == (SOURCE_HEIGHT, 200) and kept.dtype == np.uint8
    flat = np.zeros((4, 400), np.uint8)                        # no arc fits: no views
    views, angles = unbent_views(flat, H, W, False)
    assert views.shape == (0, H, W) and angles == ()


def test_kept_unbent_wants_a_clear_lead_and_no_fewer_letters():
    m = ctc_host.UNBEND_MARGIN
    assert ctc_host.kept_unbent(("no", -3.0), [("ok", -3.0 + m + 0.1)]) == 0
    assert ctc_host.kept_unbent(("no", -3.0), [("ok", -3.0 + m - 0.1)]) is None
    # The best of those long enough; a shorter one never, however probable.
    assert ctc_host.kept_unbent(("no", -9.0), [("o", 0.0), ("ok!", -5.0), ("on", -2.0)]) == 2
    assert ctc_host.kept_unbent(("no", -9.0), [("o", 0.0)]) is None
    assert ctc_host.kept_unbent(("no", -9.0), []) is None
    assert ctc_host.kept_unbent(("$5", -9.0), [("S5", -1.0), ("55", -1.0)]) == 0   # ties


@pytest.mark.parametrize("with_lm", [False, True])
def test_predict_reads_images_still_unsure_unbent(with_lm):
    lm = CharLM.train([("ok", 1.0), ("no", 1.0)], order=3) if with_lm else None
    straight = resize(_word(), H, W, False)
    images = np.stack([resize(BENT, H, W, False), straight, resize(BENT, H, W, False)])
    sources = [source_image(BENT), source_image(_word()), None]   # the last: none to unbend
    read = _evaluator(True, lm).predict({}, {}, images, sources=sources)
    assert [(p.text, p.unbent, p.framed) for p in read] == [("ok", ARC, None),
                                                             ("ok", None, None),
                                                             ("no", None, None)]
    assert read[0].confidence > UNSURE
    plain = _evaluator(False, lm).predict({}, {}, images, sources=sources)
    assert [p.text for p in plain] == ["no", "ok", "no"]
    # An unbent reading with fewer letters stays unread; so does one read without sources.
    short = _evaluator(True, lm, StraightModel("o")).predict({}, {}, images, sources=sources)
    assert [p.text for p in short] == ["no", "o", "no"]
    assert [p.text for p in _evaluator(True, lm).predict({}, {}, images)] == ["no", "ok", "no"]


def test_an_unbent_reading_keeps_the_lexicon_word_read_before():
    images = np.stack([resize(BENT, H, W, False)])
    read = _evaluator(True).predict({}, {}, images, [["no", "ok"]], sources=[source_image(BENT)])
    assert (read[0].text, read[0].lexicon_text) == ("ok", "no")


def test_evaluate_unbends_the_loaders_sources_and_counts_the_reading():
    from grcnn_jax.data.pipeline import collate

    preprocess = Preprocess(CHARSET, H, W, max_label_length=T, max_frames=T, unbend=True)
    examples = [preprocess({"key": k, "text": "ok", "image": _png(im)})
                for k, im in (("bent", BENT), ("straight", _word()))]
    assert examples[0]["source"].shape == BENT.shape
    assert "source" not in Preprocess(CHARSET, H, W)({"key": "k", "text": "ok",
                                                       "image": _png(BENT)})
    batch = collate(examples, 4, [])
    assert [s.shape for s in batch["meta"]["source"]] == [BENT.shape, _word().shape]
    rows = []
    unbent = _evaluator(True).evaluate({}, {}, [batch], predictions=rows)
    framed = _evaluator(False).evaluate({}, {}, [batch])
    assert unbent["count"] == framed["count"] == 2
    assert unbent["word_accuracy"] == 1.0 and framed["word_accuracy"] == 0.5
    assert [r["prediction"] for r in rows] == ["ok", "ok"]


def test_the_onnx_reader_and_the_demo_read_images_still_unsure_unbent():
    from grcnn_jax.demo.reading import read_word

    reader = stand_in_onnx_reader(StraightModel(), CHARSET, H, W, T)
    files = [_png(BENT), _png(_word())]
    read = reader.read(files)
    assert [(r.text, r.unbent) for r in read] == [("ok", ARC), ("ok", None)]
    assert [r.text for r in reader.read(files, unbend=False)] == ["no", "ok"]
    assert [r.text for r in reader.read(files, frame=False)] == ["no", "ok"]
    prepared = [reader.prepare(f) for f in files]
    assert reader.read(prepared)[0].text == "no"                       # no source given
    assert reader.read(prepared, sources=[source_image(BENT), None])[0].text == "ok"
    assert reader.read(files, lexicon=["no", "ok"])[0].lexicon_text == "no"
    reading = read_word(reader, _png(BENT))
    assert (reading.text, reading.unbent) == ("ok", ARC)
    assert _straight(reading.image[None])[0]                           # the view it read
    assert read_word(reader, _png(_word())).unbent is None
