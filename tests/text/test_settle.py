"""Settling a chosen reading (``text.settle``): its end marks by CTC against the greedy
reading's, its mixed case by log p + the case patterns' prior, and every reader applying
both (the Evaluator's predict, the ONNX reader, the demo) on stand-in models: one that reads
'oUt' unsure of the U, one whose '.' a language model without marks drops."""

import io
import string

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from helpers import stand_in_onnx_reader

from grcnn_jax.text import ctc_host, settle
from grcnn_jax.text.char_lm import CharLM, LmDecoder
from grcnn_jax.text.charset import Charset

CASED = Charset(string.digits + string.ascii_lowercase + string.ascii_uppercase)
MARKED = Charset(string.digits + string.ascii_lowercase + string.punctuation)
H, W, T = 32, 100, 6


def _logits(text: str, second: dict[int, tuple[str, float]] | None = None,
            charset: Charset = CASED, peak: float = 12.0) -> np.ndarray:
    """[T, C] logits spelling ``text`` one character a frame (blanks after), each frame's
    class at ``peak`` above the rest; ``second[f] = (c, gap)``: frame f's runner-up c,
    ``gap`` below its class ('' for the blank)."""
    logits = np.zeros((T, charset.num_classes), np.float32)
    ids = charset.encode(text) + [0] * (T - len(text))
    logits[np.arange(T), ids] = peak
    for f, (c, gap) in (second or {}).items():          # c '': the blank
        logits[f, charset.encode(c)[0] if c else 0] = peak - gap
    return logits


@pytest.mark.parametrize("text, expected", [
    ("exit", "lower"), ("EXIT", "upper"), ("Exit", "title"), ("oUt", "mixed"),
    ("iPad", "mixed"), ("$9.90", None), ("A", None), ("Baby's", "title"), ("3D", None),
    ("BT-Pusher", "mixed"), ("e-mail", "lower")])
def test_pattern(text, expected):
    assert settle.pattern(text) == expected


def test_title_case_touches_letters_only():
    assert settle.title_case("oUt") == "Out"
    assert settle.title_case("3rd-AVE.") == "3Rd-ave."
    assert settle.title_case("") == ""


def test_an_unsure_mixed_reading_takes_the_likeliest_pattern():
    # The U read at 0.6 against u's 0.4 (the other letters sure): 'out' is ~0.4 nats less
    # likely than 'oUt', and lower case ~2.3 nats more probable than mixed.
    unsure = _logits("oUt", {1: ("u", np.log(1.5))})
    log_probs = ctc_host.log_softmax(unsure[None])
    readings, log_p = settle.case(unsure[None], [CASED.encode("oUt")], CASED, [-0.6])
    assert CASED.decode(readings[0]) == "out"
    assert log_p[0] == pytest.approx(ctc_host.ctc_log_likelihood(log_probs[0],
                                                                 CASED.encode("out")))
    assert log_p[0] < ctc_host.ctc_log_likelihood(log_probs[0], CASED.encode("oUt"))
    # The same case gap against the prior in the other direction: 'oUT' reads upper.
    assert CASED.decode(settle.case(_logits("oUT", {0: ("O", np.log(1.5))})[None],
                                      [CASED.encode("oUT")], CASED)[0][0]) == "OUT"


def test_a_sure_mixed_reading_and_a_regular_one_stay():
    sure = _logits("iPad")                        # every frame at 12 nats over the rest
    unsure_regular = _logits("Out", {0: ("o", 0.1)})
    readings, log_p = settle.case(np.stack([sure, unsure_regular]),
                                    [CASED.encode("iPad"), CASED.encode("Out")], CASED,
                                    [-0.1, -0.7])
    assert [CASED.decode(r) for r in readings] == ["iPad", "Out"]
    assert log_p == [-0.1, -0.7]                  # unchanged readings keep the caller's


def test_a_lowercase_charset_and_no_mixed_reading_change_nothing():
    lower = Charset()
    readings = [lower.encode("out")]
    assert settle.case(_logits("out", charset=lower)[None], readings, lower) == (
        [lower.encode("out")], None)

    def never():
        raise AssertionError("the scores are fetched only for a mixed reading")

    assert settle.case(never, [CASED.encode("EXIT"), CASED.encode("7")], CASED)[0] == [
        CASED.encode("EXIT"), CASED.encode("7")]


# 'gate.' with the g at 0.73 (q the runner-up) and the '.' at 0.82 (the blank the
# runner-up): unsure enough to be searched, and 'gate' 1.5 nats less probable by CTC.
GATE = _logits("gate.", {0: ("q", 1.0), 4: ("", 1.5)}, charset=MARKED)


def _ll(logits: np.ndarray, text: str, charset: Charset = MARKED) -> float:
    return ctc_host.ctc_log_likelihood(ctc_host.log_softmax(logits), charset.encode(text))


