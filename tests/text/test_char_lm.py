"""The character language model: a distribution, saved and loaded whole, fused into the CTC
beam search where the image leaves the reading open, and carried by reader folders."""

import math
import os
import shutil

import numpy as np
import pytest

from grcnn_jax.text import ctc_host
from grcnn_jax.inference.lm_files import choose_lm, load_in_folder, save_in_folder
from grcnn_jax.text.char_lm import END, CharLM, LmDecoder, LmError, Settings
from grcnn_jax.text.charset import Charset

WORDS = ["school", "schools", "scholar", "shop", "shoe", "chord", "sale", "salt", "beauty"]
CHARSET = Charset("abcdefghijklmnopqrstuvwxyz")


@pytest.fixture(scope="module")
def lm():
    return CharLM.train([(w, 1.0) for w in WORDS], order=4)


def test_every_context_gives_a_distribution(lm):
    alphabet = sorted(set("".join(WORDS))) + [END]
    for history in (lm.start, lm.start + "s", lm.start + "sch", lm.start + "zzq", "xyzw"):
        total = sum(math.exp(lm.score(history, c)) for c in alphabet)
        total += math.exp(lm.score(history, "9"))        # the share of a character never seen
        assert total == pytest.approx(1.0, abs=1e-9), history


def test_trained_spellings_are_more_likely(lm):
    assert lm.word_log_prob("school") > lm.word_log_prob("scrool") + 3
    assert lm.word_log_prob("SALE") == pytest.approx(lm.word_log_prob("sale"))   # case-folded
    assert lm.word_log_prob("sale") > lm.word_log_prob("sal")          # the end is scored


def test_save_and_load_keep_every_score_and_setting(lm, tmp_path):
    lm.settings = Settings(weight=0.7, length_bonus=0.2, beam_width=4, confident=0.8,
                           min_prob=1e-3)
    path = str(tmp_path / "lm.npz")
    lm.save(path)
    again = CharLM.load(path)
    assert again.settings == lm.settings and again.order == lm.order
    for word in ("school", "scrool", "qqq"):
        assert again.word_log_prob(word) == pytest.approx(lm.word_log_prob(word), abs=1e-5)
    lm.settings = Settings()


def test_unusable_files_are_refused_naming_them(tmp_path):
    with pytest.raises(LmError, match="nothere.npz"):
        CharLM.load(str(tmp_path / "nothere.npz"))
    bad = tmp_path / "bad.npz"
    bad.write_text("not a model")
    with pytest.raises(LmError, match="bad.npz"):
        CharLM.load(str(bad))
    with pytest.raises(LmError, match="--lm"):
        choose_lm(str(bad), None)
    with pytest.raises(LmError, match="no text"):
        CharLM.train([], order=3)


def _frames(spelling: list[dict[str, float]], charset: Charset) -> np.ndarray:
    """[T, C] log-probabilities: each character's frame, then a blank frame."""
    rows = []
    for probs in spelling:
        row = np.full(charset.num_classes, 1e-6)
        for c, p in probs.items():
            row[charset.encode(c)[0]] = p
        row[0] = max(1e-6, 1 - sum(probs.values()))
        rows += [row, np.eye(charset.num_classes)[0] * (1 - 1e-6 * 26) + 1e-6]
    return np.log(np.asarray(rows) / np.sum(rows, axis=-1, keepdims=True))


def test_the_model_settles_what_the_image_leaves_open(lm):
    # 'h' or 'r' at the third character, the image slightly for 'r': 'scrool'.
    lp = _frames([{"s": 1}, {"c": 1}, {"r": 0.55, "h": 0.45}, {"o": 1}, {"o": 1}, {"l": 1}],
                 CHARSET)
    greedy = CHARSET.decode(ctc_host.collapse(lp.argmax(-1)[None])[0])
    assert greedy == "scrool"
    decoder = LmDecoder(lm, CHARSET, Settings(weight=0.5, length_bonus=0.0, confident=1.01))
    (ids, log_p), = decoder.read(lp[None])
    assert CHARSET.decode(ids) == "school"
    assert log_p == pytest.approx(ctc_host.ctc_log_likelihood(lp, ids))   # CTC's own, exact
    # A reader's --beam_width replaces the model's beam width, and only that.
    wider = LmDecoder(lm, CHARSET, beam_width=4)
    assert wider.settings == Settings(beam_width=4) and LmDecoder(lm, CHARSET).settings == lm.settings
    # A confident greedy reading is kept without a search.
    confident = LmDecoder(lm, CHARSET, Settings(weight=0.5, length_bonus=0.0, confident=0.5))
    assert CHARSET.decode(confident.read(lp[None])[0][0]) == "scrool"


def test_weight_zero_is_the_plain_beam_search(lm):
    rng = np.random.default_rng(0)
    lp = ctc_host.log_softmax(rng.normal(0, 2, (12, CHARSET.num_classes)))
    fused = LmDecoder(lm, CHARSET, Settings(weight=0.0, length_bonus=0.0))
    plain = ctc_host.prefix_beam_search(lp, 6, math.log(1e-3))
    with_lm = ctc_host.prefix_beam_search(lp, 6, math.log(1e-3), fusion=fused)
    assert [p for p, _ in with_lm] == [p for p, _ in plain]
    np.testing.assert_allclose([s for _, s in with_lm], [s for _, s in plain])


def test_a_reader_folder_carries_its_model_and_refuses_a_damaged_one(lm, tmp_path):
    from grcnn_jax.inference import pretrained
    from grcnn_jax.inference.load import with_lm

    entry = save_in_folder(lm, str(tmp_path))
    assert load_in_folder(str(tmp_path), entry).word_log_prob("shop") == pytest.approx(
        lm.word_log_prob("shop"), abs=1e-5)
    assert load_in_folder(str(tmp_path), None) is None

    shipped = pretrained.load()
    assert isinstance(shipped.lm, CharLM)                # the shipped reader reads with one
    assert with_lm(shipped, "none").lm is None and with_lm(shipped, None).lm is shipped.lm
    folder = tmp_path / "reader"
    shutil.copytree(pretrained.ASSET_DIR, folder)
    path = folder / "lm.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(pretrained.PretrainedError, match="lm.npz.*checksum"):
        pretrained.load(str(folder))
    os.remove(path)
    with pytest.raises(pretrained.PretrainedError, match="lm.npz.*missing"):
        pretrained.load(str(folder))


def test_the_command_builds_a_model_from_label_files(tmp_path):
    from grcnn_jax.cli import lm as lm_cli

    labels = tmp_path / "train.tsv"
    labels.write_text("a/1.jpg\tSCHOOL\na/2.jpg\tSale\nshop\n")
    out = tmp_path / "lm.npz"
    assert lm_cli.main(["--texts", str(labels), "--nowords", "--order", "3",
                        "--weight", "0.3", "--out", str(out)]) == 0
    built = CharLM.load(str(out))
    assert built.settings.weight == 0.3 and built.order == 3
    assert built.word_log_prob("school") > built.word_log_prob("schoal")
    with pytest.raises(SystemExit) as e:
        lm_cli.main(["--texts", str(tmp_path / "missing.lmdb"), "--out", str(out)])
    message = str(e.value.code)
    assert message.startswith("FATAL") and "\n" not in message and "missing.lmdb" in message
