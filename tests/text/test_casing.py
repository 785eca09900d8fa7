"""How readings are cased (``text.casing``): the patterns, the settling of mixed readings by
log p + the patterns' prior, and every reader applying it (the Evaluator's predict, the ONNX
reader, the demo) on a stand-in model that reads 'oUt' unsure of the U."""

import io
import string

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from grcnn_jax.text import casing, ctc_host
from grcnn_jax.text.char_lm import CharLM
from grcnn_jax.text.charset import Charset

CASED = Charset(string.digits + string.ascii_lowercase + string.ascii_uppercase)
H, W, T = 32, 100, 6


def _logits(text: str, second: dict[int, tuple[str, float]] | None = None,
            charset: Charset = CASED, peak: float = 12.0) -> np.ndarray:
    """[T, C] logits spelling ``text`` one character a frame (blanks after), each frame's
    class at ``peak`` above the rest; ``second[f] = (c, gap)``: frame f's runner-up c,
    ``gap`` below its class."""
    logits = np.zeros((T, charset.num_classes), np.float32)
    ids = charset.encode(text) + [0] * (T - len(text))
    logits[np.arange(T), ids] = peak
    for f, (c, gap) in (second or {}).items():
        logits[f, charset.encode(c)[0]] = peak - gap
    return logits


@pytest.mark.parametrize("text, expected", [
    ("exit", "lower"), ("EXIT", "upper"), ("Exit", "title"), ("oUt", "mixed"),
    ("iPad", "mixed"), ("$9.90", None), ("A", None), ("Baby's", "title"), ("3D", None),
    ("BT-Pusher", "mixed"), ("e-mail", "lower")])
def test_pattern(text, expected):
    assert casing.pattern(text) == expected


def test_title_case_touches_letters_only():
    assert casing.title_case("oUt") == "Out"
    assert casing.title_case("3rd-AVE.") == "3Rd-ave."
    assert casing.title_case("") == ""


def test_an_unsure_mixed_reading_takes_the_likeliest_pattern():
    # The U read at 0.6 against u's 0.4 (the other letters sure): 'out' is ~0.4 nats less
    # likely than 'oUt', and lower case ~2.3 nats more probable than mixed.
    unsure = _logits("oUt", {1: ("u", np.log(1.5))})
    log_probs = ctc_host.log_softmax(unsure[None])
    readings, log_p = casing.settle(unsure[None], [CASED.encode("oUt")], CASED, [-0.6])
    assert CASED.decode(readings[0]) == "out"
    assert log_p[0] == pytest.approx(ctc_host.ctc_log_likelihood(log_probs[0],
                                                                 CASED.encode("out")))
    assert log_p[0] < ctc_host.ctc_log_likelihood(log_probs[0], CASED.encode("oUt"))
    # The same case gap against the prior in the other direction: 'oUT' reads upper.
    assert CASED.decode(casing.settle(_logits("oUT", {0: ("O", np.log(1.5))})[None],
                                      [CASED.encode("oUT")], CASED)[0][0]) == "OUT"


def test_a_sure_mixed_reading_and_a_regular_one_stay():
    sure = _logits("iPad")                        # every frame at 12 nats over the rest
    unsure_regular = _logits("Out", {0: ("o", 0.1)})
    readings, log_p = casing.settle(np.stack([sure, unsure_regular]),
                                    [CASED.encode("iPad"), CASED.encode("Out")], CASED,
                                    [-0.1, -0.7])
    assert [CASED.decode(r) for r in readings] == ["iPad", "Out"]
    assert log_p == [-0.1, -0.7]                  # unchanged readings keep the caller's


def test_a_lowercase_charset_and_no_mixed_reading_change_nothing():
    lower = Charset()
    readings = [lower.encode("out")]
    assert casing.settle(_logits("out", charset=lower)[None], readings, lower) == (
        [lower.encode("out")], None)

    def never():
        raise AssertionError("the scores are fetched only for a mixed reading")

    assert casing.settle(never, [CASED.encode("EXIT"), CASED.encode("7")], CASED)[0] == [
        CASED.encode("EXIT"), CASED.encode("7")]


class CasedModel:
    """Reads 'oUt', the U at 0.6 against the u's 0.4, whatever the image."""

    logits = _logits("oUt", {1: ("u", np.log(1.5))})

    def apply(self, variables, images, train=False):
        return jnp.broadcast_to(self.logits, (images.shape[0], *self.logits.shape))


@pytest.mark.parametrize("with_lm", [False, True])
@pytest.mark.parametrize("beam_width", [1, 3])
def test_every_reader_settles_the_case(with_lm, beam_width):
    from grcnn_jax.assemble import make_mesh
    from grcnn_jax.demo.reading import read_word
    from grcnn_jax.evaluation.evaluator import Evaluator
    from grcnn_jax.inference.onnx_reader import OnnxReader

    lm = CharLM.train([("out", 1.0), ("oat", 1.0)], order=3) if with_lm else None
    images = np.zeros((2, H, W), np.uint8)
    predicted = Evaluator(CasedModel(), CASED, make_mesh(), 2, confidence=True, lm=lm,
                          beam_width=beam_width).predict({}, {}, images)
    log_probs = ctc_host.log_softmax(CasedModel.logits)
    p_out = np.exp(ctc_host.ctc_log_likelihood(log_probs, CASED.encode("out")))
    assert [p.text for p in predicted] == ["out", "out"]
    assert predicted[0].confidence == pytest.approx(p_out, rel=1e-6)

    class Stand(OnnxReader):                      # the ONNX reader's logic on CasedModel
        def __init__(self):
            self.shape, self.charset, self.lm = (H, W), CASED, lm
            self.meta = {"image_height": H, "image_width": W, "keep_aspect": False,
                         "grayscale": "luma", "frames": T, "lowercase": False}

        def __call__(self, images, batch_size=64):
            return np.asarray(CasedModel().apply(None, images))

    read = Stand().read(list(images), beam_width=beam_width)
    assert [(r.text, r.confidence) for r in read] == [("out", pytest.approx(p_out, rel=1e-6))] * 2
    buf = io.BytesIO()
    Image.fromarray(images[0]).save(buf, "PNG")
    assert read_word(Stand(), buf.getvalue(), beam_width=beam_width).text == "out"
