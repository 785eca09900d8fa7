"""The standard scene-text benchmarks, scored the way papers report them (``evaluate --benchmark``).

    python -m grcnn_jax.evaluate --benchmark data/evaluation            # DTRB's archive
    python -m grcnn_jax.evaluate --benchmark data/test --workdir DIR     # PARSeq's folder

Discovery (``find_sets``): the sets of DTRB's ``evaluation/`` archive, in the order of its
Table 1 -- IIIT5k_3000, SVT, IC03_860, IC03_867, IC13_857, IC13_1015, IC15_1811, IC15_2077,
SVTP, CUTE80 -- found by folder name, case-insensitively, an optional ``.lmdb`` suffix
ignored, PARSeq's ``IIIT5k`` taken for IIIT5k_3000; directly in DIR or one folder down
(PARSeq's ``data/test/IIIT5k``). Then any other readable set there (an LMDB folder with
``data.mdb``, an ICDAR-03-style folder with ``test.txt``: PARSeq's ArT, COCOv1.4, Uber, or
your own), in name order. A standard set that is absent is not listed; one that is there
but cannot be opened is an error (the table would silently change otherwise).

The protocol (``score``, ``evaluate_benchmark``), and where it follows whom:

* Every record of a set is counted: the denominator is the set's size (3000 for
  IIIT5k_3000), whatever the model. Labels are adapted to the model's charset as PARSeq's
  ``CharsetAdapter`` (and its unicode normalization) does -- lowercased if the charset has
  no capitals, accents folded, other characters removed (``adapt_label``) --
  never skipped. A record that still cannot be read -- an image that does not decode, a
  label with nothing left, a label longer than the model's frames, a record the LMDB
  lacks -- counts as wrong (accuracy 0, 1 - NED 0, confidence 0) and is listed with its
  key and reason. DTRB does the same for corrupt images (a dummy image and label); for
  the rest both drop records (DTRB labels with characters outside its charset, PARSeq
  labels longer than 25 or empty after adaptation), which makes the denominator depend on
  the model's charset and length limit; here it does not.
* Accuracy: the predicted word equals the label, both reduced to letters and digits and
  compared case-insensitively (PARSeq's default 36-character test charset, applied to
  both; DTRB's evaluation of case-sensitive models); ``case_sensitive`` compares case
  (PARSeq's ``--cased``).
* 1 - NED: ICDAR 2019's normalized edit distance, per image ``ED(pred, gt) / max(len(pred),
  len(gt))`` on the same reduced strings, averaged over the set and reported as 1 - mean
  (PARSeq's ``_eval_step``; DTRB's ``validation`` is the same, an empty prediction scoring
  0).
* Confidence: the mean over the set of p(prediction | image), summed over all CTC
  alignments (the Evaluator's ``confidence``). PARSeq's CTC models report the best
  path's probability instead (a product of per-frame maxima), which is never larger.
* Combined: the sets' figures weighted by their sample counts (PARSeq's "Combined" row,
  DTRB's ``total_accuracy``), over every set listed -- DTRB's convention, which counts
  IC03_860 inside IC03_867 (and IC13, IC15 alike) twice when both are there; a note says
  so. Where all six sets of one of PARSeq's groups are there, that group's weighted row is
  printed too ("Benchmark (subset)": IC13_857 and IC15_1811; "Benchmark": IC13_1015 and
  IC15_2077; both with IIIT5k, SVT, SVTP, CUTE80).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
from typing import Any, Sequence

from grcnn_jax.data.errors import DataError
from grcnn_jax.text.metrics import edit_distance, normalize

log = logging.getLogger(__name__)

# (name, other names it goes by), in DTRB's order (its test.py, its paper's Table 1).
STANDARD_SETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("IIIT5k_3000", ("IIIT5k",)),
    ("SVT", ()),
    ("IC03_860", ()),
    ("IC03_867", ()),
    ("IC13_857", ()),
    ("IC13_1015", ()),
    ("IC15_1811", ()),
    ("IC15_2077", ()),
    ("SVTP", ()),
    ("CUTE80", ()),
)
# PARSeq's test.py groups (TEST_BENCHMARK_SUB, TEST_BENCHMARK), each with a Combined row.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Benchmark (subset)", ("IIIT5k_3000", "SVT", "IC13_857", "IC15_1811", "SVTP", "CUTE80")),
    ("Benchmark", ("IIIT5k_3000", "SVT", "IC13_1015", "IC15_2077", "SVTP", "CUTE80")),
)
# (subset, the set that contains it)
SUBSETS = (("IC03_860", "IC03_867"), ("IC13_857", "IC13_1015"), ("IC15_1811", "IC15_2077"))
EXAMPLE_KEYS = 3          # keys shown per reason in the table (the JSON has them all)


@dataclasses.dataclass(frozen=True)
class BenchmarkSet:
    """A set found in the benchmark folder.

    Attributes:
      name: as reported: the folder's name without a ``.lmdb`` suffix.
      path: the folder.
      standard: the standard set it is (its DTRB name), None for any other set.
      where: the path relative to the benchmark folder.
    """

    name: str
    path: str
    standard: str | None
    where: str


def _stem(entry: str) -> str:
    return entry[:-len(".lmdb")] if entry.lower().endswith(".lmdb") else entry


def looks_like_set(path: str) -> bool:
    """A folder ``open_source`` reads as one set: an LMDB or an ICDAR-03-style folder."""
    return os.path.isdir(path) and (
        os.path.isfile(os.path.join(path, "data.mdb"))
        or (os.path.isfile(os.path.join(path, "test.txt"))
            and os.path.isfile(os.path.join(path, "test_label.txt"))))


def find_sets(root: str) -> tuple[list[BenchmarkSet], list[str]]:
    """The sets in ``root`` in report order (see module doc), and notes on those left out.

    Raises DataError naming ``root`` if it is not a folder or holds no set.
    """
    if not os.path.isdir(root):
        raise DataError(f"--benchmark {root!r}: no such folder")
    candidates = []                                   # (depth, where, path)
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if entry.startswith("."):
            continue
        if looks_like_set(path):
            candidates.append((0, entry, path))
        elif os.path.isdir(path):
            for sub in sorted(os.listdir(path)):
                if not sub.startswith(".") and looks_like_set(os.path.join(path, sub)):
                    candidates.append((1, f"{entry}/{sub}", os.path.join(path, sub)))
    rank = {}
    for i, (name, aliases) in enumerate(STANDARD_SETS):
        for j, a in enumerate((name, *aliases)):
            rank[a.lower()] = (i, j)
    standard: dict[int, tuple] = {}
    others, ignored = [], []
    # Nearer first, then the set's own name before its alias: that one is reported.
    for depth, where, path in sorted(candidates, key=lambda c: (
            c[0], rank.get(_stem(os.path.basename(c[2])).lower(), (0, 0))[1], c[1])):
        stem = _stem(os.path.basename(path))
        r = rank.get(stem.lower())
        if r is None:
            others.append((depth, where, path, stem))
        elif r[0] in standard:
            ignored.append(f"{where}: the same set as {standard[r[0]].where}, which is reported")
        else:
            standard[r[0]] = BenchmarkSet(stem, path, STANDARD_SETS[r[0]][0], where)
    sets = [standard[i] for i in sorted(standard)]
    taken = {s.name.lower() for s in sets}
    for depth, where, path, stem in sorted(others, key=lambda o: (o[3].lower(), o[3], o[1])):
        name = stem if stem.lower() not in taken else where
        taken.add(name.lower())
        sets.append(BenchmarkSet(name, path, None, where))
    if not sets:
        raise DataError(
            f"--benchmark {root!r}: no benchmark set there: expected folders named like "
            f"{', '.join(n for n, _ in STANDARD_SETS)} (directly, or one folder down as in "
            "PARSeq's data/test/), each an LMDB (data.mdb inside) or an ICDAR-03-style folder "
            "(test.txt and test_label.txt inside)")
    return sets, ignored


# ----------------------------------------------------------------------------- scoring
def score(prediction: str, target: str, case_sensitive: bool = False) -> tuple[bool, float]:
    """(exact match, normalized edit distance) of one image under the protocol.

    Both strings are reduced to letters and digits (and lowercased unless
    ``case_sensitive``); NED = ED / max(len(pred), len(gt)) (ICDAR 2019). The target must
    not reduce to '' (such a record is unusable, see ``evaluate_set``).
    """
    p, t = normalize(prediction, case_sensitive), normalize(target, case_sensitive)
    if not t:
        raise ValueError(f"label {target!r} has no letter or digit to compare")
    return p == t, edit_distance(p, t) / max(len(p), len(t))


def combine(rows: Sequence[dict], name: str = "Combined") -> dict:
    """The rows' figures weighted by their counts (PARSeq's Combined row)."""
    n = sum(r["count"] for r in rows)
    out = {"name": name, "sets": [r["name"] for r in rows], "count": n}
    for k in ("word_accuracy", "one_minus_ned", "confidence"):
        out[k] = sum(r[k] * r["count"] for r in rows) / max(n, 1)
    return out


def score_records(predictions: Sequence[dict], problems: Sequence[str | None],
                  case_sensitive: bool = False) -> list[dict]:
    """Per record: the Evaluator's prediction dict and the loader's problem (None if read)
    -> ``{key, text, prediction, confidence, correct, ned, problem}``; an unusable record
    is wrong, NED 1, confidence 0, prediction None."""
    if len(predictions) != len(problems):
        raise RuntimeError(f"{len(predictions)} predictions for {len(problems)} records")
    out = []
    for pred, problem in zip(predictions, problems):
        target = pred["text"]
        if problem is None and not normalize(target, case_sensitive):
            problem = (f"empty_label: label {target!r} has no letter or digit to compare")
        if problem is None:
            correct, ned = score(pred["prediction"], target, case_sensitive)
            out.append({"key": pred["key"], "text": target, "prediction": pred["prediction"],
                        "confidence": float(pred["confidence"]), "correct": bool(correct),
                        "ned": float(ned), "problem": None})
        else:
            out.append({"key": pred["key"], "text": target, "prediction": None,
                        "confidence": 0.0, "correct": False, "ned": 1.0, "problem": problem})
    return out


def summarize(items: Sequence[dict]) -> dict:
    """One set's figures from its ``score_records``."""
    n = len(items)
    unusable = collections.Counter(i["problem"].split(":", 1)[0] for i in items if i["problem"])
    return {"count": n, "correct": sum(i["correct"] for i in items),
            "word_accuracy": sum(i["correct"] for i in items) / max(n, 1),
            "one_minus_ned": 1.0 - sum(i["ned"] for i in items) / max(n, 1),
            "confidence": sum(i["confidence"] for i in items) / max(n, 1),
            "unusable": dict(sorted(unusable.items())),
            "unusable_records": [[i["key"], i["problem"]] for i in items if i["problem"]]}


