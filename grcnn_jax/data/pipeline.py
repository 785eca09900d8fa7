"""The loader: records -> (decode, grayscale, resize, encode text) -> padded uint8 batches.

Built on Grain: a ``MapDataset`` over a random-access source (sharded by host,
shuffled per epoch, repeated for training), preprocessing per record, then an
operation that collects ``batch_size`` *good* examples into one batch -- bad
records are counted and reported with their keys, never a crash -- and
``mp_prefetch``, so that decoding and batching happen in worker processes and
only whole batches cross process boundaries. The iterator's state (a few
integers) is saved in checkpoints and restores the exact next batch.

A batch is a dict::

    image            uint8   [B, H, W]     (the model normalizes on the device)
    labels           int32   [B, L]        charset ids, 0 beyond the text
    label_paddings   float32 [B, L]        1.0 beyond the text (optax's CTC convention)
    mask             float32 [B]           0.0 for filler rows of a final partial batch
    meta             dict of lists         "key", "text" (normalized), "lexicon"; host-only;
                                           "problem" too where ``CountEveryRecord`` made rows,
                                           "turned" (uint8 [2, H, W] or None) where the
                                           ``Preprocess`` turns tall crops, "source"
                                           (uint8 [h, w] or None) where it keeps the
                                           crops to unbend
    skipped          list                  (key, reason) of records dropped for this batch
"""

from __future__ import annotations

import collections
import functools
import logging
import multiprocessing
import signal
import sys
from typing import Any, Iterator, Sequence

import grain
from absl import flags
import numpy as np

from grcnn_jax.data.errors import DataError
from grcnn_jax.data.preprocess import Preprocess, Problem, augment
from grcnn_jax.data.sources import WeightedSources, holds_generator

log = logging.getLogger(__name__)

BATCH_KEYS = ("image", "labels", "label_paddings", "mask")   # what goes to the device

def collate(examples: Sequence[dict], batch_size: int, skipped: list[tuple[str, str]]) -> dict:
    """Stacks up to ``batch_size`` examples; filler rows (mask 0) pad a final partial batch."""
    n = len(examples)
    image = np.stack([e["image"] for e in examples])
    labels = np.stack([e["labels"] for e in examples])
    lengths = np.array([e["length"] for e in examples])
    if n < batch_size:
        image = np.concatenate([image, np.zeros((batch_size - n, *image.shape[1:]), np.uint8)])
        labels = np.concatenate([labels, np.zeros((batch_size - n, labels.shape[1]), np.int32)])
        lengths = np.concatenate([lengths, np.zeros(batch_size - n, lengths.dtype)])
    positions = np.arange(labels.shape[1])[None, :]
    meta = {"key": [e["key"] for e in examples], "text": [e["text"] for e in examples],
            "lexicon": [e["lexicon"] for e in examples]}
    if any("problem" in e for e in examples):          # rows made by CountEveryRecord
        meta["problem"] = [e.get("problem") for e in examples]
    if any("turned" in e for e in examples):           # a Preprocess that turns tall crops
        meta["turned"] = [e.get("turned") for e in examples]
    if any("source" in e for e in examples):           # one that keeps sources to unbend
        meta["source"] = [e.get("source") for e in examples]
    return {
        "image": image,
        "labels": labels,
        "label_paddings": (positions >= lengths[:, None]).astype(np.float32),
        "mask": (np.arange(batch_size) < n).astype(np.float32),
        "meta": meta,
        "skipped": skipped,
    }


# This many records refused one after the other, with none taken between them, stop the
# loader (``RefusedRun``): a source that refuses everything would otherwise be read for ever.
# Far more than any real set's run of bad records, and seconds of work even for images that
# are decoded before they are refused.
REFUSED_RUN_LIMIT = 2_000


class _BatchGoodIterator(grain.DatasetIterator):
    """Pulls examples until ``batch_size`` good ones; collects the Problems it passes. After
    ``REFUSED_RUN_LIMIT`` Problems in a row it hands what it has over, marked ``refused_run``
    (``BatchIterator`` stops there with the counts)."""

    def __init__(self, parent: grain.DatasetIterator, batch_size: int, drop_remainder: bool):
        super().__init__(parent)
        self._batch_size = batch_size
        self._drop_remainder = drop_remainder

    def __next__(self) -> dict:
        good, skipped = [], []
        run = 0
        while len(good) < self._batch_size:
            try:
                item = next(self._parent)
            except StopIteration:
                break
            if isinstance(item, Problem):
                skipped.append((item.key, item.reason))
                run += 1
                if run >= REFUSED_RUN_LIMIT:
                    return {"skipped": skipped, "refused_run": run}
            else:
                good.append(item)
                run = 0
        if not good or (self._drop_remainder and len(good) < self._batch_size):
            if skipped:              # records skipped after the last batch are still counted
                return {"skipped": skipped}
            raise StopIteration
        return collate(good, self._batch_size, skipped)

    # The batch ends exactly where the parent stands, so the parent's state is ours.
    def get_state(self):
        return self._parent.get_state()

    def set_state(self, state):
        self._parent.set_state(state)


