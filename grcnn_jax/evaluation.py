"""The jitted evaluation loop shared by training's validation and the evaluate command.

One compiled eval step for a fixed batch shape (the loader pads the last batch
and masks the filler rows): logits, per-example CTC loss and the best path
(argmax per frame) on the device; greedy decoding and the word metrics on the host.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from grcnn_jax.charset import Charset
from grcnn_jax.decode import greedy_decode
from grcnn_jax.losses import ctc_loss
from grcnn_jax.metrics import WordMetrics

BATCH_KEYS = ("image", "labels", "label_paddings", "mask")


def host_rows(array: jax.Array) -> np.ndarray:
    """The rows of a batch-sharded global array that live on this host, in batch order."""
    if jax.process_count() == 1:
        return np.asarray(array)
    shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
    unique, seen = [], set()
    for s in shards:                              # replicas of one row block appear once
        if (s.index[0].start, s.index[0].stop) not in seen:
            seen.add((s.index[0].start, s.index[0].stop))
            unique.append(np.asarray(s.data))
    return np.concatenate(unique)


class Evaluator:
    """Evaluates params + batch_stats over a batch iterator; returns loss and word metrics.

    Args:
      model: the GRCNN module.
      charset: decodes the best paths.
      mesh: the device mesh (batch split along its 'data' axis).
      batch_size: the global eval batch size (fixed: one compilation).
      case_sensitive: compare words case-sensitively (default: the standard protocol).
    """

    def __init__(self, model: Any, charset: Charset, mesh: Mesh, batch_size: int,
                 case_sensitive: bool = False):
        self.model, self.charset, self.batch_size = model, charset, batch_size
        self.case_sensitive = case_sensitive
        self._data = NamedSharding(mesh, P("data"))
        replicated = NamedSharding(mesh, P())
        self._step = jax.jit(self._eval_step, in_shardings=(replicated, replicated, self._data),
                             out_shardings=self._data)
        self._local_batch = batch_size // jax.process_count()

    def _eval_step(self, params, batch_stats, batch) -> dict:
        logits = self.model.apply({"params": params, "batch_stats": batch_stats}, batch["image"],
                                  train=False)
        return {"best_path": jnp.argmax(logits, axis=-1).astype(jnp.int32),
                "loss": ctc_loss(logits, batch["labels"], batch["label_paddings"])}

    def _filler(self, like: dict | None) -> dict:
        shape = (self._local_batch,)
        image_shape = like["image"].shape[1:] if like else None
        return {"image": np.zeros(shape + image_shape, np.uint8),
                "labels": np.zeros(shape + like["labels"].shape[1:], np.int32),
                "label_paddings": np.ones(shape + like["labels"].shape[1:], np.float32),
                "mask": np.zeros(shape, np.float32), "meta": {"text": []}}

    def evaluate(self, params: Any, batch_stats: Any, batches: Iterable[dict]) -> dict:
        """One pass over ``batches``; every host must call it (multi-host: in lockstep)."""
        metrics = WordMetrics(case_sensitive=self.case_sensitive)
        loss_sum, count = 0.0, 0
        it = iter(batches)
        last = None
        start = time.perf_counter()
        while True:
            batch = next(it, None)
            if jax.process_count() > 1:           # run until every host is out of data
                alive = multihost_utils.process_allgather(np.array(batch is not None))
                if not alive.any():
                    break
                if batch is None:
                    batch = self._filler(last)
            elif batch is None:
                break
            last = batch
            device = {k: jax.make_array_from_process_local_data(self._data, np.asarray(batch[k]))
                      for k in BATCH_KEYS}
            out = self._step(params, batch_stats, device)
            mask = batch["mask"] > 0
            n = int(mask.sum())
            texts = greedy_decode(host_rows(out["best_path"])[mask], self.charset)
            metrics.update(texts, batch["meta"]["text"][:n])
            loss_sum += float(host_rows(out["loss"])[mask].sum())
            count += n
        elapsed = time.perf_counter() - start
        totals = np.array([metrics.correct, metrics.count, metrics.ned_sum, loss_sum], np.float64)
        if jax.process_count() > 1:
            totals = multihost_utils.process_allgather(totals).sum(axis=0)
        correct, n, ned_sum, loss_sum = totals
        n = max(n, 1)
        return {"loss": loss_sum / n, "word_accuracy": correct / n,
                "normalized_edit_distance": ned_sum / n, "count": int(totals[1]),
                "images_per_s": totals[1] / max(elapsed, 1e-9)}
