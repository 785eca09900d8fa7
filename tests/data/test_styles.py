"""The generator's optional lettering styles: dot-matrix and relief."""

import pickle

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from grcnn_jax.cli import synth as synth_cli
from grcnn_jax.config.check import ConfigError, validate
from grcnn_jax.config.recipes import quickstart
from grcnn_jax.data import images
from grcnn_jax.data.synth import generator, geometry, styles
from grcnn_jax.data.synth.generator import SynthWords
from grcnn_jax.data.synth.paint import compose


def test_parse_styles_orders_and_refuses_unknown_names():
    assert styles.parse_styles(" relief, dots ") == ("dots", "relief")
    assert styles.parse_styles(["dots"]) == ("dots",)
    assert styles.parse_styles("") == styles.parse_styles(None) == ()
    with pytest.raises(ValueError, match="unknown generator style 'neon'"):
        styles.parse_styles("dots,neon")


def test_no_styles_draws_nothing_from_the_random_stream():
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    assert styles.choose(a, ()) == set()
    assert a.random() == b.random()
    picked = [styles.choose(np.random.default_rng(i), ("dots", "relief")) for i in range(400)]
    share = sum("dots" in p for p in picked) / len(picked)
    assert 0.01 <= share <= 0.08                          # SHARES["dots"] is 0.04


def test_dot_matrix_writes_the_letters_as_separate_dots_where_the_text_is():
    mask = Image.new("L", (260, 60), 0)
    ImageDraw.Draw(mask).rectangle([20, 10, 240, 50], fill=255)   # a solid 'word'
    dotted = np.asarray(styles.dot_matrix(np.random.default_rng(0), mask, 48)) > 127
    _, n = ndimage.label(dotted)
    assert n >= 60                                      # many dots, not one blob
    text = np.asarray(mask) > 0
    assert dotted[~ndimage.binary_dilation(text, iterations=6)].sum() == 0
    assert 0.15 < dotted[text].mean() < 0.8             # the grid's gaps show through


def test_dot_matrix_keeps_its_dots_at_least_min_pitch_apart():
    mask = Image.new("L", (260, 60), 0)
    ImageDraw.Draw(mask).rectangle([20, 10, 240, 50], fill=255)
    for min_pitch in (2.0, 9.0):
        dotted = np.asarray(styles.dot_matrix(np.random.default_rng(0), mask, 48,
                                              min_pitch=min_pitch)) > 127
        labels, n = ndimage.label(dotted)
        centres = np.array(ndimage.center_of_mass(dotted, labels, range(1, n + 1)))
        d = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
        np.fill_diagonal(d, np.inf)
        # 48 px * 7-12% is 3.4-5.8 px: the floor of 9 px must widen the grid
        assert (d.min() >= min_pitch - 1.0) and (min_pitch < 3 or d.min() < 1.5 * min_pitch)


