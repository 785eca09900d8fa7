"""The side-by-side benchmark's machinery: subprocess workers, table, ratios, JSON."""

import json
import sys

import pytest

from helpers import IC03_MINI, TINY, assert_one_fatal_line, run_module
from benchmarks import peer

# The peer script's shape without torch: what peer.py runs as a script, and what
# peer_widths.py loads as a module and resizes (its GRCNN, GRCL, BLSTM, nn, torch, main).
FAKE_PEER = """
import contextlib, json, sys, types
NUM_CLASSES = 37
torch = types.SimpleNamespace(device=lambda name: contextlib.nullcontext())
class _Layer:
    def __init__(self, *args, **kwargs):
        self.args = args
class Conv2d(_Layer): pass
class ReLU(_Layer): pass
class MaxPool2d(_Layer): pass
class BatchNorm2d(_Layer): pass
class GRCL(_Layer): pass
class BLSTM(_Layer): pass
nn = types.SimpleNamespace(Conv2d=Conv2d, ReLU=ReLU, MaxPool2d=MaxPool2d, BatchNorm2d=BatchNorm2d)
class GRCNN:
    def __init__(self, iterations=5, hidden=256, num_classes=NUM_CLASSES):
        self.features = [Conv2d(1, 64, 3), ReLU(), MaxPool2d(2), GRCL(64, 64, iterations),
                         MaxPool2d(2), GRCL(64, 128, iterations), MaxPool2d(2),
                         GRCL(128, 256, iterations), MaxPool2d(2), Conv2d(256, 512, 2),
                         BatchNorm2d(512), ReLU()]
        self.sequence = [BLSTM(512, hidden, 512), BLSTM(512, hidden, num_classes)]
def flops_summary(iterations, hidden):
    return [], 1.5e9, 4.5e9
def main(argv):
    mode = argv[0]
    if mode == "--help":
        sys.exit(0)
    arg = lambda name: int(argv[argv.index(name) + 1])
    model = GRCNN(arg("--T"), arg("--hidden"))
    _, forward, train = flops_summary(arg("--T"), arg("--hidden"))
    print(json.dumps({"kind": "env"}))
    print(json.dumps({"kind": mode, "median_s": arg("--batch") / 10.0,
                      "gflop_per_image": (train if mode == "train" else forward) / 1e9,
                      "peak_rss_mb": 100.0, "torch": "fake",
                      "layers": [layer.args for layer in model.features + model.sequence]}))
if __name__ == "__main__":
    main(sys.argv[1:])
"""


def test_summarize_ratios_and_mfu():
    records = [
        {"config": "grcl", "batch": 4, "mode": "train", "dtype": "float32", "who": who,
         "median_s": s, "compile_s": 1.0, "peak_rss_mb": 10.0, "gflop_per_image": 5.0}
        for who, s in (("ours", 1.0), ("ours", 3.0), ("ours", 2.0), ("peer", 4.0))]
    rows = {r["who"]: r for r in peer.summarize(records, peak_gflops=100.0)}
    assert rows["ours"]["images_per_s"] == 2.0 and rows["ours"]["rounds"] == 3  # median 2 s
    assert rows["ours"]["vs_peer"] == 2.0 and rows["peer"]["vs_peer"] is None
    assert rows["ours"]["achieved_gflops"] == 10.0 and rows["ours"]["mfu"] == 0.1


def test_the_ratio_is_the_median_of_the_rounds_ratios(capsys):
    """Per round, peer / ours step time; the median of those, not the ratio of the medians
    (a slow round of the machine hits both sides of its ratio)."""
    times = {"ours": [1.0, 2.0, 1.1, 0.9], "peer": [1.5, 2.0, 1.2, 1.8]}  # ratios 1.5 1 1.09 2
    records = [{"config": "grcl", "batch": 4, "mode": "train", "dtype": "float32", "who": who,
                "round": r, "median_s": s, "compile_s": 1.0, "peak_rss_mb": 10.0,
                "gflop_per_image": 5.0} for who, ts in times.items() for r, s in enumerate(ts)]
    ours = next(r for r in peer.summarize(records) if r["who"] == "ours")
    assert ours["vs_peer_rounds"] == pytest.approx([1.5, 1.0, 1.2 / 1.1, 2.0])
    assert ours["vs_peer"] == pytest.approx((1.5 + 1.2 / 1.1) / 2)
    assert (ours["vs_peer_min"], ours["vs_peer_max"]) == (1.0, 2.0)
    # ratio of the medians would be 1.65 / 1.05 = 1.57
    peer.print_table(peer.summarize(records))
    assert "1.30x (1.00-2.00)" in capsys.readouterr().out