def test_end_marks_the_network_reads_come_back():
    lead = _logits('"gate', {0: ("", 1.5)}, charset=MARKED)
    readings, log_p = settle.end_marks(np.stack([GATE, lead]),
                                       [MARKED.encode("gate"), MARKED.encode("gate")],
                                       [MARKED.encode("gate."), MARKED.encode('"gate')],
                                       MARKED, [-2.0, -2.0])
    assert [MARKED.decode(r) for r in readings] == ["gate.", '"gate']
    assert log_p == pytest.approx([_ll(GATE, "gate."), _ll(lead, '"gate')])
    assert _ll(GATE, "gate.") > _ll(GATE, "gate")


def test_end_marks_do_not_add_a_mark_the_letters_took():
    # The greedy reading's '!' is the search's l (one frame): 'gatel!' needs a frame more.
    shared = _logits("gate!", {4: ("l", 1.0)}, charset=MARKED)
    readings, _ = settle.end_marks(shared[None], [MARKED.encode("gatel")],
                                   [MARKED.encode("gate!")], MARKED)
    assert MARKED.decode(readings[0]) == "gatel"


def test_end_marks_leave_alike_ends_and_marks_alone_unread():
    def never():
        raise AssertionError("the scores are fetched only where the ends differ")

    same = [MARKED.encode("gate."), MARKED.encode("..."), MARKED.encode("gate")]
    greedy = [MARKED.encode("gale."), MARKED.encode("."), MARKED.encode("gate")]
    assert settle.end_marks(never, same, greedy, MARKED) == (same, None)


def test_reading_fetches_the_scores_once():
    both = Charset(string.digits + string.ascii_letters + string.punctuation)
    oUt = _logits("oUt", {1: ("u", np.log(1.5))}, charset=both)
    gate = _logits("gate.", {0: ("q", 1.0), 4: ("", 1.5)}, charset=both)
    calls = []

    def fetch():
        calls.append(1)
        return np.stack([oUt, gate])

    readings, _ = settle.reading(fetch, [both.encode("oUt"), both.encode("gate")],
                                 [both.encode("oUt"), both.encode("gate.")], both)
    assert [both.decode(r) for r in readings] == ["out", "gate."]
    assert len(calls) == 1


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

    lm = CharLM.train([("out", 1.0), ("oat", 1.0)], order=3) if with_lm else None
    images = np.zeros((2, H, W), np.uint8)
    predicted = Evaluator(CasedModel(), CASED, make_mesh(), 2, confidence=True, lm=lm,
                          beam_width=beam_width).predict({}, {}, images)
    log_probs = ctc_host.log_softmax(CasedModel.logits)
    p_out = np.exp(ctc_host.ctc_log_likelihood(log_probs, CASED.encode("out")))
    assert [p.text for p in predicted] == ["out", "out"]
    assert predicted[0].confidence == pytest.approx(p_out, rel=1e-6)

    reader = stand_in_onnx_reader(CasedModel(), CASED, H, W, T, lm=lm, lowercase=False)
    read = reader.read(list(images), beam_width=beam_width)
    assert [(r.text, r.confidence) for r in read] == [("out", pytest.approx(p_out, rel=1e-6))] * 2
    buf = io.BytesIO()
    Image.fromarray(images[0]).save(buf, "PNG")
    assert read_word(reader, buf.getvalue(), beam_width=beam_width).text == "out"


class MarkedModel:
    """Reads 'gate.' (``GATE``) whatever the image."""

    def apply(self, variables, images, train=False):
        return jnp.broadcast_to(GATE, (images.shape[0], *GATE.shape))


def test_every_reader_keeps_the_mark_the_search_drops():
    from grcnn_jax.assemble import make_mesh
    from grcnn_jax.demo.reading import read_word
    from grcnn_jax.evaluation.evaluator import Evaluator

    lm = CharLM.train([("gate", 1.0), ("gale", 1.0), ("game", 1.0)], order=3)
    searched = LmDecoder(lm, MARKED).read(GATE[None])
    assert MARKED.decode(searched[0][0]) == "gate"          # the search alone drops it
    images = np.zeros((2, H, W), np.uint8)
    predicted = Evaluator(MarkedModel(), MARKED, make_mesh(), 2, confidence=True,
                          lm=lm).predict({}, {}, images)
    assert [p.text for p in predicted] == ["gate.", "gate."]
    assert predicted[0].confidence == pytest.approx(np.exp(_ll(GATE, "gate.")), rel=1e-6)

    reader = stand_in_onnx_reader(MarkedModel(), MARKED, H, W, T, lm=lm)
    assert [r.text for r in reader.read(list(images))] == ["gate.", "gate."]
    buf = io.BytesIO()
    Image.fromarray(images[0]).save(buf, "PNG")
    assert read_word(reader, buf.getvalue()).text == "gate."
