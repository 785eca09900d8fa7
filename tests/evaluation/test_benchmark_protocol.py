"""evaluate --benchmark: standard sets found by name and listed in DTRB's order, every record
counted (labels adapted to the charset, unusable records wrong and named), PARSeq's table with a
Combined row weighted by sample count -- checked against the shipped model's own outputs,
computed here without the loader or the Evaluator."""

import io
import json
import re
import shutil
import types

import lmdb
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from helpers import IC03_MINI as IC03
from helpers import run_module
from grcnn_jax.text import ctc_host
from grcnn_jax.text import decode
from grcnn_jax.evaluation.protocol import (GROUPS, STANDARD_SETS, combine, evaluate_benchmark,
                                          find_sets, format_table)
from grcnn_jax.text.charset import Charset
from grcnn_jax.data.formats.crnn_lmdb import NUM_SAMPLES_KEY, write_lmdb
from grcnn_jax.data.errors import DataError
from grcnn_jax.evaluation.protocol import normalize as bp_normalize
from grcnn_jax.data.preprocess import Preprocess, adapt_label

CORRUPT = b"\x89PNG\r\n\x1a\n not an image"


def word_png(text: str) -> bytes:
    """A clean dark-on-light rendering of ``text`` (the shipped model reads these)."""
    font = ImageFont.load_default(size=26)
    left, _, right, _ = font.getbbox(text)
    im = Image.new("L", (right - left + 12, 40), 235)
    ImageDraw.Draw(im).text((6 - left, 20), text, fill=20, font=font, anchor="lm")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


# Per LMDB set: (what the image shows, or None for bytes that do not decode; the label;
# the label as scored, or None where the record is unusable; the reason then).
IIIT = [
    ("hotel", "hotel", "hotel", None),
    ("Cafe", "Café!", "cafe", None),               # adapted: lowercased, é folded, ! removed
    ("Coffee", "Coffee", "coffee", None),
    ("street", "STREET", "street", None),
    (None, "park", None, "bad_image"),
    ("exit", "", None, "empty_label"),
    ("open", "?!", None, "empty_label"),           # nothing left after adaptation
]
SVT = [
    ("STOP", "STOP", "stop", None),
    ("bank", "bank", "bank", None),
    ("abc", "abcdefghijklmnopqrstuvwxyzabcd", None, "too_long"),     # 30 > 25 label slots
]                                                  # + one record num-samples promises
CUTE = [("water", "water", "water", None), ("2017", "2017", "2017", None)]
EXTRA = [("gate", "gate", "gate", None), ("text", "Text", "text", None)]


def make_set(path, rows, missing: int = 0) -> None:
    write_lmdb(path, ({"image": CORRUPT if shows is None else word_png(shows), "text": label}
                      for shows, label, _, _ in rows))
    if missing:
        env = lmdb.open(str(path))
        with env.begin(write=True) as txn:
            txn.put(NUM_SAMPLES_KEY, str(len(rows) + missing).encode())
        env.close()