def test_command_runs_ours_and_a_peer_and_writes_json(tmp_path, capsys):
    fake = tmp_path / "fake_peer.py"
    fake.write_text(FAKE_PEER)
    out = tmp_path / "bench.json"
    # tiny's widths are not the peer's: its rows come through peer_widths.py.
    peer.main(["--configs=tiny", "--batches=2", "--rounds=1", "--reps=1", "--warmup=0",
               f"--peer={fake}", f"--peer_python={sys.executable}", "--loader_batches=1",
               f"--json={out}"])
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert {(r["who"], r["mode"]) for r in result["rows"]} == {
        ("ours", "train"), ("ours", "infer"), ("peer", "train"), ("peer", "infer")}
    ours = next(r for r in result["rows"] if r["who"] == "ours" and r["mode"] == "train")
    assert ours["vs_peer"] == pytest.approx(ours["images_per_s"] / 10.0)
    theirs = next(r for r in result["rows"] if r["who"] == "peer" and r["mode"] == "train")
    assert theirs["gflop_per_image"] == pytest.approx(ours["gflop_per_image"], rel=1e-5)
    assert ours["compile_s"] > 0 and ours["peak_mb"] > 0 and ours["mfu"] > 0
    assert result["environment"]["matmul_gflops"] > 0 and result["loader"][0]["images_per_s"] > 0
    assert "vs_peer" in table and "loader batch 2:" in table


def run_peer_widths(capsys, script, widths="48,48,96,160,256"):
    from benchmarks import peer_widths

    peer_widths.main(["--peer", str(script), "--widths", widths, "--gflop", "0.4,1.2", "--",
                      "train", "--batch", "2", "--T", "2", "--hidden", "16", "--reps", "1"])
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()][-1]


def test_peer_widths_builds_the_peers_network_at_other_widths(tmp_path, capsys):
    fake = tmp_path / "torch_grcnn.py"
    fake.write_text(FAKE_PEER)
    record = run_peer_widths(capsys, fake)
    assert record["layers"] == [
        [1, 48, 3], [], [2], [48, 48, 2], [2], [48, 96, 2], [2], [96, 160, 2], [2],
        [160, 256, 2], [256], [], [256, 16, 256], [256, 16, 37]]
    assert record["gflop_per_image"] == pytest.approx(1.2)      # ours, not its own count


def test_peer_widths_refuses_a_peer_whose_network_changed(tmp_path, capsys):
    fake = tmp_path / "torch_grcnn.py"
    fake.write_text(FAKE_PEER.replace("BatchNorm2d(512), ReLU()]", "BatchNorm2d(512)]"))
    with pytest.raises(SystemExit, match="the peer's GRCNN.features changed"):
        run_peer_widths(capsys, fake)


def test_peer_commands_per_config():
    """The paper's widths run the peer's script as it is; other widths through the wrapper
    with our FLOP count; a model the peer's network cannot be runs ours only."""
    plain = peer.peer_command("py", "p.py", "train", peer.peer_model("small"), 4, 3, 1)
    assert plain == ["py", "p.py", "train", "--batch", "4", "--T", "3", "--hidden", "512",
                     "--reps", "3", "--warmup", "1"]
    reader = peer.peer_command("py", "p.py", "infer", peer.peer_model("reader"), 4, 3, 1)
    assert reader[1].endswith("peer_widths.py") and reader[2:6] == [
        "--peer", "p.py", "--widths", "48,48,96,160,256"]
    assert reader[8:12] == ["--", "infer", "--batch", "4"] and "--T" in reader


def test_the_peer_sits_out_models_its_network_cannot_be(monkeypatch):
    monkeypatch.setitem(peer.CONFIGS, "rcl", {"T": 2, "hidden": 8, "gated": False})
    monkeypatch.setitem(peer.CONFIGS, "cnn", {"T": 0, "hidden": 8})
    assert peer.peer_model("rcl") is None and peer.peer_model("cnn") is None
    assert peer.peer_model("grcl")["widths"] == peer.PEER_WIDTHS


@pytest.mark.parametrize("argv, flag", [
    (["--batches=x"], "--batches"),                       # not an integer list
    (["--configs=grcl,nope"], "--configs"),               # not a config
    (["--no-such-flag"], "no-such-flag"),
    (["--batches", "16", "32"], "unexpected arguments 32"),   # argparse's list syntax
])
def test_bad_flags_exit_with_one_fatal_line(argv, flag):
    """Refused while parsing, before any subprocess starts."""
    with pytest.raises(SystemExit) as e:
        peer.main(argv)
    message = str(e.value.code)
    assert message.startswith("FATAL Flags parsing error") and flag in message
    assert "\n" not in message


