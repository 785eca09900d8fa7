"""The shipped reader: it loads, its checksum holds, it reads rendered words, it seeds training."""

import os
import shutil

import numpy as np
import pytest

from grcnn_jax.training import init_from
from grcnn_jax.cli import pretrained as pretrained_cli
from grcnn_jax.inference import pretrained
from grcnn_jax.inference.load import load_for_inference


@pytest.fixture(scope="module")
def shipped():
    return pretrained.load()


def test_the_shipped_model_loads_with_its_config_and_charset(shipped):
    from grcnn_jax.config.defaults import CASED_CHARSET

    assert shipped.charset.chars == CASED_CHARSET           # digits, both cases, punctuation
    assert shipped.config.image_height == 32 and shipped.step > 0
    assert os.path.getsize(os.path.join(pretrained.ASSET_DIR, pretrained.VARIABLES_FILE)) < 25e6
    # The weights are configs/reader.py's model.
    import json

    from conftest import load_config

    from grcnn_jax.models import NEUTRAL_FIELDS

    def network(model_config):
        return {k: v for k, v in json.loads(model_config.to_json()).items()
                if k not in NEUTRAL_FIELDS}
    assert network(shipped.config.model) == network(load_config("reader").model)
    # The default of every command that reads a checkpoint.
    assert load_for_inference().path == shipped.path
    assert load_for_inference(checkpoint="pretrained").step == shipped.step


WORDS = ["river", "kitchen", "window", "yellow", "morning", "planet", "number", "garden",
         "3142", "travel"]


def test_the_shipped_model_reads_rendered_words(shipped):
    import pathlib

    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    from grcnn_jax.data.images import to_grayscale
    from grcnn_jax.data.preprocess import resize
    from grcnn_jax.inference.recognize import recognize_images

    ttf = pathlib.Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf"
    face = ttf / "DejaVuSans.ttf"
    font = ImageFont.truetype(str(face), 30)
    images = []
    for i, word in enumerate(WORDS):
        text = word.upper() if i % 3 == 1 else word.capitalize() if i % 3 == 2 else word
        w = int(font.getlength(text)) + 16
        im = Image.new("RGB", (w, 44), (235, 230, 215))
        ImageDraw.Draw(im).text((8, 6), text, font=font, fill=(30, 40, 90))
        images.append(resize(to_grayscale(np.asarray(im)), 32, 100, False))
    predictions = recognize_images(shipped, np.stack(images))
    read = [p.text for p in predictions]
    rendered = [w.upper() if i % 3 == 1 else w.capitalize() if i % 3 == 2 else w
                for i, w in enumerate(WORDS)]
    assert sum(r == w for r, w in zip(read, rendered)) >= 8, read     # in their case


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

    from grcnn_jax.text.charset import Charset
    from grcnn_jax.models import create_model
    from grcnn_jax.training.setup import train_state_of

    config = shipped.config
    charset = Charset(shipped.charset.chars)
    state = train_state_of(config, create_model(config.model, charset.num_classes),
                               jax.random.key(0))
    started = init_from.init_state_from(state, shipped, charset)
    for a, b in zip(jax.tree.leaves(started.params), jax.tree.leaves(shipped.params)):
        np.testing.assert_array_equal(np.asarray(a), b)
    assert int(started.step) == 0
    narrow = config.copy_and_resolve_references()
    narrow.model.hidden = config.model.hidden // 2
    small = train_state_of(narrow, create_model(narrow.model, charset.num_classes),
                               jax.random.key(0))
    with pytest.raises(ValueError, match=r"params/.*in this run's model"):
        init_from.init_state_from(small, shipped, charset)


def test_init_from_grows_t(shipped):
    """A T = 3 run from the T = 2 reader: shared weights as they are, each GRCL's batch
    normalization for iterations 1-2 as trained and for iteration 3 a copy of iteration 2's."""
    import jax
    from flax import traverse_util

    from grcnn_jax.text.charset import Charset
    from grcnn_jax.models import create_model
    from grcnn_jax.training.setup import train_state_of

    config = shipped.config.copy_and_resolve_references()
    assert config.model.T == 2
    config.model.T = 3
    charset = Charset(shipped.charset.chars)
    state = train_state_of(config, create_model(config.model, charset.num_classes),
                           jax.random.key(0))
    started = init_from.init_state_from(state, shipped, charset)
    for new_tree, old_tree in ((started.params, shipped.params),
                               (started.batch_stats, shipped.batch_stats)):
        new = traverse_util.flatten_dict(new_tree, sep="/")
        old = traverse_util.flatten_dict(old_tree, sep="/")
        per_iteration = [k for k in old if "/iterations/" in k]
        assert per_iteration and set(new) == set(old)
        for k in old:
            a, b = np.asarray(new[k]), np.asarray(old[k])
            if k in per_iteration:
                assert a.shape == (3, *b.shape[1:])
                np.testing.assert_array_equal(a, b[[0, 1, 1]])
            else:
                np.testing.assert_array_equal(a, b)