class _BatchGood(grain.IterDataset):
    def __init__(self, parent: grain.IterDataset, batch_size: int, drop_remainder: bool):
        super().__init__(parent)
        self._batch_size = batch_size
        self._drop_remainder = drop_remainder

    def __iter__(self) -> _BatchGoodIterator:
        return _BatchGoodIterator(self._parent.__iter__(), self._batch_size, self._drop_remainder)


class _HostShare(grain.MapDataset):
    """Host ``h``'s share of each global batch of the parent stream.

    Global batch k is parent positions ``[k*B, (k+1)*B)`` with B = ``host_batch *
    host_count``; host h reads positions ``k*B + h*host_batch + r``, r < host_batch.
    Concatenated in host order, the hosts' k-th batches are exactly the k-th
    batch one process would read (as long as no record is skipped as bad).
    """

    def __init__(self, parent: grain.MapDataset, host_batch: int, host_index: int,
                 host_count: int):
        super().__init__(parent)
        self._b, self._h, self._n = host_batch, host_index, host_count

    def __len__(self) -> int:
        return len(self._parent) // self._n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        k, r = divmod(index, self._b)
        return self._parent[k * self._b * self._n + self._h * self._b + r]


def make_dataset(source: Any, preprocess: Preprocess, batch_size: int, *, train: bool,
                 seed: int = 0, num_workers: int = 0, shard_index: int = 0, shard_count: int = 1,
                 worker_buffer_size: int = 2) -> grain.IterDataset:
    """The batch stream of ``source`` for this host.

    Training (``train=True``): shuffled with ``seed``, reshuffled every epoch,
    endless, whole batches only; ``batch_size`` is this host's part, and host
    ``shard_index`` of ``shard_count`` reads its share of every global batch (see
    ``_HostShare``). Evaluation: one pass in order over records
    ``shard_index::shard_count``; the last batch is padded to ``batch_size`` with
    mask-0 rows.
    """
    if len(source) == 0:
        raise DataError(f"dataset {source!r} is empty")
    if batch_size <= 0:
        raise DataError(f"batch_size must be positive, got {batch_size}")

    if isinstance(source, WeightedSources):
        if not train:
            raise DataError("weighted training sets are for training only")
        # Each set shuffled (its own seed) and endless, then drawn from in proportion: a
        # MapDataset still, so the position is a few integers in the checkpoint.
        ds = grain.MapDataset.mix(
            [grain.MapDataset.source(s).shuffle(seed=seed + i).repeat(None)
             for i, s in enumerate(source.sources)], source.weights)
    else:
        ds = grain.MapDataset.source(source)
    if train:
        if not isinstance(source, WeightedSources):
            ds = ds.shuffle(seed=seed).repeat(None)
        if shard_count > 1:
            ds = _HostShare(ds, batch_size, shard_index, shard_count)
    elif shard_count > 1:
        ds = ds[shard_index::shard_count]
    # One read-ahead thread per process, not Grain's default 16: decoding and rendering are
    # Python-bound, and 16 threads fighting over the GIL on 2 cores cost 40% of the
    # throughput (benchmarks/data_loader.py: 369 vs 517 images/s in one process).
    ds = ds.map(preprocess)
    if train and preprocess.augment:
        ds = ds.random_map(functools.partial(augment, strength=preprocess.augment_strength,
                                             edge_cut=preprocess.augment_edge_cut), seed=seed)
    ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=1, prefetch_buffer_size=2 * batch_size))
    ds = _BatchGood(ds, batch_size, drop_remainder=train)
    if num_workers > 0:
        # Grain's workers read absl flags; outside an absl app (pytest, notebooks) they are
        # unparsed and reading them raises, so take the defaults.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers,
                                                         per_worker_buffer_size=worker_buffer_size),
                            worker_init_fn=_leave_ctrl_c_to_the_main_process)
    return ds


def eval_workers(source: Any, num_workers: int | None, generator_workers: int) -> int:
    """Loader worker processes for one evaluation pass over ``source``: ``num_workers``
    where given; else ``generator_workers`` (a config's ``data.num_workers``) for the
    synthetic generator, whose words take milliseconds each to render, and none for stored
    records. Decoding a stored word crop takes ~0.4 ms, and the read-ahead thread does it
    beside the device's forward pass; a worker process costs its start and the copying of
    every batch (2-core VM, the shipped reader, real_val and its bent copy, two passes: 9.8 s
    in one process against 12.2 s with one worker, docs/speed.md)."""
    if num_workers is not None:
        return num_workers
    return generator_workers if holds_generator(source) else 0


