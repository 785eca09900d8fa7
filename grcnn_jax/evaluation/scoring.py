"""Scoring a checkpoint on datasets: each set's word accuracy, lexicon accuracy, edit
distance, loss and speed (``evaluate_checkpoint``), and the table ``evaluate`` prints.
The command: ``grcnn_jax.cli.evaluate``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Sequence

from grcnn_jax.workdir.checkpoints import InferenceCheckpoint
from grcnn_jax.data.errors import DataError
from grcnn_jax.data.sources import open_source
from grcnn_jax.assemble import open_split, make_mesh, make_preprocess
from grcnn_jax.evaluation.evaluator import make_evaluator
from grcnn_jax.data import pipeline

log = logging.getLogger(__name__)


def split_specs(values: Sequence[str] | None) -> list[str]:
    """Repeated and/or comma-separated ``--data`` values -> one spec per dataset."""
    return [p.strip() for v in values or () for p in v.split(",") if p.strip()]


def open_dataset(config: Any, spec: str | None) -> Any:
    """The source named by ``spec`` (None: the config's validation set), built like training's."""
    if spec is None:
        if not config.data.val:
            raise DataError("the checkpoint's config has no validation set (config.data.val is "
                            "empty): give --data")
        return open_split(config, "val")
    d = config.data
    synth = dict(length=d.synth_val_size, seed=d.synth_seed + 1, height=config.image_height)
    return open_source(spec, what="--data", synth=synth,
                       tfds_data_dir=d.tfds_data_dir or None)


def evaluate_checkpoint(ckpt: InferenceCheckpoint, specs: Sequence[str] | None = None, *,
                        batch_size: int | None = None, case_sensitive: bool = False,
                        beam_width: int = 1, num_workers: int | None = None,
                        predictions: dict[str, list] | None = None, turn: bool = True,
                        frame: bool = True, unbend: bool = True) -> dict:
    """Evaluates a restored checkpoint on each dataset.

    Args:
      ckpt: from ``load.load_for_inference``.
      specs: dataset specs, one per dataset; None or empty: the config's val set.
      batch_size: global eval batch (default ``config.eval_batch_size``); a multiple of
        the device count.
      case_sensitive: compare case (default: the case-insensitive standard protocol).
      beam_width: lexicon-free decoding: 1 = greedy, more = prefix beam search.
      num_workers: loader worker processes (default ``pipeline.eval_workers``: none for
        stored records, ``config.data.num_workers`` for the generator).
      predictions: if a dict, ``predictions[name]`` gets one dict per image.
      turn: also read crops at least ``preprocess.TURN_RATIO`` times as tall as wide turned a
        quarter each way, keeping the most probable reading (``Evaluator``'s ``turn``).
      frame: also read the images of unsure readings framed tighter and looser, keeping the
        reading ranked first (``Evaluator``'s ``frame``).
      unbend: with ``frame``, also read the crops still unsure unbent along arcs
        (``Evaluator``'s ``unbend``).

    Returns:
      ``{"checkpoint", "step", "batch_size", "case_sensitive", "beam_width", "decoding"
      (in words: greedy, beam, with the checkpoint's language model), "datasets":
      [{"name", "data", "source", "count", "word_accuracy", "lexicon_word_accuracy" (None
      without lexicons), "lexicon_count", "normalized_edit_distance", "loss",
      "images_per_s", "skipped"}]}``.
    """
    import jax


    config, charset = ckpt.config, ckpt.charset
    batch_size = batch_size or config.eval_batch_size
    mesh = make_mesh()
    evaluator = make_evaluator(config, charset, mesh, batch_size, what="--batch_size",
                               case_sensitive=case_sensitive, beam_width=beam_width,
                               lm=ckpt.lm, turn=turn, frame=frame, unbend=unbend)
    preprocess = dataclasses.replace(make_preprocess(config, charset), turn=turn,
                                     unbend=evaluator.unbend)
    if case_sensitive:               # the labels' own case, not the lowercased encoding's
        preprocess = dataclasses.replace(preprocess, keep_case=True)
    params, batch_stats = jax.device_put((ckpt.params, ckpt.batch_stats),
                                         jax.sharding.NamedSharding(mesh,
                                                                    jax.sharding.PartitionSpec()))
    # Open every dataset first: a bad path fails before anything is evaluated.
    sources = [(spec, open_dataset(config, spec)) for spec in list(specs or ()) or [None]]
    rows = []
    for spec, source in sources:
        name = spec if spec is not None else f"{config.data.val} (config.data.val)"
        batches = pipeline.BatchIterator(pipeline.make_dataset(
            source, preprocess, batch_size, train=False,
            num_workers=pipeline.eval_workers(source, num_workers, config.data.num_workers)),
            name=name)
        collected = [] if predictions is not None else None
        try:
            result = evaluator.evaluate(params, batch_stats, batches, predictions=collected)
        finally:
            batches.close()
        if predictions is not None:
            predictions[name] = collected
        if batches.skipped_counts:
            log.warning(batches.skipped_summary())
        rows.append({
            "name": name, "data": spec if spec is not None else config.data.val,
            "source": repr(source), "count": result["count"],
            "word_accuracy": result["word_accuracy"],
            "lexicon_word_accuracy": result.get("lexicon_word_accuracy"),
            "lexicon_count": result.get("lexicon_count", 0),
            "lexicon_words_skipped": result.get("lexicon_words_skipped", 0),
            "normalized_edit_distance": result["normalized_edit_distance"],
            "loss": result["loss"], "images_per_s": result["images_per_s"],
            "skipped": dict(batches.skipped_counts),
        })
    return {"checkpoint": ckpt.path, "step": ckpt.step, "batch_size": batch_size,
            "case_sensitive": case_sensitive, "beam_width": beam_width,
            "decoding": evaluator.decoding,
            "devices": f"{jax.device_count()} x {jax.devices()[0].device_kind}",
            "datasets": rows}


def format_table(report: dict) -> str:
    """The report's datasets as an aligned text table."""
    header = ["dataset", "images", "word_acc", "lexicon_acc", "ned", "loss", "images/s"]
    lines = [header]
    for r in report["datasets"]:
        lex = r["lexicon_word_accuracy"]
        lex_text = "-" if lex is None else f"{lex:.4f}"
        if lex is not None and r["lexicon_count"] != r["count"]:
            lex_text += f" ({r['lexicon_count']})"
        lines.append([r["name"], str(r["count"]), f"{r['word_accuracy']:.4f}", lex_text,
                      f"{r['normalized_edit_distance']:.4f}", f"{r['loss']:.4f}",
                      f"{r['images_per_s']:.1f}"])
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    decoding = report["decoding"]
    case = "case-sensitive" if report["case_sensitive"] else "case-insensitive"
    out = [f"checkpoint {report['checkpoint']} (step {report['step']}), {case}, {decoding} "
           f"decoding, batch {report['batch_size']} on {report['devices']}"]
    for i, row in enumerate(lines):
        out.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                             for j, (c, w) in enumerate(zip(row, widths))))
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    for r in report["datasets"]:
        if r["skipped"]:
            out.append(f"{r['name']}: not counted (loader skipped): " + ", ".join(
                f"{k} {v}" for k, v in sorted(r["skipped"].items())))
        if r["lexicon_words_skipped"]:
            out.append(f"{r['name']}: {r['lexicon_words_skipped']} lexicon words skipped "
                       "(characters outside the charset, or too long for the frames)")
    return "\n".join(out)