def expected_rows() -> dict:
    """Per set in the expected report order: (image bytes or None, target or None, reason)."""
    labels = (IC03 / "test_label.txt").read_text().split()
    files = {p.name: p for p in IC03.rglob("*.png")}
    names = [line.strip().replace("\\", "/").rsplit("/", 1)[-1]
             for line in (IC03 / "test.txt").read_text().splitlines() if line.strip()]
    ic03 = [(files[n].read_bytes(), label.lower(), None) for n, label in zip(names, labels)]

    def lmdb_rows(rows):
        return [(CORRUPT if shows is None else word_png(shows), target, reason)
                for shows, _, target, reason in rows]
    return {"IIIT5k_3000": lmdb_rows(IIIT),
            "SVT": lmdb_rows(SVT) + [(None, None, "missing_record")],
            "IC03_860": ic03, "CUTE80": lmdb_rows(CUTE), "aaa_extra": lmdb_rows(EXTRA)}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A benchmark folder: IIIT5k_3000 and SVT (LMDBs with unusable records), a copy of the
    ICDAR-03 fixture as IC03_860, CUTE80 one folder down (PARSeq's test/), another LMDB named
    to sort first, and a folder that is no set."""
    root = tmp_path_factory.mktemp("bench")
    make_set(root / "IIIT5k_3000", IIIT)
    make_set(root / "SVT", SVT, missing=1)
    shutil.copytree(IC03, root / "IC03_860")
    (root / "test").mkdir()
    make_set(root / "test" / "CUTE80", CUTE)
    make_set(root / "aaa_extra.lmdb", EXTRA)
    (root / "notes").mkdir()
    (root / "notes" / "README.txt").write_text("not a set")
    return root


@pytest.fixture(scope="module")
def ckpt():
    from grcnn_jax.inference.load import load_for_inference

    return load_for_inference()                     # the shipped model


@pytest.fixture(scope="module")
def scored(bench, ckpt):
    predictions = {}
    report = evaluate_benchmark(ckpt, str(bench), batch_size=8, num_workers=0,
                                predictions=predictions)
    return types.SimpleNamespace(report=report, predictions=predictions)


def independent_readings(ckpt, images: list[bytes]) -> list[tuple[str, float]]:
    """(greedy text, p(text | image)) per image: the model applied here, in one batch."""
    import jax

    from grcnn_jax.data.images import to_grayscale
    from grcnn_jax.data.preprocess import resize
    from grcnn_jax.models import create_model

    c = ckpt.config
    batch = np.zeros((32, c.image_height, c.image_width), np.uint8)
    for i, data in enumerate(images):
        batch[i] = resize(to_grayscale(data, c.data.grayscale), c.image_height, c.image_width,
                          c.data.keep_aspect)
    model = create_model(c.model, ckpt.charset.num_classes)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        {"params": ckpt.params, "batch_stats": ckpt.batch_stats}, batch)
    log_probs = ctc_host.log_softmax(np.asarray(logits))[:len(images)]
    texts = ctc_host.greedy_decode(log_probs.argmax(-1), ckpt.charset)
    return [(t, float(np.exp(ctc_host.ctc_log_likelihood(lp, ckpt.charset.encode(t)))))
            for t, lp in zip(texts, log_probs)]


def edit_distance(a: str, b: str) -> int:
    d = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, d[0] = d[0], i
        for j in range(1, len(b) + 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
    return d[len(b)]


# ----------------------------------------------------------------------------- no model
@pytest.mark.parametrize("label, chars, keep_case, adapted", [
    ("Café!", None, False, "cafe"),
    ("Café!", None, True, "Cafe"),
    ("New York", None, False, "newyork"),
    ("ﬁne", None, False, "fine"),
    ("?!", None, False, ""),
    ("hotel", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", False, "HOTEL"),        # uppercase-only charset
    ("Hi-Fi", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-", False, "Hi-Fi"),
])
def test_adapt_label(label, chars, keep_case, adapted):
    charset = Charset(chars) if chars else Charset()
    assert adapt_label(label, charset, keep_case=keep_case) == adapted


def test_adapting_preprocess_keeps_what_the_default_one_skips():
    record = {"key": "k", "image": word_png("Cafe"), "text": "Café!"}
    skipped = Preprocess(Charset())(record)
    assert getattr(skipped, "reason", "").startswith("unknown_chars")       # today's default
    ex = Preprocess(Charset(), adapt_labels=True)(record)
    assert ex["text"] == "cafe" and list(ex["labels"][:4]) == Charset().encode("cafe")
    true_case = Preprocess(Charset(), adapt_labels=True, keep_case=True)(record)
    assert true_case["text"] == "Cafe" and true_case["length"] == 4


def test_find_sets_names_order_and_nesting(tmp_path):
    def fake(where, marker="data.mdb"):
        (tmp_path / where).mkdir(parents=True)
        (tmp_path / where / marker).write_bytes(b"")
    for where in ["Uber", "ArT", "SVTP", "iiit5k", "IIIT5k_3000.lmdb", "ic13_857", "test/SVT",
                  "test/SVTP", "test/COCOv1.4"]:
        fake(where)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    (tmp_path / "lock.mdb").write_bytes(b"")
    sets, ignored = find_sets(str(tmp_path))
    assert [s.name for s in sets] == ["IIIT5k_3000", "SVT", "ic13_857", "SVTP", "ArT",
                                      "COCOv1.4", "Uber"]
    assert [s.standard for s in sets] == ["IIIT5k_3000", "SVT", "IC13_857", "SVTP", None, None,
                                          None]
    assert sets[1].where == "test/SVT"
    assert sorted(i.split(":")[0] for i in ignored) == ["iiit5k", "test/SVTP"]

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=re.escape(f"--benchmark {str(empty)!r}: no benchmark")):
        find_sets(str(empty))
    with pytest.raises(DataError, match="no such folder"):
        find_sets(str(tmp_path / "absent"))


def test_combined_and_group_rows():
    rows = [{"name": n, "standard": n, "count": 10 * (i + 1), "word_accuracy": i / 10,
             "one_minus_ned": 0.5, "confidence": 0.25, "unusable": {}} for i, (n, _) in
            enumerate(STANDARD_SETS)]
    combined = combine(rows)
    n = sum(r["count"] for r in rows)
    assert combined["count"] == n == 550
    assert combined["word_accuracy"] == pytest.approx(sum(i * 10 * (i + 1) / 10
                                                          for i in range(10)) / 550)
    assert combined["word_accuracy"] != pytest.approx(np.mean([r["word_accuracy"] for r in rows]))
    by_name = {r["name"]: r for r in rows}
    groups = [combine([by_name[m] for m in members], label) for label, members in GROUPS]
    report = {"checkpoint": "c", "step": 1, "benchmark": "b", "case_sensitive": False,
              "beam_width": 1, "decoding": "greedy", "batch_size": 8, "devices": "cpu",
              "datasets": rows,
              "combined": combined, "groups": groups, "ignored": [], "notes": []}
    table = format_table(report).splitlines()
    names = [ln.split("|")[1].strip() for ln in table if ln.startswith("| ")]
    assert names == ["Dataset"] + [n for n, _ in STANDARD_SETS] + ["Combined",
                                                                    "Benchmark (subset)",
                                                                    "Benchmark"]
    # the subset group: IIIT5k_3000 (10, 0.0), SVT (20, 0.1), IC13_857 (50, 0.4),
    # IC15_1811 (70, 0.6), SVTP (90, 0.8), CUTE80 (100, 0.9)
    assert groups[0]["count"] == 340
    assert groups[0]["word_accuracy"] == pytest.approx((2 + 20 + 42 + 72 + 90) / 340)


# ----------------------------------------------------------------------------- the model
def test_every_record_is_counted_and_scored(bench, ckpt, scored):
    report, predictions = scored.report, scored.predictions
    expected = expected_rows()
    rows = report["datasets"]
    assert [r["name"] for r in rows] == list(expected)                  # DTRB order, then others
    assert [r["standard"] for r in rows] == ["IIIT5k_3000", "SVT", "IC03_860", "CUTE80", None]
    usable = [(name, i) for name, recs in expected.items() for i, r in enumerate(recs)
              if r[2] is None]
    readings = dict(zip(usable, independent_readings(
        ckpt, [expected[name][i][0] for name, i in usable])))
    totals = {"count": 0, "correct": 0, "ned": 0.0, "confidence": 0.0}
    for row in rows:
        recs = expected[row["name"]]
        assert row["count"] == len(recs) == len(predictions[row["name"]])     # nothing dropped
        correct, ned, confidence, unusable = 0, 0.0, 0.0, {}
        for i, ((_, target, reason), item) in enumerate(zip(recs, predictions[row["name"]])):
            if reason is not None:
                assert item["problem"].startswith(reason) and not item["correct"]
                unusable[reason] = unusable.get(reason, 0) + 1
                ned += 1.0
                continue
            text, p = readings[(row["name"], i)]
            # The table's targets are the standard protocol's (letters and digits,
            # lowercase); a cased reader's adapted label keeps case and marks, which the
            # protocol then reduces the same way.
            assert item["problem"] is None and bp_normalize(item["text"]) == target
            assert item["prediction"] == text
            assert item["confidence"] == pytest.approx(p, rel=2e-3, abs=1e-6)
            reduced = bp_normalize(text)
            correct += reduced == target
            ned += edit_distance(reduced, target) / max(len(reduced), len(target))
            confidence += p
        n = len(recs)
        assert row["unusable"] == unusable
        assert row["correct"] == correct
        assert row["word_accuracy"] == pytest.approx(correct / n, abs=1e-12)
        assert row["one_minus_ned"] == pytest.approx(1 - ned / n, abs=1e-12)
        assert row["confidence"] == pytest.approx(confidence / n, rel=2e-3, abs=1e-6)
        totals["count"] += n
        totals["correct"] += correct
        totals["ned"] += ned
        totals["confidence"] += confidence

    assert {r["name"]: r["unusable"] for r in rows if r["unusable"]} == {
        "IIIT5k_3000": {"bad_image": 1, "empty_label": 2},
        "SVT": {"missing_record": 1, "too_long": 1}}
    iiit_keys = [k for k, _ in rows[0]["unusable_records"]]
    assert [k.rsplit(":", 1)[1] for k in iiit_keys] == [
        "image-000000005", "image-000000006", "image-000000007"]
    # The shipped model reads the clean words: the protocol does not hide its successes.
    assert rows[2]["word_accuracy"] == 1.0 and rows[0]["correct"] >= 3

    combined = report["combined"]
    n = totals["count"]
    assert combined["count"] == n == 7 + 4 + 6 + 2 + 2
    weighted = sum(r["word_accuracy"] * r["count"] for r in rows) / n
    assert combined["word_accuracy"] == pytest.approx(totals["correct"] / n, abs=1e-12)
    assert combined["word_accuracy"] == pytest.approx(weighted, abs=1e-12)
    assert combined["one_minus_ned"] == pytest.approx(1 - totals["ned"] / n, abs=1e-12)
    assert combined["confidence"] == pytest.approx(totals["confidence"] / n, rel=2e-3)
    unweighted = np.mean([r["word_accuracy"] for r in rows])
    assert abs(combined["word_accuracy"] - unweighted) > 1e-3       # weighting matters here
    assert report["groups"] == [] and report["ignored"] == []


def test_table_lists_sets_in_order_and_the_unusable_records(scored):
    table = format_table(scored.report)
    lines = table.splitlines()
    names = [ln.split("|")[1].strip() for ln in lines if ln.startswith("| ")]
    assert names == ["Dataset", "IIIT5k_3000", "SVT", "IC03_860", "CUTE80", "aaa_extra",
                     "Combined"]
    assert lines[1].split("|")[2:6] == [" # samples ", " Accuracy ", " 1 - NED ", " Confidence "]
    combined = scored.report["combined"]
    [total] = [ln for ln in lines if ln.startswith("| Combined ")]
    assert total.split("|")[2:6] == [
        f" {combined['count']:>9} ", f" {100 * combined['word_accuracy']:>8.2f} ",
        f" {100 * combined['one_minus_ned']:>7.2f} ", f" {100 * combined['confidence']:>10.2f} "]
    assert ("IIIT5k_3000: bad_image 1 (image-000000005); empty_label 2 (image-000000006, "
            "image-000000007)") in table
    assert "SVT: missing_record 1 (image-000000004); too_long 1 (image-000000003)" in table


def run_evaluate(*args, timeout=240):
    return run_module("grcnn_jax.evaluate", *args, check=False, timeout=timeout)


def test_cli_prints_the_table_and_writes_json(bench, scored, tmp_path):
    out, preds = tmp_path / "report.json", tmp_path / "predictions.jsonl"
    proc = run_evaluate(f"--benchmark={bench}", "--batch_size=8", "--num_workers=1",
                        f"--output={out}", f"--predictions={preds}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    names = [ln.split("|")[1].strip() for ln in proc.stdout.splitlines() if ln.startswith("| ")]
    assert names == ["Dataset", "IIIT5k_3000", "SVT", "IC03_860", "CUTE80", "aaa_extra",
                     "Combined"]
    assert "bad_image 1 (image-000000005)" in proc.stdout
    report = json.loads(out.read_text())
    assert report["protocol"] == "benchmark"
    for a, b in zip(report["datasets"], scored.report["datasets"]):      # worker or not: same
        assert (a["name"], a["count"], a["correct"], a["unusable"]) == (
            b["name"], b["count"], b["correct"], b["unusable"])
        assert a["one_minus_ned"] == pytest.approx(b["one_minus_ned"], abs=1e-12)
    lines = [json.loads(ln) for ln in preds.read_text().splitlines()]
    assert len(lines) == report["combined"]["count"] == 21
    assert sum(ln["problem"] is not None for ln in lines) == 5


def test_cli_refuses_benchmark_with_data(bench):
    proc = run_evaluate(f"--benchmark={bench}", f"--data={IC03}", timeout=120)
    assert proc.returncode != 0
    assert "--benchmark DIR or --data, not both" in proc.stderr