# ----------------------------------------------------------------------------- evaluation
def evaluate_benchmark(ckpt: Any, root: str, *, batch_size: int | None = None,
                       case_sensitive: bool = False, beam_width: int = 1,
                       num_workers: int | None = None,
                       predictions: dict[str, list] | None = None, turn: bool = True,
                       frame: bool = True, unbend: bool = True) -> dict:
    """Scores a restored checkpoint on the benchmark sets in ``root`` (see module doc).

    Args:
      ckpt: from ``load.load_for_inference``.
      root: the benchmark folder.
      batch_size: eval batch (default ``config.eval_batch_size``), a multiple of the devices.
      case_sensitive: compare case (default: the case-insensitive standard protocol).
      beam_width: 1 = greedy decoding, more = prefix beam search.
      num_workers: loader worker processes (default: none; the sets are stored records,
        ``pipeline.eval_workers``).
      predictions: if a dict, ``predictions[name]`` gets each record's ``score_records`` dict.
      turn: also read tall crops turned a quarter each way (``Evaluator``'s ``turn``).
      frame: also read unsure readings' images framed tighter and looser (``Evaluator``'s
        ``frame``).
      unbend: with ``frame``, also read crops still unsure unbent along arcs
        (``Evaluator``'s ``unbend``).

    Returns:
      ``{"protocol": "benchmark", "benchmark", "checkpoint", "step", "batch_size",
      "case_sensitive", "beam_width", "decoding" (in words), "devices", "datasets": [{"name", "standard", "path",
      "source", "count", "correct", "word_accuracy", "one_minus_ned", "confidence",
      "unusable" {reason: count}, "unusable_records" [[key, reason]], "images_per_s"}],
      "combined", "groups", "ignored", "notes"}``; figures are fractions (the table prints %).
    """
    import jax

    from grcnn_jax.assemble import make_mesh, make_preprocess
    from grcnn_jax.evaluation.evaluator import make_evaluator
    from grcnn_jax.data import pipeline
    from grcnn_jax.data.preprocess import CountEveryRecord, DEFAULT_POLICY
    from grcnn_jax.data.sources import open_source

    if jax.process_count() > 1:
        raise ValueError("--benchmark runs in a single process")
    sets, ignored = find_sets(root)
    config, charset = ckpt.config, ckpt.charset
    batch_size = batch_size or config.eval_batch_size
    # Open every set first: a broken standard set fails before anything is evaluated.
    opened = []
    for s in sets:
        try:
            opened.append((s, open_source(s.path, what=f"--benchmark set {s.where!r}")))
        except DataError as e:
            if s.standard:
                raise
            ignored.append(f"{s.where}: {e}")
            log.warning("--benchmark: leaving out %s: %s", s.where, e)
    if not opened:
        raise DataError(f"--benchmark {root!r}: no set there could be opened: "
                        + "; ".join(ignored))
    mesh = make_mesh()
    evaluator = make_evaluator(config, charset, mesh, batch_size, what="--batch_size",
                               case_sensitive=case_sensitive, beam_width=beam_width,
                               confidence=True, lm=ckpt.lm, turn=turn, frame=frame,
                               unbend=unbend)
    preprocess = CountEveryRecord(dataclasses.replace(
        make_preprocess(config, charset), policy=tuple(sorted(DEFAULT_POLICY.items())),
        adapt_labels=True, keep_case=case_sensitive, augment=False, turn=turn,
        unbend=evaluator.unbend))
    params, batch_stats = jax.device_put((ckpt.params, ckpt.batch_stats),
                                         jax.sharding.NamedSharding(mesh,
                                                                    jax.sharding.PartitionSpec()))
    rows = []
    for s, source in opened:
        problems: list[str | None] = []

        def tracked(batches):
            for batch in batches:                 # the real rows come first, in record order
                meta = batch["meta"]
                problems.extend(meta.get("problem") or [None] * len(meta["key"]))
                yield batch

        batches = pipeline.BatchIterator(pipeline.make_dataset(
            source, preprocess, batch_size, train=False,
            num_workers=pipeline.eval_workers(source, num_workers, config.data.num_workers)),
            name=s.name)
        collected: list[dict] = []
        try:
            result = evaluator.evaluate(params, batch_stats, tracked(batches),
                                        predictions=collected)
        finally:
            batches.close()
        if len(collected) != len(source) or batches.skipped_counts:
            raise RuntimeError(f"{s.where}: {len(collected)} of {len(source)} records came "
                               f"through the loader ({dict(batches.skipped_counts)} skipped)")
        items = score_records(collected, problems, case_sensitive)
        if predictions is not None:
            predictions[s.name] = items
        row = {"name": s.name, "standard": s.standard, "path": s.path, "source": repr(source),
               **summarize(items), "images_per_s": result["images_per_s"]}
        if row["unusable"]:
            log.warning("%s: %d of %d records unusable, counted as wrong: %s", s.name,
                        sum(row["unusable"].values()), row["count"], row["unusable"])
        rows.append(row)
    by_standard = {r["standard"]: r for r in rows if r["standard"]}
    groups = [combine([by_standard[m] for m in members], label)
              for label, members in GROUPS if all(m in by_standard for m in members)]
    notes = [f"Combined counts the images of {a} twice: it is a subset of {b}"
             for a, b in SUBSETS if a in by_standard and b in by_standard]
    return {"protocol": "benchmark", "benchmark": root, "checkpoint": ckpt.path,
            "step": ckpt.step, "batch_size": batch_size, "case_sensitive": case_sensitive,
            "beam_width": beam_width, "decoding": evaluator.decoding,
            "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
            "datasets": rows, "combined": combine(rows), "groups": groups,
            "ignored": ignored, "notes": notes}


