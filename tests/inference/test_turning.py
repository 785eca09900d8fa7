"""Tall crops read turned: the views (``preprocess.turned_views``) and every reader that
reads them (the Evaluator's predict and evaluate, the ONNX reader, the demo), with the
shipped reader on words written upwards and downwards."""

import io
import pathlib

import numpy as np
import pytest

from grcnn_jax.data.preprocess import TURN_RATIO, resize, turned_views

WORDS = ["station", "coffee", "market", "garden", "BAKERY", "Hotel"]


def _rendered(word: str):
    import matplotlib
    from PIL import Image, ImageDraw, ImageFont

    face = pathlib.Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    font = ImageFont.truetype(str(face), 30)
    im = Image.new("RGB", (int(font.getlength(word)) + 16, 44), (235, 230, 215))
    ImageDraw.Draw(im).text((8, 6), word, font=font, fill=(30, 40, 90))
    return im


def _png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tall_words(tmp_path_factory):
    """Each word written upwards (the page turned anticlockwise: read it turned clockwise)
    and downwards, as PNG files; (paths, words, the turn that reads each upright)."""
    folder = tmp_path_factory.mktemp("tall")
    paths, words, turns = [], [], []
    for i, word in enumerate(WORDS):
        for angle, turn in ((90, "clockwise"), (-90, "anticlockwise")):
            path = folder / f"{i}_{turn}.png"
            path.write_bytes(_png(_rendered(word).rotate(angle, expand=True)))
            paths.append(str(path))
            words.append(word)
            turns.append(turn)
    return paths, words, turns


@pytest.fixture(scope="module")
def shipped():
    from grcnn_jax.inference import pretrained

    return pretrained.load()


def test_only_tall_crops_have_turned_views():
    rng = np.random.default_rng(0)
    tall = rng.integers(0, 256, (50, 40), dtype=np.uint8)          # 1.25 x as tall as wide
    views = turned_views(tall, 32, 100, False)
    assert views.shape == (2, 32, 100) and views.dtype == np.uint8
    np.testing.assert_array_equal(views[0], resize(np.ascontiguousarray(np.rot90(tall, -1)),
                                                   32, 100, False))
    np.testing.assert_array_equal(views[1], resize(np.ascontiguousarray(np.rot90(tall, 1)),
                                                   32, 100, False))
    assert not np.array_equal(views[0], views[1])
    just_under = rng.integers(0, 256, (50, 41), dtype=np.uint8)
    assert turned_views(just_under, 32, 100, False) is None
    assert turned_views(rng.integers(0, 256, (32, 100), dtype=np.uint8), 32, 100, False) is None
    assert TURN_RATIO == 50 / 40


def test_recognize_reads_tall_words_turned(shipped, tall_words):
    from grcnn_jax.inference.recognize import load_views, recognize_images

    paths, words, turns = tall_words
    images, turned, good, problems, _ = load_views(paths, 32, 100, False, "principal")
    assert good == paths and not problems and all(v is not None for v in turned)
    as_given = recognize_images(shipped, images)
    read = recognize_images(shipped, images, turned=turned, batch_size=4)
    assert sum(p.text == w for p, w in zip(as_given, words)) <= 2, [p.text for p in as_given]
    right = [p.text == w for p, w in zip(read, words)]
    assert sum(right) >= len(words) - 2, [p.text for p in read]
    assert all(p.turned == t for p, t, ok in zip(read, turns, right) if ok)
    assert all(p.turned is None for p in as_given)
    # Wide images among them have no views and are read as given.
    upright = np.stack([resize(np.asarray(_rendered(w).convert("L")), 32, 100, False)
                        for w in WORDS])
    mixed = recognize_images(shipped, np.concatenate([upright, images]),
                             turned=[None] * len(WORDS) + turned, batch_size=4)
    assert [p.text for p in mixed[len(WORDS):]] == [p.text for p in read]
    assert [p.text for p in mixed[:len(WORDS)]] == [
        p.text for p in recognize_images(shipped, upright, batch_size=4)]
    assert all(p.turned is None for p in mixed[:len(WORDS)])


def test_evaluate_reads_tall_records_turned_lexicons_too(shipped, tall_words, tmp_path):
    from grcnn_jax.data.formats.crnn_lmdb import write_lmdb
    from grcnn_jax.evaluation.scoring import evaluate_checkpoint

    paths, words, _ = tall_words
    upright = [_png(_rendered(w)) for w in WORDS]
    records = [{"image": pathlib.Path(p).read_bytes(), "text": w,
                "lexicon": [w, "stations", "coffer", "marker", "garlic", "baker", "hostel"]}
               for p, w in zip(paths, words)]
    records += [{"image": b, "text": w} for b, w in zip(upright, WORDS)]
    data = str(tmp_path / "tall.lmdb")
    write_lmdb(data, records)
    out = {}
    turned = evaluate_checkpoint(shipped, [data], batch_size=4, num_workers=0,
                                 predictions=out)["datasets"][0]
    keys = [p["key"] for p in out[data]]
    plain = evaluate_checkpoint(shipped, [data], batch_size=4, num_workers=0,
                                turn=False, predictions=out)["datasets"][0]
    assert turned["count"] == plain["count"] == len(records)
    assert [p["key"] for p in out[data]] == keys           # every image, in record order
    n_tall = len(paths)
    assert turned["word_accuracy"] * len(records) >= len(records) - 3
    assert plain["word_accuracy"] * len(records) <= len(WORDS) + 2
    assert turned["lexicon_word_accuracy"] * n_tall >= n_tall - 1
    assert plain["lexicon_word_accuracy"] < turned["lexicon_word_accuracy"]


def test_the_onnx_reader_and_the_demo_read_tall_words_turned(tall_words):
    pytest.importorskip("onnxruntime")
    from grcnn_jax import assets
    from grcnn_jax.demo.reading import read_word
    from grcnn_jax.inference.onnx_reader import OnnxReader

    paths, words, turns = tall_words
    reader = OnnxReader(assets.READER_ONNX_DIR)
    read = reader.read(paths)
    right = [r.text == w for r, w in zip(read, words)]
    assert sum(right) >= len(words) - 2, [r.text for r in read]
    assert all(r.turned == t for r, t, ok in zip(read, turns, right) if ok)
    assert sum(r.text == w for r, w in zip(reader.read(paths, turn=False), words)) <= 2
    reading = read_word(reader, pathlib.Path(paths[0]).read_bytes())
    assert (reading.text, reading.turned) == (read[0].text, read[0].turned)
    assert reading.image.shape == (32, 100)
    wide = read_word(reader, _png(_rendered("coffee")))
    assert wide.turned is None and wide.text == "coffee"
