"""Effective receptive fields: confined to the theoretical field, exact gradients, the command."""

import numpy as np
import pytest
from PIL import Image

from conftest import load_config
from helpers import IC03_MINI, save_checkpoint, tiny_widths
from helpers import tiny_untrained as tiny
from grcnn_jax.analysis import receptive_fields
from grcnn_jax.cli import visualize
from grcnn_jax.models import Backbone, GRCLOptions


@pytest.fixture(scope="module")
def noise():
    return np.random.default_rng(0).integers(0, 256, (32, 100)).astype(np.uint8)


@pytest.fixture(scope="module")
def word():
    return receptive_fields.render_word("gates")


def test_theoretical_columns_closed_form_and_paper_values():
    config = load_config("grcl").model
    for T in range(6):
        config.T = T
        R = T + 1
        for f in range(26):
            assert receptive_fields.theoretical_columns(config, f) == (
                max(4 * f - 9 - 10 * R, 0), min(4 * f + 8 + 10 * R, 99)), (T, f)
    config.T = 1
    assert receptive_fields.theoretical_columns(config, 13) == (23, 80)
    config.T = 0
    assert receptive_fields.theoretical_columns(config, 13) == (33, 70)      # the CNN: 38 columns
    config.T = 5
    assert receptive_fields.theoretical_columns(config, 13) == (0, 99)       # the paper: everything
    with pytest.raises(ValueError, match="frames 0..25"):
        receptive_fields.theoretical_columns(config, 26)


@pytest.mark.parametrize("name,T", [("cnn", 0), ("rcl", 2), ("grcl", 2)])
def test_field_extent_is_exactly_the_theoretical_field(name, T, noise, word):
    model = tiny(name, T)
    fields = receptive_fields.effective_fields(model, noise)                  # every frame
    assert fields.shape == (26, 32, 100) and fields.dtype == np.float32
    for f in range(26):
        # Zero outside the theoretical field, and (on a noise image, where every max-pool
        # window passes gradient somewhere) non-zero out to both of its ends.
        assert receptive_fields.effective_columns(fields[f]) == \
            receptive_fields.theoretical_columns(model.model_config, f), f
    # On a word (flat background, dead ReLUs): still zero outside, non-zero inside.
    for f, field in zip((0, 13, 25), receptive_fields.effective_fields(model, word, (0, 13, 25)),
                        strict=True):
        lo, hi = receptive_fields.theoretical_columns(model.model_config, f)
        assert field[:, :lo].max(initial=0) == 0 and field[:, hi + 1:].max(initial=0) == 0
        assert field[:, lo:hi + 1].max() > 0


def test_fields_are_the_gradients_of_the_frame_outputs(noise):
    import jax
    import jax.numpy as jnp

    model = tiny("grcl", 2)
    w = tiny_widths()
    backbone = Backbone(w["conv0_features"], w["grcl_features"], w["out_features"],
                        GRCLOptions(T=2, conv_impl=w["conv_impl"]))
    variables = {"params": model.params["backbone"], "batch_stats": model.batch_stats["backbone"]}
    x = jnp.asarray(noise, jnp.float32)[None, ..., None] * (2 / 255) - 1

    @jax.jit
    def grads(x, f):                      # an independent route: jax.grad of each scalar
        def grad(scalar):
            return jnp.abs(jax.grad(lambda x: scalar(backbone.apply(variables, x)[0, 0, f]))(x))
        return grad(jnp.sum)[0, ..., 0], grad(lambda y: 0.5 * jnp.sum(y ** 2))[0, ..., 0]

    got = receptive_fields.effective_fields(model, noise, [17, 3])           # two frames: [2, H, W]
    for k, f in enumerate((17, 3)):
        expect = np.asarray(grads(x, f)[0])
        np.testing.assert_allclose(got[k], expect, rtol=1e-4, atol=1e-6 * expect.max())
    got = receptive_fields.effective_fields(model, noise, 3, "energy")       # one frame: [H, W]
    expect = np.asarray(grads(x, 3)[1])
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-6 * expect.max())
    # The predicted logit goes through the BLSTMs: it sees far beyond the backbone's field.
    logit = receptive_fields.effective_fields(model, noise, 0, "logit")
    assert receptive_fields.effective_columns(logit)[1] > receptive_fields.theoretical_columns(
        model.model_config, 0)[1] + 20
    with pytest.raises(ValueError, match="frames 0..25"):
        receptive_fields.effective_fields(model, noise, 26)
    with pytest.raises(ValueError, match="uint8 image of shape"):
        receptive_fields.effective_fields(model, noise[:, :64])


def test_effective_columns_mass():
    field = np.zeros((2, 10))
    field[:, 2], field[:, 5], field[:, 8] = 1, 8, 1
    assert receptive_fields.effective_columns(field) == (2, 8)
    assert receptive_fields.effective_columns(field, 0.8) == (5, 5)
    assert receptive_fields.effective_columns(np.zeros((2, 10))) == (-1, -1)


def test_untrained_configs_are_the_config_files():
    for name in ("cnn", "rcl", "grcl"):
        from grcnn_jax.config.defaults import get_base_config

        fallback = get_base_config()
        fallback.model.update(receptive_fields.ABLATIONS[name])
        assert load_config(name).model.to_dict() == fallback.model.to_dict()
        assert receptive_fields.untrained_config(name).model.to_dict() == fallback.model.to_dict()


