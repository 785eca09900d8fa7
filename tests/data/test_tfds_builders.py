"""tfds builders: tiny fake downloads in each benchmark's layout -> ArrayRecord -> TfdsSource."""

import io
import pickle
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from grcnn_jax.text.charset import Charset
from grcnn_jax.cli import tfds as tfds_cli
from grcnn_jax.data.formats import tfds_annotations as ta, tfds_builders as tb
from grcnn_jax.data.formats.tfds_benchmarks import Svt
from grcnn_jax.data.formats.tfds_source import TfdsSource
from grcnn_jax.data.errors import DataError
from grcnn_jax.data.pipeline import make_dataset
from grcnn_jax.data.preprocess import Preprocess


def _image(seed: int, h: int = 12, w: int = 30, mode: str = "L") -> np.ndarray:
    shape = (h, w) if mode == "L" else (h, w, 3)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _read_all(source) -> list[dict]:
    return [source[i] for i in range(len(source))]


# --- IIIT5K: IIIT5K-Word_V3.0.tar.gz with .mat annotations ------------------------------------

def _iiit5k_struct(rows):
    dtype = [("ImgName", "O"), ("GroundTruth", "O"), ("smallLexi", "O"), ("mediumLexi", "O")]
    arr = np.zeros((1, len(rows)), dtype=dtype)
    for k, (name, text, small, medium) in enumerate(rows):
        cell = lambda words: np.array(words, dtype=object).reshape(-1, 1)  # noqa: E731
        arr[0, k] = (name, text, cell(small), cell(medium))
    return arr


