"""The synthetic word generator: determinism, the record contract, variety, legibility, fonts."""

import hashlib
import os
import pathlib
import pickle
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from grcnn_jax.cli import synth as synth_cli
from grcnn_jax.text.charset import Charset
from grcnn_jax.data.synth import fonts as fonts_lib
from grcnn_jax.data.synth import generator as synth
from grcnn_jax.data.synth import words as words_lib
from grcnn_jax.data.synth.generator import SynthWords

REPO = pathlib.Path(__file__).resolve().parents[2]
MPL_TTF = pathlib.Path(__import__("matplotlib").__file__).parent / "mpl-data" / "fonts" / "ttf"


@pytest.fixture(scope="module")
def renderings():
    src = SynthWords(300, seed=11)
    return src, [src.render(i) for i in range(300)]


def _digest(src, indices):
    return [hashlib.sha256(src[i]["image"].tobytes()).hexdigest() + src[i]["text"] for i in indices]


# --- determinism ----------------------------------------------------------------------------

def test_same_seed_and_index_give_the_same_sample():
    a, b = SynthWords(1000, seed=3), SynthWords(1000, seed=3)
    for i in (0, 1, 17, 999, 5):
        ra, rb = a[i], b[i]
        assert ra["key"] == rb["key"] == f"synth-3-{i}"
        assert ra["text"] == rb["text"]
        assert ra["image"].shape == rb["image"].shape
        assert ra["image"].tobytes() == rb["image"].tobytes()
    # Random access: order of access does not matter.
    assert _digest(a, [5, 17]) == _digest(b, [17, 5])[::-1]


def test_different_seeds_and_indices_differ():
    a, b = SynthWords(40, seed=0), SynthWords(40, seed=1)
    texts_a = [a[i]["text"] for i in range(40)]
    texts_b = [b[i]["text"] for i in range(40)]
    assert sum(x != y for x, y in zip(texts_a, texts_b)) >= 35
    assert len(set(texts_a)) >= 35
    assert a[0]["image"].tobytes() != b[0]["image"].tobytes()


def test_samples_do_not_depend_on_hash_seed_or_process():
    code = ("import sys; sys.path.insert(0, {repo!r}); import hashlib; "
            "from grcnn_jax.data.synth.generator import SynthWords; s = SynthWords(100, seed=9); "
            "print(' '.join(hashlib.sha256(s[i]['image'].tobytes()).hexdigest() + s[i]['text'] "
            "for i in range(0, 100, 11)))").format(repo=str(REPO))
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == _digest(SynthWords(100, seed=9), range(0, 100, 11))


def test_pickle_round_trip_is_small_and_gives_the_same_samples():
    src = SynthWords(500, seed=4)
    before = _digest(src, range(0, 500, 50))  # loads the word list and faces
    blob = pickle.dumps(src)
    assert len(blob) < 64_000, "the word list or font objects were pickled"
    again = pickle.loads(blob)
    assert len(again) == 500
    assert _digest(again, range(0, 500, 50)) == before


# --- the record contract --------------------------------------------------------------------

def test_records_follow_the_contract(renderings):
    src, _ = renderings
    charset = Charset()
    for i in range(0, 300, 3):
        rec = src[i]
        assert set(rec) == {"key", "image", "text"}
        img = rec["image"]
        assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3
        assert img.shape[0] == 32 and 16 <= img.shape[1] <= 320 and img.shape[2] == 3
        assert 1 <= len(rec["text"]) <= 23
        assert not charset.unknown_chars(rec["text"].lower()), rec["text"]


def test_height_max_chars_and_charset_are_honoured():
    src = SynthWords(60, seed=2, height=48, max_chars=4, charset=Charset("abc123"))
    for i in range(60):
        rec = src[i]
        assert rec["image"].shape[0] == 48 and 24 <= rec["image"].shape[1] <= 480
        assert 1 <= len(rec["text"]) <= 4
        assert set(rec["text"].lower()) <= set("abc123"), rec["text"]


