"""Training: the loop around the jitted data-parallel train step.

``train_and_evaluate(config, workdir)`` is the whole job: ``setup.build`` turns the config
into the run's pieces once; the loop then resumes from the latest checkpoint in
``workdir/checkpoints`` if there is one, trains with periodic validation and checkpoints,
and writes metrics to ``workdir/metrics.jsonl`` and TensorBoard event files. The loop does
I/O, logging and checkpoints; everything numerical is in ``state.train_step`` (one pure
function, jitted once with explicit shardings: the batch split over a ``data`` mesh axis,
state replicated, so BatchNorm statistics are over the global batch).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time

import jax
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from grcnn_jax import process
from grcnn_jax.assemble import device_batch
from grcnn_jax.data import pipeline
from grcnn_jax.data.sources import generator_fonts
from grcnn_jax.evaluation.overlap import OneBehind
from grcnn_jax.training import setup
from grcnn_jax.training.state import NonFiniteLossError, TrainState, eval_params
from grcnn_jax.workdir import checkpoints, guard
from grcnn_jax.workdir.lock import WorkdirLock
from grcnn_jax.workdir.writers import MetricWriter

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- helpers
class _Preemption:
    """Turns SIGTERM and the first Ctrl-C (SIGINT) into a flag the loop checks between steps:
    the step in flight finishes and is saved. A second Ctrl-C raises KeyboardInterrupt at
    once (no save)."""

    def __init__(self):
        self.requested = False
        self.interrupted = False
        self._previous = {}
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:                 # not the main thread: leave signals alone
                pass

    def _handle(self, signum, frame):
        if signum == signal.SIGINT:
            if self.interrupted:
                raise KeyboardInterrupt
            self.interrupted = True
            log.warning("Ctrl-C: finishing this step and saving a checkpoint (Ctrl-C again "
                        "stops at once, without saving)")
        else:
            log.warning("SIGTERM: saving a checkpoint and stopping after this step")
        self.requested = True

    def restore(self):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


# ----------------------------------------------------------------------------- the loop
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
    """Trains (resuming from ``workdir`` if it holds checkpoints); returns the final state.

    Everything the run depends on is checked before the workdir is created (``setup.build``:
    the config, the charset, the data paths, the batch sizes and, for a new run, the
    ``init_from`` model and its fit to this one). The workdir is then locked for the run's
    lifetime (``WorkdirLock``: a second run on it is refused).
    """
    run, state = setup.build(config, workdir)
    os.makedirs(workdir, exist_ok=True)
    lock = WorkdirLock(workdir).acquire() if jax.process_index() == 0 else None
    try:
        return _train(run, state, workdir)
    finally:
        if lock is not None:
            lock.release()


def _train(run: setup.Run, state: TrainState, workdir: str) -> TrainState:
    plan = run.schedule
    data_sharding, replicated = NamedSharding(run.mesh, P("data")), NamedSharding(run.mesh, P())
    train_iter = run.train_batches()

    rng = jax.random.key(run.seed)
    state = jax.device_put(state, replicated)
    manager = checkpoints.make_manager(workdir, run.keep_checkpoints, run.async_checkpoints)
    try:
        restored_step = checkpoints.restore_latest(manager, state, train_iter, run.model_config,
                                                     run.charset)
    except BaseException:
        manager.close()
        train_iter.close()
        raise
    if restored_step is not None:
        state = restored_step
        log.info("resumed from step %d", int(state.step))
    elif run.deferred_init:               # step folders, none of them a checkpoint
        state = jax.device_put(run.initialized(state), replicated)
    start_step = int(state.step)

    step_fn = jax.jit(run.step_fn, in_shardings=(replicated, data_sharding, replicated),
                      out_shardings=(replicated, replicated), donate_argnums=(0,))
    evaluator = run.evaluator
    saver = guard.Saver(manager, run.config_json, run.charset)
    # A resumed run replays the steps after its checkpoint: their old rows go.
    writer = MetricWriter(workdir, enabled=jax.process_index() == 0, after_step=start_step)
    writer.write_config(run.config_json)
    if restored_step is None and run.init_lineage is not None:
        writer.write_init_lineage(run.init_lineage)
    faces = generator_fonts(run.train_source)
    if restored_step is None and faces:
        from grcnn_jax.data.synth import fonts

        writer.write_synth_faces(fonts.faces_by_source(faces, run.charset.chars))
    preemption = _Preemption()
    progress = writer.progress(total=plan.num_train_steps, initial=start_step)
    unread: OneBehind[tuple[int, dict]] = OneBehind()   # (step, metrics), read a step late
    window: list[dict] = []                   # per-step scalars since the last log line
    window_start, window_images = time.perf_counter(), 0
    step = start_step

    def read(item: tuple[int, dict] | None) -> None:
        if item is not None:
            _check(*item, window, progress)

    last_val: dict[str, tuple[int, dict]] = {}   # prefix -> (step, result) of its latest eval
    compiled_step = None
    try:
        while step < plan.num_train_steps:
            try:
                batch = device_batch(next(train_iter), data_sharding)
            except pipeline.LoaderWorkerDied as e:
                # The position of every batch taken so far is known: saved with the state
                # that used them, the rerun resumes with exactly the next one.
                read(unread.flush())
                if step != start_step or restored_step is None:
                    saver.save(step, state, train_iter)
                    saver.check(step, wait=True)
                raise pipeline.LoaderWorkerDied(
                    f"{e}; training stopped at step {step} with a checkpoint in "
                    f"{checkpoints.checkpoint_dir(workdir)}; run the same command to resume "
                    "exactly") from None
            step_rng = jax.random.fold_in(rng, step)
            if compiled_step is None:
                # Compiled ahead of the first step so that the compiler's scratch memory goes
                # back to the kernel before the step's own buffers are allocated.
                compiled_step = step_fn.lower(state, batch, step_rng).compile(
                    compiler_options=process.step_compiler_options())
                process.release_free_memory()
            state, metrics = compiled_step(state, batch, step_rng)
            step += 1
            window_images += plan.batch_size
            saver.check(step)
            # Read the previous step's metrics now: the device is already busy with this one.
            read(unread.push((step, metrics)))
            if step % plan.log_every == 0 or step == plan.num_train_steps:
                read(unread.flush())
                speed = window_images / max(time.perf_counter() - window_start, 1e-9)
                means = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                writer.scalars(step, {**means, "images_per_s": speed}, prefix="train")
                progress.set_postfix(loss=f"{means['loss']:.3f}", images_per_s=f"{speed:.0f}",
                                     refresh=False)
                window, window_start, window_images = [], time.perf_counter(), 0
            if evaluator and (step % plan.eval_every == 0 or step == plan.num_train_steps):
                for prefix, val_source in run.val_sets:
                    val_iter = run.val_batches(prefix, val_source)
                    result = evaluator.evaluate(eval_params(state), state.batch_stats, val_iter)
                    last_val[prefix] = (step, result)
                    writer.scalars(step, result, prefix=prefix)
                    progress.write(f"step {step}: {prefix} " + " ".join(
                        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in result.items()))
                process.release_free_memory()   # what the evaluator's compile and loader freed
            if (step % plan.checkpoint_every == 0 or step == plan.num_train_steps
                    or preemption.requested):
                read(unread.flush())                  # never save a state we have not checked
                saver.save(step, state, train_iter)
            if preemption.requested:
                if not preemption.interrupted:
                    log.warning("stopped by SIGTERM at step %d (checkpoint saved)", step)
                break
        read(unread.flush())
        saver.check(step, wait=True)
    finally:
        # Each closes even if one before it fails (a full disk fails writer.close() too), and
        # none replaces the error that stopped the run.
        # A second Ctrl-C stops at once: no waiting for a save in flight (orbax leaves it
        # unfinished, and a resumed run does not use it).
        aborted = isinstance(sys.exc_info()[1], KeyboardInterrupt)
        for close in (*(() if aborted else (saver.close,)), progress.close, writer.close,
                      train_iter.close, preemption.restore):
            try:
                close()
            except Exception as e:  # noqa: BLE001
                log.warning("while stopping: %s failed (%s: %s)", close.__qualname__,
                            type(e).__name__, e)
        if train_iter.skipped_counts:
            log.warning(train_iter.skipped_summary())
    if preemption.interrupted:
        raise process.Interrupted(
            f"interrupted at step {step}; checkpoint saved in "
            f"{checkpoints.checkpoint_dir(workdir)}; run the same command to resume")
    for prefix, (at, result) in last_val.items():
        lexicon = result.get("lexicon_word_accuracy")
        log.info("summary: %s at step %d: word accuracy %.1f%% of %d%s, normalized edit "
                 "distance %.3f", prefix, at, 100 * result["word_accuracy"], result["count"],
                 "" if lexicon is None else f", with lexicons {100 * lexicon:.1f}%",
                 result["normalized_edit_distance"])
    return state


def _check(step: int, metrics: dict, window: list, progress) -> None:
    """Fetches one step's metrics, stops on a non-finite loss, adds them to the log window."""
    values = jax.device_get(metrics)
    if not bool(values["finite"]):
        raise NonFiniteLossError(
            f"step {step}: loss={float(values['loss'])}, grad_norm={float(values['grad_norm'])}; "
            "the update was not applied and no checkpoint was written after it; the latest "
            "checkpoint is the last good one")
    scalars = {k: float(values[k]) for k in ("loss", "guide_loss", "grad_norm") if k in values}
    window.append(scalars)
    progress.update(step - progress.n)
    progress.set_postfix(loss=f"{scalars['loss']:.3f}", refresh=False)
