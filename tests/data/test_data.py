"""LMDB (CRNN format), ICDAR-03 folders, and the loader: round trips, policies, resumption."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from helpers import IC03_MINI as IC03
from grcnn_jax.cli import make_lmdb
from grcnn_jax.text.charset import Charset
from grcnn_jax.data.formats import crnn_lmdb
from grcnn_jax.data.formats.crnn_lmdb import LmdbSource, write_lmdb
from grcnn_jax.data.errors import DataError
from grcnn_jax.data.formats.folders import Icdar03Folder
from grcnn_jax.data.images import to_grayscale
from grcnn_jax.data.pipeline import BatchIterator, make_dataset
from grcnn_jax.data.preprocess import Preprocess, Problem, check_policy, resize


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


class MemorySource:
    """Records i = 0..n-1: a random image and a text picked from ``texts``; some broken on purpose."""

    def __init__(self, n, texts=("hello", "w0rld", "aab", "x"), broken=()):
        self.n, self.texts, self.broken = n, texts, set(broken)

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image = np.random.default_rng(i).integers(0, 256, (20, 10 + i % 50), dtype=np.uint8)
        return {"key": f"mem-{i}", "image": b"not an image" if i in self.broken else png(image),
                "text": self.texts[i % len(self.texts)]}


@pytest.fixture
def label_file(tmp_path):
    """A label file with images in a subfolder, tab- and space-separated lines, unicode text."""
    (tmp_path / "imgs").mkdir()
    lines = []
    for i in range(12):
        img = np.random.default_rng(i).integers(0, 256, (24, 30 + 5 * i, 3), dtype=np.uint8)
        Image.fromarray(img).save(tmp_path / "imgs" / f"{i}.png")
        text = f"word {i}" if i % 3 == 0 else f"Wörd{i}"
        sep = "\t" if i % 2 == 0 else " "
        if sep == " ":
            text = text.replace(" ", "")
        lines.append(f"imgs/{i}.png{sep}{text}")
    path = tmp_path / "labels.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_lmdb_round_trip_through_the_tool(tmp_path, label_file):
    out = tmp_path / "lmdb"
    assert make_lmdb.main(["--labels", str(label_file), str(out)]) == 0
    source = LmdbSource(out)
    expected = list(crnn_lmdb.read_label_file(label_file))
    assert len(source) == len(expected) == 12
    for i, want in enumerate(expected):
        got = source[i]
        assert got["image"] == want["image"] and got["text"] == want["text"]
        assert got["key"].endswith(f"image-{i + 1:09d}")
    assert expected[0]["text"] == "word 0"                      # tab: the text keeps its space
    assert source[-1]["text"] == expected[-1]["text"]
    with pytest.raises(IndexError):
        source[12]


@pytest.mark.parametrize("argv, culprit", [
    (["--labels", "x.txt", "--icdar03", "IC03", "out"], "--labels and --icdar03"),
    (["out"], "--labels FILE or --icdar03 FOLDER, got neither"),
    (["--labels", "x.txt"], "OUTPUT path"),
    (["--labels", "x.txt", "a", "b"], "OUTPUT path"),
    (["--labels", "x.txt", "--lmdb", "out"], "flag 'lmdb'"),
])
def test_lmdb_tool_refuses_a_wrong_command_line_in_one_line(tmp_path, monkeypatch, argv,
                                                             culprit):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        make_lmdb.main(argv)
    message = str(e.value.code)
    assert message.startswith("FATAL") and "\n" not in message and culprit in message
    assert os.listdir(tmp_path) == []                            # nothing written


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_lmdb_write_leaves_nothing_so_it_can_run_again(tmp_path, label_file, existing,
                                                                capsys):
    """A bad line half-way (its image is missing): exit 2 naming file and line, and the output
    is gone (or left empty, when it was an empty folder), so the fixed command runs."""
    out = tmp_path / "lmdb"
    if existing:
        out.mkdir()
    lines = label_file.read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "broken.txt"
    broken.write_text("\n".join(lines[:5] + ["imgs/gone.png\tgone"] + lines[5:]) + "\n",
                      encoding="utf-8")
    assert make_lmdb.main(["--labels", str(broken), str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]              # after the progress bar
    assert err.startswith("FATAL DataError") and f"{broken}:6" in err
    assert (os.listdir(out) == []) if existing else not out.exists()
    assert make_lmdb.main(["--labels", str(label_file), str(out)]) == 0
    assert len(LmdbSource(out)) == 12


def test_lmdb_through_the_loader_with_two_workers(tmp_path, label_file):
    out = tmp_path / "lmdb"
    make_lmdb.main(["--labels", str(label_file), str(out)])
    source = LmdbSource(out)
    charset = Charset("0123456789abcdefghijklmnopqrstuvwxyzö ")
    pre = Preprocess(charset, max_label_length=8)
    with BatchIterator(make_dataset(source, pre, 4, train=False, num_workers=2)) as it:
        batches = list(it)
    keys = [k for b in batches for k in b["meta"]["key"]]
    assert sorted(keys) == sorted(source[i]["key"] for i in range(12))
    by_key = {k: (b, j) for b in batches for j, k in enumerate(b["meta"]["key"])}
    for i in range(12):
        record = source[i]
        batch, j = by_key[record["key"]]
        want_image = resize(to_grayscale(record["image"]), 32, 100, False)
        np.testing.assert_array_equal(batch["image"][j], want_image)
        text = record["text"].lower()
        assert batch["meta"]["text"][j] == text
        n = len(text)
        np.testing.assert_array_equal(batch["labels"][j, :n], charset.encode(text))
        assert batch["label_paddings"][j, :n].sum() == 0 and batch["label_paddings"][j, n:].all()
    assert all(b["image"].dtype == np.uint8 and b["image"].shape == (4, 32, 100) for b in batches)


def test_lmdb_missing_and_empty_fail_at_once(tmp_path):
    with pytest.raises(DataError, match="nowhere.*does not exist"):
        LmdbSource(tmp_path / "nowhere")
    assert write_lmdb(tmp_path / "empty", []) == 0
    with pytest.raises(DataError, match="empty"):
        LmdbSource(tmp_path / "empty")
    with pytest.raises(DataError, match="existing non-empty"):
        write_lmdb(tmp_path / "empty", [])


def test_label_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "labels.txt"
    bad.write_text("a.png hello\nnospace\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"labels.txt:1: cannot read image"):
        list(crnn_lmdb.read_label_file(bad))
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    with pytest.raises(DataError, match=r"labels.txt:2: expected"):
        list(crnn_lmdb.read_label_file(bad))


def test_icdar03_folder_resolves_foreign_paths_and_lexicons():
    folder = Icdar03Folder(IC03)
    assert len(folder) == 6
    texts = [folder[i]["text"] for i in range(6)]
    assert texts == ["Hotel", "EXIT", "park", "2017", "Coffee", "Stop"]
    # test.txt line 2 is /home/jianfeng/.../word_2.png: found by name in images/.
    assert folder[1]["key"] == os.path.join(str(IC03), "images", "word_2.png")
    assert folder[0]["lexicon"][:2] == ["hotel", "motel"] and len(folder[0]["lexicon"]) == 10
    assert Image.open(io.BytesIO(folder[3]["image"])).size[1] == 40


def test_icdar03_folder_into_lmdb_keeps_lexicons(tmp_path):
    out = tmp_path / "ic03.lmdb"
    assert make_lmdb.main(["--icdar03", str(IC03), str(out)]) == 0
    source, folder = LmdbSource(out), Icdar03Folder(IC03)
    for i in range(len(folder)):
        assert source[i]["lexicon"] == folder[i]["lexicon"]
        assert source[i]["image"] == folder[i]["image"]


def test_icdar03_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        Icdar03Folder(tmp_path / "missing")
    with pytest.raises(DataError, match="test.txt"):
        Icdar03Folder(tmp_path)
    (tmp_path / "test.txt").write_text("/elsewhere/a.png\n/elsewhere/b.png\n")
    (tmp_path / "test_label.txt").write_text("a\n")
    with pytest.raises(DataError, match="2 lines but"):
        Icdar03Folder(tmp_path)
    (tmp_path / "test_label.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"test.txt:1: image '/elsewhere/a.png' not found"):
        Icdar03Folder(tmp_path)


def test_bad_records_are_counted_with_their_keys():
    source = MemorySource(40, texts=("Hello", "", "bad!", "x" * 30, "aab", "ok"), broken={4, 16})
    pre = Preprocess(Charset())
    with BatchIterator(make_dataset(source, pre, 4, train=False)) as it:
        batches = list(it)
    kept = [k for b in batches for k in b["meta"]["key"]]
    counts = it.skipped_counts
    assert counts["empty_label"] == 7 and counts["unknown_chars"] == 7 and counts["too_long"] == 7
    assert counts["bad_image"] == 2 and set(it.skipped_examples["bad_image"]) == {"mem-4", "mem-16"}
    assert len(kept) + sum(counts.values()) == 40
    assert "Hello".lower() in batches[0]["meta"]["text"]           # mapped to lowercase
    assert "bad_image: 2" in it.skipped_summary()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_records_after_the_last_batch_are_counted_too(num_workers):
    """An evaluation pass whose last records are all bad: no batch carries them, yet they
    are counted (they were lost, and a set's images no longer added up)."""
    source = MemorySource(7, texts=("ok", "ok", "ok", "ok", "", "", ""))
    with BatchIterator(make_dataset(source, Preprocess(Charset()), 4, train=False,
                                    num_workers=num_workers)) as it:
        batches = list(it)
    assert sum(len(b["meta"]["key"]) for b in batches) == 4        # (workers batch apart)
    assert it.skipped_counts == {"empty_label": 3}


@pytest.mark.parametrize("case,source", [
    ("bad_image", MemorySource(5, broken={2})),
    ("unknown_chars", MemorySource(5, texts=("ok", "Bad!"))),
    ("empty_label", MemorySource(5, texts=("ok", "  "))),
    ("too_long", MemorySource(5, texts=("ok", "a" * 26))),
])
def test_fail_policy_names_the_record(case, source):
    pre = Preprocess(Charset(), policy=tuple(check_policy({case: "fail"}).items()))
    with pytest.raises(DataError, match=rf"record 'mem-\d': .*{case}=fail"):
        list(BatchIterator(make_dataset(source, pre, 2, train=False)))


def test_repeats_count_toward_ctc_frames():
    pre = Preprocess(Charset(), max_label_length=30, max_frames=26)
    assert pre.text_to_ids("k", "ab" * 13)[0] == "ab" * 13            # 26 labels, no repeats: fits
    problem = pre.text_to_ids("k", "a" * 14)                       # 14 labels + 13 blanks
    assert "27 CTC frames" in problem.reason


def test_policy_validation():
    with pytest.raises(DataError, match="bad_imgae"):
        check_policy({"bad_imgae": "skip"})
    with pytest.raises(DataError, match="too_long='lower'"):
        check_policy({"too_long": "lower"})


def test_keep_aspect_pads_instead_of_stretching():
    gray = np.full((16, 20), 200, np.uint8)
    gray[:, -1] = 7
    out = resize(gray, 32, 100, keep_aspect=True)
    assert out.shape == (32, 100)
    assert (out[:, 40:] == 7).all()                                 # padded with the last column
    assert resize(gray, 32, 100, keep_aspect=False).shape == (32, 100)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_restored_state_gives_the_same_next_batches(num_workers):
    source = MemorySource(30, broken={4})
    pre = Preprocess(Charset())

    def iterator():
        return BatchIterator(make_dataset(source, pre, 4, train=True, seed=3,
                                          num_workers=num_workers))

    with iterator() as it:
        for _ in range(9):                                          # past one epoch
            next(it)
        state = it.get_state()
        expected = [next(it) for _ in range(5)]
    with iterator() as resumed:
        resumed.set_state(state)
        got = [next(resumed) for _ in range(5)]
    for a, b in zip(expected, got):
        assert a["meta"]["key"] == b["meta"]["key"]
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["labels"], b["labels"])