def _make_iiit5k(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    stage = tmp_path / "stage" / "IIIT5K"
    test_rows = [("test/1_1.png", "PRIVATE", ["PRIVATE", "PUBLIC", "PARKING"], ["A"] * 3 + ["ZOO"]),
                 ("test/12_3.png", "2009", ["2009", "2010"], ["X", "Y"])]
    train_rows = [("train/1_1.png", "Hello", ["HELLO", "WORLD"], ["ONE"])]
    files = {}
    for k, (name, *_rest) in enumerate(test_rows + train_rows):
        files[name] = _encode(_image(k, mode="RGB"))
        _write(stage / name, files[name])
    scipy_io.savemat(stage / "testdata.mat", {"testdata": _iiit5k_struct(test_rows)})
    scipy_io.savemat(stage / "traindata.mat", {"traindata": _iiit5k_struct(train_rows)})
    manual = tmp_path / "manual"
    manual.mkdir()
    with tarfile.open(manual / "IIIT5K-Word_V3.0.tar.gz", "w:gz") as tar:
        tar.add(stage, arcname="IIIT5K")
    return manual, files, test_rows, train_rows


def test_iiit5k_from_tar_roundtrips(tmp_path):
    manual, files, test_rows, train_rows = _make_iiit5k(tmp_path)
    data_dir = tmp_path / "tfds"
    tb.build("iiit5k", str(data_dir), str(manual))
    for split, rows in (("test", test_rows), ("train", train_rows)):
        source = TfdsSource("iiit5k", split=split, data_dir=data_dir)
        records = _read_all(source)
        assert len(records) == len(rows)
        for i, (rec, (name, text, small, medium)) in enumerate(zip(records, rows)):
            assert rec["key"] == f"iiit5k/{split}:{i}"
            assert rec["id"] == name
            assert rec["image"] == files[name]           # the download's own bytes
            assert rec["text"] == text
            assert rec["lexicon"] == small
            assert rec["lexicon_1k"] == medium
    assert "tensorflow" not in sys.modules


# --- SVT: svt1/{test,train}.xml + img/*.jpg, boxes cropped ------------------------------------

SVT_XML = """<?xml version="1.0" encoding="utf-8"?>
<tagset>
  <image>
    <imageName>img/14_03.jpg</imageName>
    <address>341 Southwest 10th Avenue Portland OR</address>
    <lex>LIVING,ROOM,THEATERS,KENNY</lex>
    <Resolution x="64" y="48"/>
    <taggedRectangles>
      <taggedRectangle height="10" width="20" x="5" y="6"><tag>LIVING</tag></taggedRectangle>
      <taggedRectangle height="30" width="30" x="50" y="-4"><tag>Room</tag></taggedRectangle>
    </taggedRectangles>
  </image>
  <image>
    <imageName>img/15_01.jpg</imageName>
    <lex>ACE, HOTEL</lex>
    <taggedRectangles>
      <taggedRectangle height="8" width="16" x="0" y="0"><tag>ACE</tag></taggedRectangle>
    </taggedRectangles>
  </image>
</tagset>
"""


def test_svt_from_folder_crops_boxes(tmp_path):
    root = tmp_path / "manual" / "svt1"
    jpgs = {"img/14_03.jpg": _encode(_image(1, 48, 64, "RGB"), "JPEG"),
            "img/15_01.jpg": _encode(_image(2, 40, 40, "RGB"), "JPEG")}
    for name, data in jpgs.items():
        _write(root / name, data)
    _write(root / "test.xml", SVT_XML.encode())
    data_dir = tmp_path / "tfds"
    builder = tb.build("svt", str(data_dir), str(tmp_path / "manual"))
    assert set(builder.info.splits.keys()) == {"test"}      # no train.xml: no train split
    records = _read_all(TfdsSource("svt", "test", data_dir))

    def pixels(name, box):
        with Image.open(io.BytesIO(jpgs[name])) as im:
            return np.asarray(im.convert("RGB").crop(box))

    lex = ["LIVING", "ROOM", "THEATERS", "KENNY"]
    expected = [("img/14_03.jpg#0", (5, 6, 25, 16), "LIVING", lex),
                ("img/14_03.jpg#1", (50, 0, 64, 26), "Room", lex),      # clipped to the image
                ("img/15_01.jpg#0", (0, 0, 16, 8), "ACE", ["ACE", "HOTEL"])]
    assert [r["key"] for r in records] == ["svt/test:0", "svt/test:1", "svt/test:2"]
    for rec, (id_, box, text, lexicon) in zip(records, expected):
        assert (rec["id"], rec["text"], rec["lexicon"]) == (id_, text, lexicon)
        assert rec["image"][:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(rec["image"])) as im:
            np.testing.assert_array_equal(np.asarray(im), pixels(id_.split("#")[0], box))


# --- IC03: test/word.zip (word.xml + word/N/M.jpg) and an optional lexicon file ---------------

IC03_XML = """<?xml version="1.0" encoding="UTF-8"?>
<imagelist>
<image file="word/1/1.jpg" tag="Tiredness" />
<image file="word/1/2.jpg" tag="kills" />
<image file="word/2/1.jpg" tag="A&amp;B" />
</imagelist>
"""


def test_ic03_from_zip_with_lexicon(tmp_path):
    manual = tmp_path / "manual"
    files = {f"word/{d}/{f}.jpg": _encode(_image(10 * d + f, mode="RGB"), "JPEG")
             for d, f in ((1, 1), (1, 2), (2, 1))}
    (manual / "test").mkdir(parents=True)
    with zipfile.ZipFile(manual / "test" / "word.zip", "w") as zf:
        zf.writestr("word.xml", IC03_XML)
        for name, data in files.items():
            zf.writestr(name, data)
    lexicons = [["TIREDNESS", "KILLS", "ONE"], ["KILLS", "TWO"], ["A&B"]]
    (manual / "test" / "lexicon_50.txt").write_text("\n".join(",".join(w) for w in lexicons) + "\n")
    data_dir = tmp_path / "tfds"
    tb.build("ic03", str(data_dir), str(manual))
    records = _read_all(TfdsSource("ic03", "test", data_dir))
    assert [(r["key"], r["id"], r["text"], r["lexicon"]) for r in records] == [
        ("ic03/test:0", "word/1/1.jpg", "Tiredness", lexicons[0]),
        ("ic03/test:1", "word/1/2.jpg", "kills", lexicons[1]),
        ("ic03/test:2", "word/2/1.jpg", "A&B", lexicons[2])]
    assert [r["image"] for r in records] == list(files.values())


def test_ic03_without_lexicon_and_forgiving_xml(tmp_path):
    # Not well-formed (a bare '&', a Latin-1 byte): read with the forgiving pattern.
    raw = (b'<imagelist>\n<image file="word/1/1.jpg" tag="R&D" />\n'
           b'<image file="word/1/2.jpg" tag="caf\xe9"/>')
    manual = tmp_path / "manual"
    _write(manual / "word.xml", raw)
    for k, name in enumerate(("word/1/1.jpg", "word/1/2.jpg")):
        _write(manual / name, _encode(_image(k)))
    data_dir = tmp_path / "tfds"
    tb.build("ic03", str(data_dir), str(manual))
    records = _read_all(TfdsSource("ic03", "test", data_dir))
    assert [r["text"] for r in records] == ["R&D", "café"]
    assert all("lexicon" not in r for r in records)     # empty lexicons are left out


def test_lexicon_file_keyed_by_path_and_count_mismatch():
    items = [ta.Item(name="word/1/1.jpg", text="a"), ta.Item(name="word/1/2.jpg", text="b")]
    ta.read_lexicon_file(b"word/1/2.jpg\tB,C\n1/1.jpg\tA\n", items, "lex.txt")
    assert [i.lexicon for i in items] == [["A"], ["B", "C"]]
    with pytest.raises(DataError, match="lex.txt has 1 lines but the annotations list 2"):
        ta.read_lexicon_file(b"A,B\n", items, "lex.txt")


# --- IC13: Challenge2_Test_Task3_Images/ + Challenge2_Test_Task3_GT.txt; training zip ---------

def test_ic13_folder_and_training_zip(tmp_path):
    manual = tmp_path / "manual"
    test_images = {f"word_{k}.png": _encode(_image(k)) for k in (1, 2, 3)}
    for name, data in test_images.items():
        _write(manual / "Challenge2_Test_Task3_Images" / name, data)
    gt = '\ufeffword_1.png, "Tiredness"\nword_2.png, "\\"Quoted\\""\r\nword_3.png, "a, b"\n\n'
    (manual / "Challenge2_Test_Task3_GT.txt").write_bytes(gt.encode("utf-8"))
    train_images = {"word_1.png": _encode(_image(7, mode="RGB"))}
    with zipfile.ZipFile(manual / "Challenge2_Training_Task3_Images_GT.zip", "w") as zf:
        zf.writestr("word_1.png", train_images["word_1.png"])
        zf.writestr("gt.txt", 'word_1.png, "Train"\n')
    data_dir = tmp_path / "tfds"
    tb.build("ic13", str(data_dir), str(manual))
    test = _read_all(TfdsSource("ic13", "test", data_dir))
    assert [(r["key"], r["id"], r["text"]) for r in test] == [
        ("ic13/test:0", "word_1.png", "Tiredness"), ("ic13/test:1", "word_2.png", '"Quoted"'),
        ("ic13/test:2", "word_3.png", "a, b")]
    assert [r["image"] for r in test] == list(test_images.values())
    train = _read_all(TfdsSource("ic13", "train", data_dir))
    assert [(r["text"], r["image"]) for r in train] == [("Train", train_images["word_1.png"])]


def test_ic13_bad_gt_line_names_the_line():
    with pytest.raises(DataError, match=r"gt.txt:2: expected"):
        ta.parse_ic13_gt(b'word_1.png, "a"\nno comma here\n', "gt.txt")


# --- Missing downloads show the instructions ---------------------------------------------------

@pytest.mark.parametrize("name, expect", [("iiit5k", "IIIT5K-Word_V3.0.tar.gz"),
                                          ("svt", "svt.zip"), ("ic03", "test/word.zip"),
                                          ("ic13", "Challenge2_Test_Task3_GT.txt")])
def test_missing_download_shows_instructions(tmp_path, name, expect):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "unrelated.txt").write_text("not it")
    with pytest.raises(DataError) as err:
        tb.build(name, str(tmp_path / "tfds"), str(manual))
    message = str(err.value)
    assert str(manual) in message and expect in message
    assert tb.BUILDERS[name].MANUAL_DOWNLOAD_INSTRUCTIONS in message