def test_given_words_and_a_digits_only_charset():
    src = SynthWords(200, seed=5, words=["Hello", "wörld", "ok", "a-b"])
    texts = [src[i]["text"] for i in range(0, 200, 2)]
    assert src.words == ("hello", "ok")
    assert {t.lower() for t in texts} & {"hello", "ok"}
    assert not {t.lower() for t in texts} & {"wörld", "a-b"}
    digits = SynthWords(20, seed=5, charset=Charset("0123456789"))
    assert all(digits[i]["text"].isdigit() for i in range(20))


@pytest.mark.parametrize("i", [-1, -100, 50, 51, 10**9])
def test_index_out_of_range_raises(i):
    with pytest.raises(IndexError):
        SynthWords(50)[i]


def test_lengths():
    assert len(SynthWords(0)) == 0
    assert len(SynthWords(10**9)) == 10**9
    with pytest.raises(ValueError):
        SynthWords(-1)


# --- content and variety --------------------------------------------------------------------

def test_text_mix_of_words_strings_numbers_and_cases(renderings):
    src, rs = renderings
    vocab = set(src.words)
    texts = [r.text for r in rs]
    words = [t for t in texts if t.lower() in vocab]
    numbers = [t for t in texts if t.isdigit()]
    assert 0.55 <= len(words) / len(texts) <= 0.85
    assert 0.07 <= len(numbers) / len(texts) <= 0.25
    assert any(t.islower() for t in words)
    assert any(t.isupper() and len(t) > 1 for t in words)
    assert any(t[0].isupper() and t[1:].islower() and len(t) > 1 for t in words)


def test_a_charset_with_punctuation_gets_punctuated_texts_the_others_none():
    import string

    from grcnn_jax.config.defaults import CASED_CHARSET
    from grcnn_jax.data.synth.text import PUNCTUATED, punctuate, sample_text

    cased = SynthWords(2_000, seed=7, charset=Charset(CASED_CHARSET))
    plain = SynthWords(2_000, seed=7)
    texts = [sample_text(np.random.default_rng([7, i, 0]), cased.words, cased.alphabet, 23,
                         cased.punctuation) for i in range(2_000)]
    marked = [t for t in texts if any(c in string.punctuation for c in t)]
    assert abs(len(marked) / len(texts) - PUNCTUATED) < 0.06
    assert all(1 <= len(t) <= 23 and set(t) <= set(CASED_CHARSET) for t in texts)
    seen = set("".join(marked)) & set(string.punctuation)
    assert {".", ",", "!", "'", "-", "$", "%", ":", "/", "@", "(", ")", '"'} <= seen
    assert len(seen) >= 28, "".join(sorted(seen))            # the rare marks too
    assert any(t[0] == "$" and "." in t for t in marked)       # prices
    # An alphanumeric charset draws exactly the texts it always did: no mark, same stream.
    assert plain.punctuation == ""
    assert all(not set(plain[i]["text"]) & set(string.punctuation) for i in range(0, 2_000, 40))
    rng = np.random.default_rng(0)
    assert punctuate(rng, "x" * 23, [], "x", ".", 23) == "x" * 23   # too long: unchanged
    only_dot = [punctuate(np.random.default_rng(i), "word", ["park"], "adkoprw", ".", 23)
                for i in range(200)]
    assert all(set(t) <= set("adkoprw.") for t in only_dot) and any("." in t for t in only_dot)


def test_variety_of_fonts_polarity_widths_and_backgrounds(renderings):
    _, rs = renderings
    assert len({r.font for r in rs}) >= 40
    dark_text = [np.median(r.image[r.text_mask >= 0.75]) < np.median(r.image[r.background])
                 for r in rs if (r.text_mask >= 0.75).sum() >= 4]
    assert 0.3 <= np.mean(dark_text) <= 0.85
    widths = [r.image.shape[1] for r in rs]
    assert min(widths) <= 50 and max(widths) >= 200
    spreads = [float(np.std(r.image[r.background])) for r in rs]
    assert min(spreads) < 4 and max(spreads) > 20        # flat and busy backgrounds
    assert np.ptp([float(np.median(r.image[r.background])) for r in rs]) > 180