def test_eval_throughput_takes_config_overrides(tmp_path, capsys):
    """A shape named on the command line is the one timed, and the header says so."""
    from benchmarks import eval_throughput

    out = tmp_path / "rows.json"
    rows = eval_throughput.main([f"--config={TINY}", "--config.model.T=1", "--images=8",
                                 "--batch=4", "--lexicon=5", "--repeats=1", f"--json={out}"])
    header = capsys.readouterr().out.splitlines()[0]
    assert "configs/tiny.py --config.model.T=1 (random parameters)" in header
    assert [r["what"] for r in rows] == ["bare inference", "eval greedy", "eval lexicon 5",
                                          "eval greedy, turn", "eval greedy, frame"]
    assert all(r["images_per_s"] > 0 for r in rows) and json.loads(out.read_text()) == rows
    with pytest.raises(SystemExit) as e:             # a field the config lacks: one line
        eval_throughput.main([f"--config={TINY}", "--config.model.nope=1"])
    assert str(e.value.code) == ("FATAL a --config override names no config field (nope); "
                                 "overrides given: --config.model.nope")


# --- accuracy side by side ----------------------------------------------------------------

def test_accuracy_protocol_normalizes_and_picks_the_nearest_lexicon_word():
    from benchmarks import peer_accuracy as pa

    assert pa.normalize("Caf-é 24!") == "caf24"
    assert pa.edit_distance("kitten", "sitting") == 3
    assert pa.nearest_word("H0TEL", ["park", "Hotel", "hostel"]) == "Hotel"
    rows = [{"text": "Park", "prediction": "PARK", "lexicon_prediction": "park"},
            {"text": "stop", "prediction": "st0p", "lexicon_prediction": "stop"},
            {"text": "2017", "prediction": "2017", "lexicon_prediction": None},
            {"text": "GATE.", "prediction": "GATE", "lexicon_prediction": None},
            {"text": "$5 off", "prediction": "$5off", "lexicon_prediction": None}]
    got = pa.score(rows)
    assert got["word_accuracy"] == pytest.approx(4 / 5)
    assert got["cased_word_accuracy"] == pytest.approx(3 / 5)       # 'PARK' is not 'Park'
    assert got["written_word_accuracy"] == pytest.approx(2 / 5)     # 'GATE' is not 'GATE.'
    assert got["lexicon_word_accuracy"] == 1.0 and got["lexicon_count"] == 2
    assert pa.normalize_cased("$5.99 EXIT-e") == "599EXITe"
    assert pa.normalize_written(" $5.99 EXIT-e\t") == "$5.99EXIT-e"


def test_accuracy_command_refuses_a_missing_data_folder_in_one_line(tmp_path):
    missing = tmp_path / "no_such_set"
    done = run_module("benchmarks.peer_accuracy", "--data", missing, check=False, timeout=120)
    assert done.returncode != 0
    assert assert_one_fatal_line(done.stderr, "DataError") == \
        f"FATAL DataError: --data={str(missing)!r}: no such file or folder"


