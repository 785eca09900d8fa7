"""The shipped reader: it loads, its checksum holds, it reads rendered words, it seeds training."""

import os
import shutil

import numpy as np
import pytest

from grcnn_jax import pretrained
from grcnn_jax.checkpoints import load_for_inference


@pytest.fixture(scope="module")
def shipped():
    return pretrained.load()


def test_the_shipped_model_loads_with_its_config_and_charset(shipped):
    assert shipped.charset.chars == "0123456789abcdefghijklmnopqrstuvwxyz"
    assert shipped.config.image_height == 32 and shipped.step > 0
    assert os.path.getsize(os.path.join(pretrained.ASSET_DIR, pretrained.VARIABLES_FILE)) < 25e6
    # The default of every command that reads a checkpoint.
    assert load_for_inference().path == shipped.path
    assert load_for_inference(checkpoint="pretrained").step == shipped.step


def test_the_shipped_model_reads_rendered_words(shipped):
    from grcnn_jax.data.pipeline import resize, to_grayscale
    from grcnn_jax.data.synth import SynthWords
    from grcnn_jax.recognize import recognize_images

    # Words the generator renders with a seed no training run uses.
    src = SynthWords(24, seed=424242)
    images = np.stack([resize(to_grayscale(src[i]["image"]), 32, 100, False) for i in range(24)])
    predictions = recognize_images(shipped, images)
    right = [p.text == src[i]["text"].lower() for i, p in enumerate(predictions)]
    assert np.mean(right) >= 0.75, [(p.text, src[i]["text"]) for i, p in enumerate(predictions)]


def test_a_damaged_file_is_refused_naming_it(tmp_path):
    folder = tmp_path / "reader"
    shutil.copytree(pretrained.ASSET_DIR, folder)
    path = folder / pretrained.VARIABLES_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(pretrained.PretrainedError, match="variables.npz.*checksum"):
        pretrained.load(str(folder))
    os.remove(folder / pretrained.META_FILE)
    with pytest.raises(pretrained.PretrainedError, match="meta.json.*missing"):
        pretrained.load(str(folder))


def test_init_from_copies_weights_and_names_a_mismatch(shipped):
    import jax

    from grcnn_jax.charset import Charset
    from grcnn_jax.models import create_model
    from grcnn_jax.train import create_train_state

    config = shipped.config
    charset = Charset(shipped.charset.chars)
    state = create_train_state(config, create_model(config.model, charset.num_classes),
                               jax.random.key(0))
    started = pretrained.init_state_from(state, shipped, config, charset)
    for a, b in zip(jax.tree.leaves(started.params), jax.tree.leaves(shipped.params)):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert int(started.step) == 0
    with pytest.raises(ValueError, match="charset"):
        pretrained.init_state_from(state, shipped, config, Charset("0123456789"))
    narrow = config.copy_and_resolve_references()
    narrow.model.hidden = config.model.hidden // 2
    small = create_train_state(narrow, create_model(narrow.model, charset.num_classes),
                               jax.random.key(0))
    with pytest.raises(ValueError, match=r"params/.*in this run's model"):
        pretrained.init_state_from(small, shipped, narrow, charset)


def test_export_round_trip(shipped, tmp_path):
    import jax

    meta = pretrained.export(shipped, str(tmp_path / "copy"), note="round trip")
    again = pretrained.load(str(tmp_path / "copy"))
    assert meta["step"] == again.step and again.config.data.val == "synth"
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(shipped.params)):
        np.testing.assert_array_equal(a, b)