def test_every_sample_is_legible(renderings):
    # Recomputed here from the image and the text mask: the median text pixel stands out
    # from the background's median by a margin, and from the background's spread.
    _, rs = renderings
    for r in rs:
        text = r.image[r.text_mask >= 0.75]
        if text.size < 4:
            text = r.image[r.text_mask >= 0.5]
        bg = r.image[r.background]
        assert text.size >= 2 and bg.size >= 8, r.text
        contrast = abs(float(np.median(text)) - float(np.median(bg)))
        spread = (np.percentile(bg, 84) - np.percentile(bg, 16)) / 2
        assert contrast >= 36 and contrast >= 2.2 * spread, (r.text, contrast, spread, r.info)
    # The mask is where the text is: text pixels differ from background pixels.
    corr = [np.corrcoef(r.text_mask.ravel(), r.image.ravel())[0, 1] for r in rs[:50]]
    assert np.median(np.abs(corr)) > 0.5


def test_illegible_renderings_are_redrawn(renderings):
    src, rs = renderings
    redrawn = [i for i, r in enumerate(rs) if r.attempt > 0]
    assert redrawn, "no sample needed a second rendering: the check looks inactive"
    i = redrawn[0]
    first = synth.render(np.random.default_rng([src.seed, i, 1]), rs[i].text, src.fonts, 32)
    assert not first.legible
    assert rs[i].legible and rs[i].text == first.text


# --- words and fonts ------------------------------------------------------------------------