def _leave_ctrl_c_to_the_main_process(worker_index: int, worker_count: int) -> None:
    """A loader worker ignores SIGINT: Ctrl-C in a terminal signals the whole process group,
    and the main process decides (training finishes the step and saves; the workers are
    stopped by ``BatchIterator.close``)."""
    del worker_index, worker_count
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _own_arrays(batch: dict) -> dict:
    """The batch with its arrays copied out of the loader workers' shared memory.

    Grain hands a worker's arrays over as shared-memory blocks, unlinked when their array
    object is deleted -- by a daemon thread, which the interpreter does not wait for: the
    blocks of the last batches a command reads are left behind (Python's "leaked
    shared_memory objects" warning at exit). A copy costs ~10 µs for 192 images; the block
    is then unlinked here, at once, and the array's own deleter only closes its mapping.
    Arrays inside ``meta``'s lists (the turned views) are copied the same way.
    """
    def own(v):
        if isinstance(v, dict):
            return {k: own(x) for k, x in v.items()}
        if isinstance(v, list):
            return [own(x) for x in v]
        shm = getattr(v, "shm", None)
        if isinstance(v, np.ndarray) and shm is not None:
            copy = np.array(v)
            if getattr(v, "_unlink_on_del", False):
                v._unlink_on_del = False       # grain's flag: its deleter would unlink too
                shm.unlink()
            return copy
        return v

    return own(batch)


class LoaderWorkerDied(ChildProcessError):
    """A loader worker process exited under the loader (killed, out of memory): the batches
    after it cannot be the ones the run would have had, so the loader stops."""


class BatchIterator:
    """Iterates batches, tallies skipped records by reason, and saves/restores its position.

    ``skipped_counts``: Counter of reason -> count (a record skipped in every epoch counts
    each time); ``skipped_examples``: the first few distinct keys per reason. Each new reason is logged once with its key.
    """

    def __init__(self, dataset: grain.IterDataset, name: str = "data", examples_per_reason: int = 5):
        self.name = name
        self._it = iter(dataset)
        self.skipped_counts: collections.Counter = collections.Counter()
        self.skipped_examples: dict[str, list[str]] = collections.defaultdict(list)
        self._examples_per_reason = examples_per_reason
        # Training passes a bad record once per epoch: distinct keys say how many there are.
        self._distinct: dict[str, set] = collections.defaultdict(set)
        self._batches = 0

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        try:
            batch = _own_arrays(next(self._it))
        except StopIteration:
            if not self._batches and self.skipped_counts:
                raise DataError(f"{self.name}: every record was refused "
                                f"({self._refusals()}); nothing to read") from None
            raise
        except RuntimeError as e:
            # Grain's words for a worker that exited under it (killed, out of memory).
            if "terminated unexpectedly" not in str(e):
                raise
            code = str(e).split("exit code", 1)[-1].strip(" .").split(".")[0]
            raise LoaderWorkerDied(f"{self.name}: a loader worker process died (exit code "
                                   f"{code}) after {self._batches} batches") from None
        for key, reason in batch.pop("skipped"):
            case = reason.split(":", 1)[0]
            if self.skipped_counts[case] == 0:
                log.warning("%s: skipping record %s: %s (further '%s' records are counted)",
                            self.name, key, reason, case)
            self.skipped_counts[case] += 1
            self._distinct[case].add(key)
            examples = self.skipped_examples[case]
            if len(examples) < self._examples_per_reason and key not in examples:
                examples.append(key)
        if "refused_run" in batch:
            raise DataError(f"{self.name}: {batch['refused_run']:,} records in a row were "
                            f"refused ({self._refusals()}); check the charset and the "
                            "data policy (config.data.policy) against this dataset")
        if "image" not in batch:       # only the skipped records after the last batch
            return next(self)
        self._batches += 1
        return batch

    def _refusals(self) -> str:
        """Counts per reason with an example key: 'unknown_chars: 2,000, e.g. KEY'."""
        return "; ".join(f"{case}: {n:,}, e.g. {self.skipped_examples[case][0]}"
                         for case, n in self.skipped_counts.most_common())

    @property
    def grain_iterator(self) -> grain.DatasetIterator:
        """The underlying Grain iterator (what ``grain.checkpoint`` saves and restores)."""
        return self._it

    def close(self) -> None:
        """Stops the worker processes, if any. Closed as Ctrl-C stops the command, it kills
        them instead: a worker being started as Ctrl-C arrived may never answer, and Grain's
        orderly close would wait for it for ever."""
        if isinstance(sys.exc_info()[1], KeyboardInterrupt):
            for child in multiprocessing.active_children():
                child.kill()
            return
        close = getattr(self._it, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "BatchIterator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get_state(self) -> Any:
        return self._it.get_state()

    def set_state(self, state: Any) -> None:
        self._it.set_state(state)

    def skipped_summary(self) -> str:
        if not self.skipped_counts:
            return f"{self.name}: no records skipped"
        parts = []
        for case, n in sorted(self.skipped_counts.items()):
            distinct = len(self._distinct[case])
            times = f"{n} times, {distinct} distinct records" if distinct != n else str(n)
            parts.append(f"{case}: {times} (e.g. {', '.join(self.skipped_examples[case][:3])})")
        return f"{self.name}: skipped " + "; ".join(parts)