def test_absent_manual_dir_shows_instructions(tmp_path):
    with pytest.raises(DataError, match="does not exist or is empty") as err:
        tb.build("svt", str(tmp_path / "tfds"), str(tmp_path / "nowhere"))
    assert "http://vision.ucsd.edu/~kai/svt/" in str(err.value)


def test_missing_image_names_annotation_file(tmp_path):
    root = tmp_path / "manual" / "svt1"
    _write(root / "test.xml", SVT_XML.encode())
    with pytest.raises(DataError, match=r"test.xml: image 'img/14_03.jpg' not found"):
        tb.build("svt", str(tmp_path / "tfds"), str(tmp_path / "manual"))


# --- The synthetic set ------------------------------------------------------------------------

class _StandIn:
    """A SynthWords-like source: uint8 [H, W] arrays (one RGB, one bytes record too)."""

    def __init__(self, length: int):
        self.length = length

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        image = _image(i, 32, 20 + i, "RGB" if i == 1 else "L")
        return {"key": f"standin-{i}", "image": _encode(image) if i == 2 else image,
                "text": f"w{i}"}


def test_synth_builder_with_stand_in_source(tmp_path, monkeypatch):
    monkeypatch.setattr(tb, "make_synth_source", lambda config: _StandIn(config.size))
    data_dir = tmp_path / "tfds"
    builder = tb.build("grcnn_synth", str(data_dir), size=5, seed=3)
    assert builder.builder_config.name == "5_seed3"
    source = TfdsSource("grcnn_synth/5_seed3", "test", data_dir)
    expected = _StandIn(5)
    for i in range(5):
        rec, want = source[i], expected[i]
        assert (rec["key"], rec["id"], rec["text"]) == (f"grcnn_synth/5_seed3/test:{i}",
                                                        want["key"], want["text"])
        with Image.open(io.BytesIO(rec["image"])) as im:
            decoded = np.asarray(im)
        want_image = want["image"]
        if isinstance(want_image, bytes):
            assert rec["image"] == want_image
        else:
            np.testing.assert_array_equal(decoded, want_image)