def test_word_list():
    words = words_lib.load_words()
    assert len(words) > 50_000
    assert list(words) == sorted(set(words))
    assert set("".join(words)) <= set(Charset().chars)
    assert {"the", "house", "street", "coffee"} <= set(words)
    assert all(len(w) <= 10 for w in words_lib.load_words(max_chars=10))
    upper_only = words_lib.load_words("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    assert upper_only and set("".join(upper_only)) <= set("abcdefghijklmnopqrstuvwxyz")


def test_font_check_accepts_text_faces_and_rejects_others():
    sans = MPL_TTF / "DejaVuSans.ttf"
    if not sans.exists():
        pytest.skip("matplotlib's DejaVu Sans is not installed")
    assert fonts_lib.check_font(str(sans)) is None
    # A face lacking glyphs of the charset: DejaVu has no CJK.
    assert "glyph" in fonts_lib.check_font(str(sans), "abc\u4e2d")
    assert str(sans) in fonts_lib.usable_fonts() or any(
        p.endswith("DejaVuSans.ttf") for p in fonts_lib.usable_fonts())


@pytest.mark.parametrize("name", ["DejaVuSansDisplay.ttf", "DejaVuSerifDisplay.ttf", "cmsy10.ttf",
                                  "cmex10.ttf", "cmmi10.ttf", "STIXSizOneSymReg.ttf",
                                  "LastResortHE-Regular.ttf"])
def test_font_check_drops_faces_without_usable_glyphs(name):
    path = MPL_TTF / name
    if not path.exists():
        pytest.skip(f"{name} is not installed")
    assert fonts_lib.check_font(str(path)) is not None
    assert str(path) not in fonts_lib.usable_fonts()


def test_usable_fonts_are_sorted_and_many():
    found = fonts_lib.usable_fonts()
    assert len(found) >= 20
    assert list(found) == sorted(found, key=lambda p: (os.path.basename(p).lower(), p))
    assert all(os.path.isfile(p) for p in found)


def test_survey_disk_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRCNN_JAX_CACHE", str(tmp_path))
    first = fonts_lib.survey("0123456789")
    cached = list((tmp_path / "font_checks").glob("*.json"))
    assert len(cached) == 1
    assert fonts_lib.survey("0123456789") == first
    assert first["usable"]


def _fake_fontpkg(monkeypatch, families: dict) -> None:
    """Installs a stand-in ``fontpkg`` module whose registry holds ``families``."""
    import importlib.machinery
    import types

    module = types.ModuleType("fontpkg")
    module.__spec__ = importlib.machinery.ModuleSpec("fontpkg", None)
    module.families = lambda: families
    monkeypatch.setitem(sys.modules, "fontpkg", module)


def test_fontpkg_families_are_a_source_regular_and_bold_only(monkeypatch, tmp_path):
    import types

    def face(name, weight, variable=False, style="normal"):
        return types.SimpleNamespace(path=tmp_path / name, weight=weight, variable=variable,
                                     style=style)

    nine = [face(f"Nine-{w}.ttf", w) for w in range(100, 1000, 100)]
    nine.append(face("Nine-Italic.ttf", 400, style="italic"))
    families = {"nine": types.SimpleNamespace(files=tuple(nine)),
                "flex": types.SimpleNamespace(files=(face("Flex[wght].ttf", 400, True),
                                                     face("Flex.woff2", 400)))}
    _fake_fontpkg(monkeypatch, families)
    found = fonts_lib._fontpkg_fonts()
    assert [os.path.basename(p) for p in found] == [
        "Flex[wght].ttf", "Nine-400.ttf", "Nine-700.ttf", "Nine-Italic.ttf"]
    assert [p for s, p in fonts_lib.font_candidates() if s == "fontpkg"] == found


def test_without_fontpkg_the_sources_are_unchanged(monkeypatch):
    monkeypatch.setitem(sys.modules, "fontpkg", None)     # find_spec: None; import: fails
    assert fonts_lib._fontpkg_fonts() == []
    assert all(source != "fontpkg" for source, _ in fonts_lib.font_candidates())


def test_generator_fonts_finds_the_generator_among_the_training_sources():
    from grcnn_jax.data.sources import ConcatSource, WeightedSources, generator_fonts

    faces = fonts_lib.usable_fonts()[:3]
    words = SynthWords(4, seed=0, fonts=faces)
    assert generator_fonts(words) == faces
    assert generator_fonts(WeightedSources([ConcatSource([["a"]]), words], [1, 1])) == faces
    assert generator_fonts(ConcatSource([["a"]])) == ()
    counted = fonts_lib.faces_by_source(faces)
    assert "given" not in counted and sum(counted.values()) == 3
    assert fonts_lib.faces_by_source(("/elsewhere/Mine.ttf",)) == {"given": 1}


def test_no_fonts_error_names_what_to_install(monkeypatch):
    monkeypatch.setattr(fonts_lib, "survey", lambda chars: {"usable": [], "rejected": {}})
    with pytest.raises(fonts_lib.NoFontsError, match="pymupdf-fonts"):
        fonts_lib.usable_fonts.__wrapped__("abc")


# --- the command ----------------------------------------------------------------------------

def test_colour_renderings_and_their_gray(renderings):
    from grcnn_jax.data.images import decolorize, to_grayscale

    _, rs = renderings
    for r in rs[:40]:
        np.testing.assert_array_equal(r.image, decolorize(r.rgb))   # what the check measured
        np.testing.assert_array_equal(to_grayscale(r.rgb), r.image)  # is what the loader makes
    # Some samples differ mostly in hue: their luminance contrast is far below the gray's.
    luma = [abs(np.median(to_grayscale(r.rgb, "luma")[r.text_mask >= 0.75])
                - np.median(to_grayscale(r.rgb, "luma")[r.background])) for r in rs
            if (r.text_mask >= 0.75).sum() >= 4]
    kept = [r.contrast for r in rs if (r.text_mask >= 0.75).sum() >= 4]
    assert sum(lu < 25 and k >= 40 for lu, k in zip(luma, kept)) >= 5
    assert np.mean([float(np.std(r.rgb.astype(float), axis=2).mean()) > 8 for r in rs]) > 0.4


def test_contact_sheet_command(tmp_path):
    out = tmp_path / "sheet.png"
    assert synth_cli.main(["--contact_sheet", str(out), "--n", "16", "--seed", "1"]) == 0
    with Image.open(out) as im:
        assert im.size == (8 * 208 + 8, 2 * 74 + 8)
        assert np.asarray(im).std() > 20


def test_contact_sheet_with_real_crops_above_generated_rows(tmp_path):
    out = tmp_path / "beside.png"
    fixture = REPO / "tests" / "fixtures" / "ic03_mini"
    assert synth_cli.main(["--contact_sheet", str(out), "--n", "8", "--real", str(fixture)]) == 0
    with Image.open(out) as im:
        assert im.size[1] == 2 * 74 + 8                    # one real row, one generated row