def test_accuracy_command_scores_ours_and_the_peers_on_one_folder(tmp_path, capsys):
    import os

    from benchmarks import peer_accuracy as pa

    fixture = IC03_MINI
    fake = tmp_path / "fake_python"
    # A peer Python that has every peer's module ('-c import X' succeeds) and reads 'HOTEL'
    # (EasyOCR's script) or 'Hotel' (PP-OCRv4's) in every image.
    fake.write_text(f"#!{sys.executable}\n"
                    "import json, sys\n"
                    "if sys.argv[1] == '-c': sys.exit(0)\n"
                    "files = json.load(open(sys.argv[2]))\n"
                    "text = 'Hotel' if 'ppocr' in sys.argv[1] else 'HOTEL'\n"
                    "print(json.dumps({'texts': [text] * len(files), 'seconds': 0.5,\n"
                    "                  'version': 'fake', 'model': 'm'}))\n")
    os.chmod(fake, 0o755)
    out = tmp_path / "acc.json"
    assert pa.main([f"--data={fixture}", f"--peer_python={fake}", f"--json={out}"]) == 0
    result = json.loads(out.read_text())
    ours, easy, pp = result["results"]
    labels = (fixture / "test_label.txt").read_text().split()
    assert ours["count"] == easy["count"] == pp["count"] == len(labels)
    for peer_row, text in ((easy, "HOTEL"), (pp, "Hotel")):
        assert peer_row["word_accuracy"] == pytest.approx(
            sum(t.lower() == "hotel" for t in labels) / len(labels))
        assert peer_row["cased_word_accuracy"] == pytest.approx(
            sum(t == text for t in labels) / len(labels))
        assert peer_row["written_word_accuracy"] == peer_row["cased_word_accuracy"]
        assert peer_row["images_per_s"] == pytest.approx(len(labels) / 0.5)
    assert 0 <= ours["word_accuracy"] <= 1 and ours["images_per_s"] > 0
    printed = capsys.readouterr().out
    assert "EasyOCR fake" in printed and "RapidOCR fake" in printed
    # By kind of text: the fixture's labels are 3 Mixed case, 1 UPPERCASE, 1 lowercase,
    # 1 without letters; the fake PP-OCRv4 reads only 'Hotel' right, in its case.
    assert pa.main([f"--data={fixture}", f"--peer_python={fake}", "--peers=ppocr",
                    "--by_kind"]) == 0
    kinds = capsys.readouterr().out.split("by kind of text")[1]
    row = next(ln for ln in kinds.splitlines() if ln.startswith("case: Mixed case"))
    assert row.split()[3] == "3" and row.rstrip().endswith("33.3 / 33.3 / 33.3")
    png = (fixture / "images" / "word_2.png").read_bytes()
    assert pa.kinds({"key": "/d/iiit5k/7.png", "image": png, "text": "$5.99"}) == {
        "source": "iiit5k", "height": ">= 32 px", "case": "no letters",
        "marks": "with punctuation"}
    # Only the peers asked for run; one that the peer's Python lacks is left out.
    assert pa.main([f"--data={fixture}", "--peer_python=/no/such/python", "--peers=ppocr",
                    f"--json={out}"]) == 0
    assert [r["name"] for r in json.loads(out.read_text())["results"]][1:] == []


def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path, capsys, monkeypatch):
    """The GPU check with tiny settings: the side-by-side rows, a short training run stopped
    by SIGTERM, the loader, one JSON and the table. The side-by-side benchmark is peer.main,
    run end to end by the test above; here a stand-in parses the command line gpu_check gives
    it with peer's own flags and writes peer's JSON from summarize (seconds saved)."""
    from grcnn_jax import process
    from grcnn_jax.cli import common
    from benchmarks import gpu_check

    def peer_main(argv):
        flags, _ = common.parse_command_line(peer.define_flags, argv)
        records = [{"config": c, "batch": b, "mode": m, "dtype": d, "who": who, "round": r,
                    "median_s": b / (10.0 if who == "peer" else 15.0), "compile_s": 1.0,
                    "peak_rss_mb": 100.0, "gflop_per_image": 1.5}
                   for r in range(flags.rounds) for c in flags.configs for b in flags.batches
                   for m in flags.modes for who, dtypes in (("ours", flags.dtypes),
                                                              ("peer", ["float32"]))
                   for d in dtypes]
        with open(flags.json, "w", encoding="utf-8") as f:
            json.dump({"rows": peer.summarize(records, flags.peak_gflops)}, f)

    monkeypatch.setattr(peer, "main", peer_main)
    out = tmp_path / "check"
    assert gpu_check.main([f"--out={out}", "--config=tiny", "--batch=4", "--dtypes=float32",
                           "--rounds=1", "--train_seconds=4", "--loader_batches=2",
                           "--peak_gflops=100", "--peer=fake.py",
                           f"--peer_python={sys.executable}"]) == 0
    result = json.loads((out / "gpu_check.json").read_text())
    whos = {(r["who"], r["mode"]) for r in result["benchmark"]["rows"]}
    assert whos == {("ours", "train"), ("ours", "infer"), ("peer", "train"), ("peer", "infer")}
    ours = [r for r in result["benchmark"]["rows"] if r["who"] == "ours"]
    assert all(r["mfu"] > 0 and r["vs_peer"] == pytest.approx(1.5) for r in ours)
    training = result["training"]
    assert training["stopped_by_sigterm"] and training["steps"] >= 10
    assert training["loss_last"] < training["loss_first"]
    assert result["loader"]["images_per_s"] > 0 and result["loader"]["workers"] >= 1
    table = capsys.readouterr().out
    assert "x the peer" in table and "loader alone" in table and "training" in table
    assert gpu_check.peak_for("NVIDIA H200") == 989_000.0 and gpu_check.peak_for("cpu") is None
