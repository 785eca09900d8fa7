"""Colour pairs measured on real crops, and the generator painting with them."""

import pathlib
import pickle

import numpy as np
import pytest

from grcnn_jax.cli import synth as synth_cli
from grcnn_jax.data.errors import DataError
from grcnn_jax.data.sources import open_source
from grcnn_jax.data.synth import palettes
from grcnn_jax.data.synth.generator import SynthWords

REPO = pathlib.Path(__file__).resolve().parents[2]
IC03_MINI = REPO / "tests" / "fixtures" / "ic03_mini"


def _crop(text_rgb, bg_rgb, h=24, w=80):
    """A crop in ``bg_rgb`` with a block of 'letters' in ``text_rgb`` away from the border."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = bg_rgb
    for x in range(10, w - 10, 12):
        img[5:h - 5, x:x + 6] = text_rgb
    return img


@pytest.mark.parametrize("text, bg", [((200, 30, 30), (250, 240, 220)),    # dark on light
                                      ((250, 250, 120), (20, 40, 90))])    # light on dark
def test_colour_pair_finds_text_and_background_by_the_border(text, bg):
    pair = palettes.colour_pair(_crop(text, bg))
    np.testing.assert_allclose(pair, [text, bg], atol=1)


def test_a_flat_or_tiny_crop_gives_no_pair():
    assert palettes.colour_pair(np.full((24, 80, 3), 128, np.uint8)) is None
    assert palettes.colour_pair(_crop((0, 0, 0), (255, 255, 255))[:3]) is None
    faint = _crop((120, 120, 120), (135, 135, 135))               # under MIN_STEP apart
    assert palettes.colour_pair(faint) is None


def test_otsu_splits_two_levels_between_them():
    gray = np.array([40] * 30 + [200] * 70, np.uint8)
    assert 40 <= palettes.otsu_threshold(gray) < 200


def test_build_palette_from_real_crops_and_the_command(tmp_path):
    palette = palettes.build_palette(open_source(str(IC03_MINI)))
    assert palette.dtype == np.float32 and palette.ndim == 3 and palette.shape[1:] == (2, 3)
    assert len(palette) >= 3 and palette.min() >= 0 and palette.max() <= 255
    out = tmp_path / "p.npy"
    assert synth_cli.main(["--palettes_from", str(IC03_MINI), "--palettes", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), palette)
    np.testing.assert_array_equal(palettes.load_palette(str(out)), palette)


def test_bad_palette_files_are_refused_naming_the_setting(tmp_path):
    with pytest.raises(DataError, match=r"config.data.synth_palettes=.*no such file"):
        palettes.load_palette(str(tmp_path / "missing.npy"))
    np.save(tmp_path / "flat.npy", np.zeros((4, 3), np.float32))
    with pytest.raises(DataError, match=r"--palettes=.*\[N, 2, 3\].*\(4, 3\)"):
        palettes.load_palette(str(tmp_path / "flat.npy"), "--palettes")
    np.save(tmp_path / "hot.npy", np.full((2, 2, 3), 300, np.float32))
    with pytest.raises(DataError, match="0..255"):
        SynthWords(4, palettes=str(tmp_path / "hot.npy"))
    (tmp_path / "text.npy").write_text("not an array")
    with pytest.raises(DataError, match="not a .npy array"):
        palettes.load_palette(str(tmp_path / "text.npy"))


def test_the_generator_paints_some_words_in_the_palette(tmp_path):
    green_on_purple = np.array([[[20, 230, 40], [120, 20, 140]]], np.float32)
    path = tmp_path / "one.npy"
    np.save(path, green_on_purple)
    plain, painted = SynthWords(60, seed=5), SynthWords(60, seed=5, palettes=str(path))
    assert [plain[i]["text"] for i in range(60)] == [painted[i]["text"] for i in range(60)]

    def greenish(src, i):
        r = src.render(i)
        ink = r.rgb[r.text_mask >= 0.9].astype(float)
        return len(ink) >= 4 and np.median(ink[:, 1]) - np.median(ink[:, 0]) > 80 \
            and np.median(ink[:, 1]) - np.median(ink[:, 2]) > 80

    hits = sum(greenish(painted, i) for i in range(60))
    assert 10 <= hits <= 50                         # about PALETTE_SHARE of the words
    assert sum(greenish(plain, i) for i in range(60)) < hits / 3
    # The path travels through pickling (worker processes) and the samples stay the same.
    again = pickle.loads(pickle.dumps(painted))
    assert again[7]["image"].tobytes() == painted[7]["image"].tobytes()
    assert "palettes=" in repr(painted)
