"""Effective receptive fields: confined to the theoretical field, different per model."""

import numpy as np
import pytest

from conftest import load_config
from grcnn_jax import visualize
from grcnn_jax.data.synth import SynthWords
from grcnn_jax.data.pipeline import resize


def tiny(name, T):
    config = load_config(name)
    m = config.model
    m.T, m.conv0_features, m.grcl_features, m.out_features, m.hidden = T, 8, (8, 8, 16), 16, 8
    import jax
    from grcnn_jax.models import create_model

    variables = create_model(m, 37).init(jax.random.key(0), np.zeros((1, 32, 100), np.uint8))
    return visualize.FieldModel(name, m, variables["params"], variables["batch_stats"])


@pytest.fixture(scope="module")
def image():
    return resize(SynthWords(1, seed=3)[0]["image"], 32, 100, keep_aspect=False)


@pytest.mark.parametrize("frame", [0, 13, 25])
def test_grcl_field_stays_inside_the_theoretical_field(image, frame):
    model = tiny("grcl", T=1)
    field = visualize.effective_fields(model, image)[frame]
    lo, hi = visualize.theoretical_columns(model.model_config, frame)
    assert field.shape == (32, 100)
    outside = np.concatenate([field[:, :lo], field[:, hi + 1:]], axis=1)
    assert outside.size == 0 or np.all(outside == 0)
    columns = np.flatnonzero(field.max(axis=0) > 0)
    # Non-zero inside, reaching (close to) both ends of the theoretical interval: the
    # interval is the field's actual extent, not just a bound.
    assert columns.size and columns.min() <= lo + 2 and columns.max() >= hi - 2


def test_theoretical_columns_of_the_paper_layout():
    config = load_config("grcl").model
    config.T = 1
    assert visualize.theoretical_columns(config, 13) == (23, 80)
    config.T = 0
    lo, hi = visualize.theoretical_columns(config, 13)
    assert 23 < lo < hi < 80                     # the plain CNN sees less


def test_command_writes_three_different_panels(tmp_path, monkeypatch):
    fields = {}
    real = visualize.plot_fields

    def spy(models, image, frame, fields_=None):
        computed = [visualize.effective_fields(m, image)[frame] for m in models]
        fields["panels"] = computed
        return real(models, image, frame, computed)

    monkeypatch.setattr(visualize, "plot_fields", spy)
    monkeypatch.setattr(visualize, "untrained", lambda name: tiny(name, T=0 if name == "cnn" else 2))
    out = tmp_path / "fields.png"
    visualize.main(["--frame", "13", "--out", str(out)])
    assert out.stat().st_size > 10_000
    cnn, rcl, grcl = fields["panels"]
    for a, b in ((cnn, rcl), (cnn, grcl), (rcl, grcl)):
        assert not np.allclose(a / a.max(), b / b.max(), atol=1e-3)
    # The recurrent models see further than the plain CNN.
    assert np.count_nonzero(rcl.max(axis=0)) > np.count_nonzero(cnn.max(axis=0))