def test_hosts_read_their_share_of_each_global_batch():
    source = MemorySource(16)
    pre = Preprocess(Charset())
    with BatchIterator(make_dataset(source, pre, 8, train=True, seed=0)) as it:
        single = [next(it)["meta"]["key"] for _ in range(4)]              # two epochs of 16
    hosts = []
    for shard in range(2):
        with BatchIterator(make_dataset(source, pre, 4, train=True, seed=0, shard_index=shard,
                                        shard_count=2)) as it:
            hosts.append([next(it)["meta"]["key"] for _ in range(4)])
    for k in range(4):
        assert hosts[0][k] + hosts[1][k] == single[k]
    assert sorted(single[0] + single[1]) == sorted(single[2] + single[3])    # each epoch: all 16
    assert single[0] + single[1] != single[2] + single[3]                    # reshuffled


def test_empty_source_fails_at_once():
    with pytest.raises(DataError, match="empty"):
        make_dataset(MemorySource(0), Preprocess(Charset()), 4, train=True)


# --- augmentation -----------------------------------------------------------------------------

def _first_batches(pre, train, n=2, seed=0):
    it = iter(make_dataset(MemorySource(40), pre, 8, train=train, seed=seed))
    return [next(it) for _ in range(n)]


def test_augmentation_varies_training_images_only_and_is_reproducible():
    plain, aug = Preprocess(Charset()), Preprocess(Charset(), augment=True)
    a, b = _first_batches(plain, True), _first_batches(aug, True)
    again = _first_batches(aug, True)
    for x, y, z in zip(a, b, again):
        assert x["meta"]["key"] == y["meta"]["key"]           # same records, same order
        assert x["image"].shape == y["image"].shape and y["image"].dtype == np.uint8
        np.testing.assert_array_equal(y["image"], z["image"])  # a pure function of the seed
        np.testing.assert_array_equal(x["labels"], y["labels"])
    changed = [not np.array_equal(x["image"][i], y["image"][i])
               for x, y in zip(a, b) for i in range(8)]
    assert 0.3 <= np.mean(changed) < 1.0
    for x, y in zip(_first_batches(plain, False), _first_batches(aug, False)):
        np.testing.assert_array_equal(x["image"], y["image"])   # evaluation: never augmented