def test_synth_builder_roundtrips_synthwords(tmp_path):
    synth = pytest.importorskip("grcnn_jax.data.synth.generator")
    data_dir = tmp_path / "tfds"
    tb.build("grcnn_synth", str(data_dir), size=20)
    # The spec form 'tfds:NAME/SPLIT' carries the config in the split: 'grcnn_synth', '20/test'.
    source = TfdsSource("grcnn_synth", split="20/test", data_dir=data_dir)
    words = synth.SynthWords(20, seed=tb.SYNTH_TEST_SEED)
    assert len(source) == 20
    for i in range(20):
        rec, want = source[i], words[i]
        assert rec["key"] == f"grcnn_synth/20/test:{i}"
        assert rec["text"] == want["text"]
        with Image.open(io.BytesIO(rec["image"])) as im:
            np.testing.assert_array_equal(np.asarray(im), want["image"])


# --- TfdsSource: errors, pickling, the loader -------------------------------------------------

@pytest.fixture(scope="module")
def tiny_synth(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    original = tb.make_synth_source
    tb.make_synth_source = lambda config: _StandIn(config.size)
    try:
        tb.build("grcnn_synth", str(data_dir), size=7)
    finally:
        tb.make_synth_source = original
    return data_dir


def test_source_pickles_and_reopens(tiny_synth):
    source = TfdsSource("grcnn_synth/7", "test", tiny_synth)
    before = source[3]
    clone = pickle.loads(pickle.dumps(source))
    assert clone._source is None                 # reopened lazily, not carried along
    assert len(clone) == 7 and clone[3] == before
    assert clone[-1] == source[6]
    with pytest.raises(IndexError):
        clone[7]


def test_source_by_builder_dir_and_slice(tiny_synth):
    builder_dir = tiny_synth / "grcnn_synth" / "7" / "1.0.0"
    source = TfdsSource(builder_dir=builder_dir, split="test[2:5]")
    assert len(source) == 3
    assert source[0]["text"] == "w2"
    assert source[0]["key"] == "grcnn_synth/7/test[2:5]:0"     # the index within the slice


def test_source_missing_dataset_split_or_empty(tmp_path, tiny_synth):
    with pytest.raises(DataError, match=r"'svt' is not prepared in data_dir .*build it"):
        TfdsSource("svt", "test", tmp_path)
    with pytest.raises(DataError, match=r"split 'validation'.*no such split; it has \['test'\]"):
        TfdsSource("grcnn_synth/7", "validation", tiny_synth)
    with pytest.raises(DataError, match="is empty"):
        TfdsSource("grcnn_synth/7", "test[7:]", tiny_synth)
    with pytest.raises(DataError, match="not found"):
        TfdsSource("no_such_dataset_here", "test", tmp_path)


def test_source_feeds_the_loader(tiny_synth):
    source = TfdsSource("grcnn_synth/7", "test", tiny_synth)
    ds = make_dataset(source, Preprocess(Charset(), height=32, width=100), batch_size=4,
                      train=False, num_workers=0)
    batches = list(ds)
    assert len(batches) == 2
    assert batches[0]["image"].shape == (4, 32, 100) and batches[0]["image"].dtype == np.uint8
    assert batches[0]["meta"]["key"] == [f"grcnn_synth/7/test:{i}" for i in range(4)]
    assert batches[0]["meta"]["text"] == ["w0", "w1", "w2", "w3"]
    assert batches[1]["mask"].tolist() == [1, 1, 1, 0]
    assert not batches[0]["skipped"] and not batches[1]["skipped"]


def test_command_builds_synth(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tb, "make_synth_source", lambda config: _StandIn(config.size))
    rc = tfds_cli.main(["build", "grcnn_synth", "--size", "3", "--data_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "prepared grcnn_synth/3 1.0.0" in out and "test: 3 examples" in out
    assert "tfds:grcnn_synth/3/test" in out
    rc = tfds_cli.main(["build", "ic13", "--manual_dir", str(tmp_path / "none"), "--data_dir",
                  str(tmp_path)])
    assert rc == 2 and "Challenge2_Test_Task3_Images.zip" in capsys.readouterr().err


@pytest.mark.parametrize("argv, culprit", [
    ([], "give a command"),
    (["make", "iiit5k"], "'make'"),
    (["build"], "build takes one dataset NAME"),
    (["instructions", "grcnn_synth"], "instructions 'grcnn_synth'"),
    (["instructions", "svt", "--data_dir", "x"], "--data_dir: for 'build' only"),
    (["build", "svt", "--size", "3"], "--size: for grcnn_synth only"),
    (["build", "svt", "--size", "three"], "--size"),
])
def test_command_refuses_a_wrong_command_line_in_one_line(argv, culprit):
    with pytest.raises(SystemExit) as e:
        tfds_cli.main(argv)
    message = str(e.value.code)
    assert message.startswith("FATAL") and "\n" not in message and culprit in message


def test_command_prints_instructions(capsys):
    assert tfds_cli.main(["instructions", "svt"]) == 0
    assert capsys.readouterr().out.strip() == Svt.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()
