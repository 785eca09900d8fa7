"""The side-by-side benchmark's machinery: subprocess workers, table, ratios, JSON."""

import json
import sys

import pytest

from grcnn_jax.benchmarks import peer

FAKE_PEER = """
import json, sys
mode = sys.argv[1]
if mode == "--help":
    sys.exit(0)
batch = int(sys.argv[sys.argv.index("--batch") + 1])
print(json.dumps({"kind": "env"}))
print(json.dumps({"kind": mode, "median_s": batch / 10.0, "gflop_per_image": 1.5,
                  "peak_rss_mb": 100.0, "torch": "fake"}))
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


def test_command_runs_ours_and_a_peer_and_writes_json(tmp_path, capsys, monkeypatch):
    fake = tmp_path / "fake_peer.py"
    fake.write_text(FAKE_PEER)
    out = tmp_path / "bench.json"
    # "tiny" runs ours only (the peer has the paper's widths). Patched here, in the parent,
    # it lets the fake peer run too; our workers, subprocesses, still build the narrow model.
    monkeypatch.setitem(peer.CONFIGS, "tiny", {"T": 1, "hidden": 8})
    peer.main(["--configs", "tiny", "--batches", "2", "--rounds", "1", "--reps", "1",
               "--warmup", "0", "--peer", str(fake), "--peer_python", sys.executable,
               "--loader_batches", "1", "--json", str(out)])
    table = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert {(r["who"], r["mode"]) for r in result["rows"]} == {
        ("ours", "train"), ("ours", "infer"), ("peer", "train"), ("peer", "infer")}
    ours = next(r for r in result["rows"] if r["who"] == "ours" and r["mode"] == "train")
    assert ours["vs_peer"] == pytest.approx(ours["images_per_s"] / 10.0)
    assert ours["compile_s"] > 0 and ours["peak_mb"] > 0 and ours["mfu"] > 0
    assert result["environment"]["matmul_gflops"] > 0 and result["loader"][0]["images_per_s"] > 0
    assert "vs_peer" in table and "loader batch 2:" in table