def test_a_cased_charset_keeps_the_label_case_under_the_lower_policy():
    from grcnn_jax.config.defaults import CASED_CHARSET

    cased, plain = Charset(CASED_CHARSET), Charset()
    record = {"key": "k", "image": np.full((32, 80), 200, np.uint8), "text": "EXIT-Now!"}
    assert Preprocess(cased)(record)["text"] == "EXIT-Now!"
    assert Preprocess(plain)(dict(record, text="EXIT"))["text"] == "exit"
    # Lowercased only where the charset lacks the character: 'É' -> 'é', still unknown.
    problem = Preprocess(Charset(CASED_CHARSET[:36] + "ABC"))(dict(record, text="CAFÉ"))
    assert isinstance(problem, Problem) and "'é'" in problem.reason


def test_distortion_keeps_the_size_and_moves_the_text():
    from grcnn_jax.data.preprocess import distort

    img = np.full((32, 100), 230, np.uint8)
    img[10:22, 10:90] = 20                                    # a dark bar: the "word"
    outs = [distort(img, np.random.default_rng(i)) for i in range(40)]
    assert all(o.shape == img.shape and o.dtype == np.uint8 for o in outs)
    assert sum(not np.array_equal(o, img) for o in outs) == 40
    # Edges are repeated, never filled black: the corners keep the background's grey.
    assert min(int(o[[0, 0, -1, -1], [0, -1, 0, -1]].min()) for o in outs) > 150
    # Tilted, sheared or bent: the bar's centre row differs between its two ends somewhere.
    def tilt(o):
        rows = np.arange(32)[:, None]
        dark = o < 120
        ends = [dark[:, 15:25], dark[:, 75:85]]
        return abs(float((rows * ends[0]).sum() / max(ends[0].sum(), 1))
                   - float((rows * ends[1]).sum() / max(ends[1].sum(), 1)))
    assert max(tilt(o) for o in outs) > 1.5