def _relief(seed):
    h, w = 32, 120
    t_mask = np.zeros((h, w), np.float32)
    for x in range(10, 110, 12):                        # strokes 4 px wide, 8 px apart
        t_mask[8:24, x:x + 4] = 1
    rng = np.random.default_rng(seed)
    img, occupied, _, visible = compose(rng, t_mask, None, [], relief=True)
    gray = images.decolorize(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    bg = np.median(gray[occupied < 0.02])
    inside = np.median(gray[(t_mask == 1) & (visible == 0)])
    edges = np.median(gray[visible >= 0.75])
    return abs(inside - bg), abs(edges - bg)


def test_relief_letters_are_the_surface_colour_and_seen_by_their_edges(monkeypatch):
    monkeypatch.setattr("grcnn_jax.data.synth.paint._pattern",
                        lambda rng, h, w, fonts: np.zeros((h, w), np.float32))
    measured = [_relief(seed) for seed in range(30)]
    assert sum(inside < 30 for inside, _ in measured) >= 24
    assert sum(edges > inside + 25 for inside, edges in measured) >= 24


@pytest.mark.parametrize("style", ["dots", "relief"])
def test_the_generator_draws_a_style_legibly_and_pickles_it(monkeypatch, style):
    monkeypatch.setitem(styles.SHARES, style, 1.0)
    src = SynthWords(12, seed=4, styles=style)
    renders = [src.render(i) for i in range(12)]
    assert all(r.info.get("style") == style for r in renders)
    assert sum(r.legible for r in renders) >= 10
    assert f"styles='{style}'" in repr(src)
    again = pickle.loads(pickle.dumps(src))
    assert again.styles == (style,)
    assert again[3]["image"].tobytes() == src[3]["image"].tobytes()


def test_unknown_styles_are_refused_naming_the_setting(tmp_path):
    config = quickstart()
    config.data.synth_styles = "dots,neon"
    with pytest.raises(ConfigError, match=r"config.data.synth_styles='dots,neon': unknown "
                                          r"generator style 'neon' \(known: dots, relief\)"):
        validate(config)
    with pytest.raises(SystemExit, match=r"--styles='neon': unknown generator style 'neon'"):
        synth_cli.main(["--contact_sheet", str(tmp_path / "s.png"), "--styles", "neon"])
    assert not (tmp_path / "s.png").exists()


def test_least_scale_is_the_maps_smallest_stretch():
    rot = np.array([[np.cos(0.3), -np.sin(0.3), 0], [np.sin(0.3), np.cos(0.3), 0], [0, 0, 1]])
    stretch = np.diag([2.0, 3.0, 1.0])
    pts = np.array([[0.0, 0.0], [40.0, 10.0]])
    assert geometry.least_scale(rot @ stretch, pts) == pytest.approx(2.0)
    assert geometry.least_scale(stretch @ rot, pts) == pytest.approx(2.0)
    # Perspective: the scale shrinks where the denominator grows; the least is taken.
    persp = np.array([[1.0, 0, 0], [0, 1.0, 0], [0.01, 0, 1.0]])
    assert geometry.least_scale(persp, pts) < geometry.least_scale(persp, pts[:1])


def test_generated_dot_words_keep_their_dots_min_dot_pitch_output_px_apart(monkeypatch):
    """Whatever scale the crop map gives the word, the floor of the dot grid's pitch times
    the map's smallest stretch (finite differences here) is at least MIN_DOT_PITCH output px."""
    seen = {}
    crop_map, dot_matrix = generator.crop_map, styles.dot_matrix

    def spy_crop(rng, ink, *args):
        seen["ink"], out = ink, crop_map(rng, ink, *args)
        seen["fwd"] = out[0]
        return out

    def spy_dots(rng, mask, size, min_pitch=2.0):
        seen["pitch"] = min_pitch
        return dot_matrix(rng, mask, size, min_pitch=min_pitch)

    monkeypatch.setattr(generator, "crop_map", spy_crop)
    monkeypatch.setattr(styles, "dot_matrix", spy_dots)
    monkeypatch.setattr(styles, "choose", lambda rng, chosen: {"dots"})
    fonts = SynthWords(length=1, seed=0).fonts
    pitches = []
    for seed in range(40):
        seen.clear()
        generator.render(np.random.default_rng(seed), "Sale 42", fonts, 32, styles=("dots",))
        fwd, pts = seen["fwd"], np.vstack([seen["ink"], seen["ink"].mean(0)])
        h = 1e-3
        jac = np.stack([(geometry._apply(fwd, pts + [h, 0]) - geometry._apply(fwd, pts)) / h,
                        (geometry._apply(fwd, pts + [0, h]) - geometry._apply(fwd, pts)) / h],
                       axis=-1)
        pitches.append(seen["pitch"] * np.linalg.svd(jac, compute_uv=False).min())
    assert min(pitches) >= styles.MIN_DOT_PITCH * 0.999
    assert np.median(pitches) < 2 * styles.MIN_DOT_PITCH      # a floor, not a blow-up