def panels(fig, png):
    """The pixels of each axes of ``fig`` in its saved PNG (saved at ``fig.dpi``): RGB [h, w, 3]."""
    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    height = pixels.shape[0]
    out = []
    for ax in fig.axes:
        box = ax.get_window_extent()
        x0, x1 = int(np.ceil(box.x0)) + 2, int(np.floor(box.x1)) - 2     # inside the frame
        y0, y1 = height - int(np.floor(box.y1)) + 2, height - int(np.ceil(box.y0)) - 2
        out.append(pixels[y0:y1, x0:x1])
    return out


def overlay(rgb, size=(32, 100)):
    """Where and how strongly a panel shows the overlay, on the image's grid [32, 100]: the
    chroma (max - min of R, G, B; the image itself is grey) of pixels in the inferno map's
    hues (red >= green), not the cyan bounds lines."""
    chroma = rgb.max(axis=2) - rgb.min(axis=2)
    chroma = np.where((chroma > 30) & (rgb[..., 0] >= rgb[..., 1] - 10), chroma, 0)
    small = Image.fromarray(chroma.astype(np.float32)).resize(size[::-1], Image.Resampling.BOX)
    return np.asarray(small)


def coloured_columns(panel):
    """The image columns (0..99) of a panel where the overlay shows."""
    return np.flatnonzero(overlay(panel).max(axis=0) > 5)


def drawn_figures(monkeypatch) -> list:
    """The figures the command draws with ``plot_fields``, in order (it returns nothing)."""
    figures = []
    draw = visualize.plot_fields

    def spy(*args, **kwargs):
        figures.append(draw(*args, **kwargs))
        return figures[-1]

    monkeypatch.setattr(visualize, "plot_fields", spy)
    return figures


def test_command_draws_three_different_panels(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(visualize, "untrained",
                        lambda name, seed=0: tiny(name, T=0 if name == "cnn" else 2, seed=seed))
    out = tmp_path / "fields.png"
    figures = drawn_figures(monkeypatch)
    visualize.main(["--frame", "13", "--out", str(out)])
    fig, = figures
    assert out.stat().st_size > 10_000
    assert [ax.get_title() for ax in fig.axes] == [
        "CNN (untrained), frame 13", "RCL T=2 (untrained), frame 13",
        "GRCL T=2 (untrained), frame 13"]
    cnn, rcl, grcl = panels(fig, out)
    # The three panels of the PNG differ: the overlays (the word underneath is the same).
    for a, b in ((cnn, rcl), (cnn, grcl), (rcl, grcl)):
        a, b = overlay(a), overlay(b)
        assert np.abs(a - b).sum() > 0.2 * max(a.sum(), b.sum())
    # Each field is drawn inside its theoretical field's columns (+-2 columns of drawing
    # tolerance), and around the frame's centre, column 51.5.
    for panel, T in ((cnn, 0), (rcl, 2), (grcl, 2)):
        cols = coloured_columns(panel)
        lo, hi = max(4 * 13 - 9 - 10 * (T + 1), 0), min(4 * 13 + 8 + 10 * (T + 1), 99)
        assert cols.size and cols.min() >= lo - 2 and cols.max() <= hi + 2, (T, cols)
        assert np.any(np.abs(cols - 51.5) < 4)
    # The CNN's field is narrower than the recurrent models'.
    assert np.ptp(coloured_columns(cnn)) < np.ptp(coloured_columns(grcl))
    printed = capsys.readouterr().out
    assert "CNN (untrained)  frame 13: theoretical columns 33..70, non-zero 33..70" in printed


def test_command_with_a_checkpoint_an_image_and_a_grid(tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "run", tiny("grcl", 2), step=7)
    image = IC03_MINI / "word_1.png"
    out, profiles = tmp_path / "grid.png", tmp_path / "profiles.png"
    figures = drawn_figures(monkeypatch)
    visualize.main(["--workdir", str(tmp_path / "run"), "--image", str(image),
                    "--frame", "2,20", "--target", "energy", "--out", str(out),
                    "--profiles", str(profiles)])
    fig, = figures
    assert [ax.get_title() for ax in fig.axes] == ["GRCL T=2, step 7, frame 2",
                                                    "GRCL T=2, step 7, frame 20"]
    left, right = panels(fig, out)
    assert coloured_columns(left).max() < 50 < coloured_columns(right).min()
    assert profiles.stat().st_size > 5_000
    with pytest.raises(SystemExit, match="frames 0..25"):
        visualize.main(["--workdir", str(tmp_path / "run"), "--frame", "26"])
    with pytest.raises(SystemExit, match="does not exist"):
        visualize.main(["--workdir", str(tmp_path / "nothing-here")])


@pytest.mark.parametrize("frame, culprit", [
    ("x", "--frame=x"), ("", "--frame is empty"),
    (",".join(map(str, range(receptive_fields.MAX_GRID_FRAMES + 1))), "frames in one figure")])
def test_command_refuses_bad_frames_in_one_line(frame, culprit):
    with pytest.raises(SystemExit) as e:                 # before any model is built
        visualize.main(["--frame", frame])
    message = str(e.value.code)
    assert message.startswith("FATAL") and "\n" not in message and culprit in message