# ----------------------------------------------------------------------------- table
def _short_key(key: str, path: str) -> str:
    for prefix in (path + ":", path + os.sep):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def format_table(report: dict) -> str:
    """The report as PARSeq prints it: a Markdown table in %, then the unusable records."""
    header = ["Dataset", "# samples", "Accuracy", "1 - NED", "Confidence"]

    def cells(r: dict) -> list[str]:
        return [r["name"], str(r["count"]), f"{100 * r['word_accuracy']:.2f}",
                f"{100 * r['one_minus_ned']:.2f}", f"{100 * r['confidence']:.2f}"]

    body = [cells(r) for r in report["datasets"]]
    totals = [cells(report["combined"])] + [cells(g) for g in report["groups"]]
    widths = [max(len(row[i]) for row in [header] + body + totals) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(row, widths))) + " |"

    decoding = report["decoding"]
    case = "case-sensitive" if report["case_sensitive"] else "case-insensitive"
    out = [f"checkpoint {report['checkpoint']} (step {report['step']}) on {report['benchmark']}: "
           f"every record counted, letters and digits, {case}, {decoding} decoding, batch "
           f"{report['batch_size']} on {report['devices']}",
           line(header),
           "|:" + "-" * (widths[0] + 1) + "|" + "|".join("-" * (w + 1) + ":" for w in widths[1:])
           + "|"]
    out += [line(row) for row in body]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    out += [line(row) for row in totals]
    unusable = [r for r in report["datasets"] if r["unusable"]]
    if unusable:
        out.append("Unusable records, counted as wrong (accuracy 0, 1 - NED 0, confidence 0):")
        for r in unusable:
            parts = []
            for reason, n in r["unusable"].items():
                keys = [_short_key(k, r["path"]) for k, why in r["unusable_records"]
                        if why.split(":", 1)[0] == reason]
                more = ", ..." if len(keys) > EXAMPLE_KEYS else ""
                parts.append(f"{reason} {n} ({', '.join(keys[:EXAMPLE_KEYS])}{more})")
            out.append(f"  {r['name']}: " + "; ".join(parts))
    else:
        out.append("Every record was read.")
    out += [f"Left out: {i}" for i in report["ignored"]]
    out += [f"Note: {n}" for n in report["notes"]]
    return "\n".join(out)