def test_export_round_trip(shipped, tmp_path):
    import jax

    meta = pretrained.export(shipped, str(tmp_path / "copy"), note="round trip")
    again = pretrained.load(str(tmp_path / "copy"))
    assert meta["step"] == again.step and again.config.data.val == "synth"
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(shipped.params)):
        np.testing.assert_array_equal(a, b)


def test_the_export_command_refuses_in_one_line(tmp_path):
    for argv, culprit in (([], "give --workdir or --checkpoint"),
                          (["--workdir", str(tmp_path / "none")], "none")):
        with pytest.raises(SystemExit) as e:
            pretrained_cli.main([*argv, "--out", str(tmp_path / "out")])
        message = str(e.value.code)
        assert message.startswith("FATAL") and "\n" not in message and culprit in message
    assert not os.path.exists(tmp_path / "out")


def test_the_lineage_records_every_leg(lmdb_path, tmp_path):
    from helpers import tiny_config

    from grcnn_jax.training import train

    train.train_and_evaluate(tiny_config(lmdb_path, 3), str(tmp_path / "a"))
    first = pretrained.export(load_for_inference(workdir=str(tmp_path / "a")),
                              str(tmp_path / "reader_a"), note="leg 1")
    assert [leg["steps"] for leg in first["lineage"]] == [3]
    assert first["lineage"][0]["init_from"] == "" and first["lineage"][0]["train"] == lmdb_path
    assert "synth_faces" not in first["lineage"][0]          # no generator in its data
    train.train_and_evaluate(tiny_config(lmdb_path, 4, init_from=str(tmp_path / "reader_a")),
                             str(tmp_path / "b"))
    second = pretrained.export(load_for_inference(workdir=str(tmp_path / "b")),
                               str(tmp_path / "reader_b"))
    assert [leg["steps"] for leg in second["lineage"]] == [3, 4]
    assert second["lineage"][1]["init_from"] == str(tmp_path / "reader_a")
    assert all(leg["minutes"] >= 0 for leg in second["lineage"])
    assert pretrained.load(str(tmp_path / "reader_b")).step == 4
    # Shipped in the place of the reader it started from, then written again (say, with
    # another language model or in a mean): its earlier legs are those it started from.
    pretrained.export(load_for_inference(workdir=str(tmp_path / "b")), str(tmp_path / "reader_a"))
    again = pretrained.export(load_for_inference(workdir=str(tmp_path / "b")),
                              str(tmp_path / "reader_c"))
    assert [leg["steps"] for leg in again["lineage"]] == [3, 4]
    (tmp_path / "b" / "init_lineage.json").write_text("{")
    with pytest.raises(pretrained.PretrainedError, match="init_lineage.json"):
        pretrained.lineage(load_for_inference(workdir=str(tmp_path / "b")))


def test_a_leg_with_the_generator_records_its_faces_and_augmentation(tmp_path):
    from helpers import tiny_config

    from grcnn_jax.data.synth import fonts
    from grcnn_jax.training import train

    train.train_and_evaluate(tiny_config(None, 2, **{"data.val": "", "data.augment": True,
                                                     "data.augment_strength": 1.5,
                                                     "data.augment_edge_cut": 0.02,
                                                     "confidence_penalty": 0.2}),
                             str(tmp_path / "a"))
    ckpt = load_for_inference(workdir=str(tmp_path / "a"))
    leg = pretrained.training_leg(ckpt)
    assert leg["augment"] is True and leg["augment_strength"] == 1.5
    assert leg["augment_edge_cut"] == 0.02 and leg["confidence_penalty"] == 0.2
    ckpt.config.data.augment_strength = 1.0               # the recipe's: not written
    ckpt.config.data.augment_edge_cut = 0.06
    ckpt.config.confidence_penalty = 0.0
    leg = pretrained.training_leg(ckpt)
    assert not {"augment_strength", "augment_edge_cut", "confidence_penalty"} & set(leg)
    faces = leg["synth_faces"]
    usable = fonts.usable_fonts(ckpt.charset.chars)
    assert faces == fonts.faces_by_source(usable, ckpt.charset.chars)
    assert "given" not in faces and sum(faces.values()) == len(usable)
    (tmp_path / "a" / "synth_faces.json").write_text('{"matplotlib": "21"}')
    with pytest.raises(pretrained.PretrainedError, match="synth_faces.json"):
        pretrained.training_leg(ckpt)