def test_an_arc_bends_the_word_round_a_circle_below_or_above():
    from grcnn_jax.data.preprocess import bend_arc

    img = np.full((20, 120), 200, np.uint8)
    img[8:12, 4:116] = 10                                     # a dark bar along the middle row
    img[0] = 190                                              # the border's median: 200
    assert bend_arc(img, 0.0) is img

    def centre_row(o, x):                                     # the bar's mean row at column x
        dark = np.nonzero(o[:, x] < 100)[0]
        return dark.mean()

    down = bend_arc(img, 1.5)                                 # the circle below: ends droop
    h, w = down.shape
    assert down.dtype == np.uint8 and h > 20 and 110 < w < 130  # the arc's bounding box
    assert centre_row(down, w // 2) < h / 3                   # the bar's middle is near the top
    assert centre_row(down, 14) - centre_row(down, w // 2) > 10
    # Letters stand on the arc, turned: the bar stays 4 px thick at its middle and its ends.
    assert (down[:, w // 2] < 100).sum() in (3, 4, 5)
    assert np.median(down[[0, -1]]) == 200                    # no source: the border's median
    # The circle above is the same word upside down, bent, and turned back.
    up = bend_arc(img, -1.5)
    np.testing.assert_array_equal(up, bend_arc(img[::-1], 1.5)[::-1])
    assert centre_row(up, w // 2) > 2 * h / 3
    rgb = bend_arc(np.stack([img] * 3, -1), 1.5)
    np.testing.assert_array_equal(rgb[..., 1], down)


def test_augmentation_strength_scales_how_far_images_move_and_reaches_the_loader():
    from grcnn_jax.data.preprocess import augment

    img = np.full((32, 100), 220, np.uint8)
    img[9:23, 8:92:6] = 30                                    # dark strokes: the "letters"
    example = {"image": img, "text": "x"}

    def change(strength):                                     # mean |augmented - original|
        return np.mean([np.abs(augment(example, np.random.default_rng(i), strength)["image"]
                               .astype(np.int16) - img).mean() for i in range(60)])

    weak, recipe, strong = change(0.0), change(1.0), change(2.0)
    assert weak < recipe < strong and strong > 1.3 * recipe
    # The loader passes the preprocess' strength on: other images from the same seed.
    same = [b["image"] for b in _first_batches(Preprocess(Charset(), augment=True), True)]
    again = _first_batches(Preprocess(Charset(), augment=True, augment_strength=1.0), True)
    harder = _first_batches(Preprocess(Charset(), augment=True, augment_strength=2.0), True)
    for x, y, z in zip(same, again, harder):
        np.testing.assert_array_equal(x, y["image"])
        assert not np.array_equal(x, z["image"])


def test_edge_cut_bounds_what_crop_jitter_takes_from_the_ends_and_reaches_the_loader():
    from grcnn_jax.data.preprocess import augment

    img = np.full((32, 100), 220, np.uint8)
    img[20:26, 95:99] = 30                          # a full stop at the right edge of the crop
    example = {"image": img, "text": "x."}

    def kept(edge_cut):                             # of 60 draws, how many still show it
        out = [augment(example, np.random.default_rng(i), 0.0, edge_cut)["image"]
               .astype(np.int16) for i in range(60)]
        return sum(np.abs(a - np.median(a)).max() > 100 for a in out)   # either polarity

    assert kept(0.0) == 60 and kept(0.06) < 60
    same = [b["image"] for b in _first_batches(Preprocess(Charset(), augment=True), True)]
    looser = _first_batches(Preprocess(Charset(), augment=True, augment_edge_cut=0.0), True)
    assert any(not np.array_equal(x, y["image"]) for x, y in zip(same, looser))


def test_augmentation_passes_problems_through():
    from grcnn_jax.data.preprocess import Problem, augment

    problem = Problem("k", "bad_image: x")
    assert augment(problem, np.random.default_rng(0)) is problem


def test_a_misspelt_grayscale_mode_is_refused_naming_the_field():
    with pytest.raises(DataError, match="config.data.grayscale='lum'"):
        Preprocess(Charset(), grayscale="lum")


def test_configs_saved_before_the_grayscale_field_read_luminance():
    import ml_collections

    from conftest import load_config
    from grcnn_jax.config.defaults import gray_mode

    assert gray_mode(ml_collections.ConfigDict({"data": {"keep_aspect": False}})) == "luma"
    assert gray_mode(load_config("quickstart")) == "principal"


def test_several_validation_sets_are_scored_each_under_its_name():
    from conftest import load_config
    from grcnn_jax.assemble import open_val_sets

    config = load_config("quickstart")
    config.data.synth_val_size = 10
    config.data.val = f"synth,{IC03}"
    named = open_val_sets(config)
    assert [name for name, _ in named] == ["val", "val/synth", "val/ic03_mini"]
    assert [len(src) for _, src in named] == [16, 10, 6]
    config.data.val = "synth"
    assert [name for name, _ in open_val_sets(config)] == ["val"]


def test_evaluation_loads_stored_records_in_process_and_renders_with_workers():
    from grcnn_jax.data.pipeline import eval_workers
    from grcnn_jax.data.sources import WeightedSources, open_source

    folder, synth = Icdar03Folder(IC03), open_source("synth", synth={"length": 4})
    assert eval_workers(folder, None, 2) == 0
    assert eval_workers(synth, None, 2) == 2
    assert eval_workers(open_source(f"synth,{IC03}", synth={"length": 4}), None, 1) == 1
    assert eval_workers(WeightedSources([folder, synth], [0.5, 0.5]), None, 1) == 1
    assert eval_workers(folder, 3, 2) == 3 and eval_workers(synth, 0, 2) == 0
