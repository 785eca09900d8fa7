"""Training: the train state, the jitted data-parallel train step, and the loop around it.

``train_and_evaluate(config, workdir)`` is the whole job: it builds the model
and data from the config, resumes from the latest checkpoint in
``workdir/checkpoints`` if there is one, trains with periodic validation and
checkpoints, and writes metrics to ``workdir/metrics.jsonl`` and TensorBoard
event files. The loop does I/O, logging and checkpoints; everything numerical
is in ``train_step`` (one pure function, jitted once with explicit shardings:
the batch split over a ``data`` mesh axis, state replicated, so BatchNorm
statistics are over the global batch).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state
from jax.sharding import NamedSharding, PartitionSpec as P

from grcnn_jax.training import init_from
from grcnn_jax.workdir import checkpoints, guard
from grcnn_jax.config import check as config_check
from grcnn_jax.config.check import OPTIMIZERS, SCHEDULES
from grcnn_jax import process
from grcnn_jax.assemble import (device_batch, host_batch_size, make_mesh, make_preprocess,
                                open_split, open_val_sets)
from grcnn_jax.evaluation.evaluator import make_evaluator
from grcnn_jax.text.charset import Charset
from grcnn_jax.data import pipeline
from grcnn_jax.text.losses import ctc_loss
from grcnn_jax.models.grcnn import BACKBONE
from grcnn_jax.evaluation.overlap import OneBehind
from grcnn_jax.models import create_model
from grcnn_jax.workdir.lock import WorkdirLock
from grcnn_jax.workdir.writers import MetricWriter

log = logging.getLogger(__name__)


class TrainState(train_state.TrainState):
    """Flax's TrainState (step, params, opt_state, apply_fn, tx) plus BatchNorm statistics
    and, with ``config.ema_decay > 0``, the moving average of the params (else None)."""

    batch_stats: Any = None
    ema_params: Any = None


class NonFiniteLossError(FloatingPointError):
    """The loss or gradient became NaN or inf; the state keeps the last good update."""


# ----------------------------------------------------------------------------- setup
# One maker per name of config.check.OPTIMIZERS (which the config check reads); a module-level
# assert keeps the two the same.
_OPTIMIZER_MAKERS = {
    "adadelta": lambda lr, o: optax.adadelta(lr, rho=o.rho, eps=o.eps),
    "adam": lambda lr, o: optax.adam(lr, b1=o.b1, b2=o.b2, eps=o.eps),
    "adamw": lambda lr, o: optax.adamw(lr, b1=o.b1, b2=o.b2, eps=o.eps,
                                       weight_decay=o.weight_decay),
    "sgd": lambda lr, o: optax.sgd(lr, momentum=o.momentum or None),
}
assert tuple(_OPTIMIZER_MAKERS) == OPTIMIZERS, "config.check.OPTIMIZERS and the makers differ"


def create_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """ADADELTA (lr 1; rho, eps: DTRB's 0.95, 1e-8 by default, the seed's 0.9, 1e-6 in
    configs/grcl_seed.py), or Adam / AdamW / SGD with a schedule; then freezing and
    accumulation as the config says."""
    o = config.optimizer
    if o.schedule not in SCHEDULES or o.name not in OPTIMIZERS:   # config.check names both
        raise ValueError(f"config.optimizer: name {o.name!r} (one of {OPTIMIZERS}), schedule "
                         f"{o.schedule!r} (one of {SCHEDULES})")
    lr: Any = o.learning_rate
    if o.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, o.learning_rate, o.warmup_steps,
                                                max(config.num_train_steps, o.warmup_steps + 1))
    tx = _OPTIMIZER_MAKERS[o.name](lr, o)
    if config.grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
    # On one flat vector: a handful of large elementwise kernels instead of a few per
    # parameter array (over a hundred of them), which XLA compiles for seconds and runs slower.
    tx = optax.flatten(tx)
    frozen = frozen_groups(config)
    if frozen:
        # Frozen groups get zero updates and no optimizer state; the rest the optimizer above.
        tx = optax.multi_transform(
            {"train": tx, "frozen": optax.set_to_zero()},
            lambda params: {k: jax.tree.map(lambda _: "frozen" if k in frozen else "train", v)
                            for k, v in params.items()})
    if config.get("grad_accum_steps", 1) > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=config.grad_accum_steps)
    return tx


def frozen_groups(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """``config.freeze`` as a tuple of ``models.grcnn.PARAM_GROUPS`` names (config_check
    validates them)."""
    return tuple(p.strip() for p in config.get("freeze", "").split(",") if p.strip())


def create_train_state(config: ml_collections.ConfigDict, model, rng: jax.Array) -> TrainState:
    images = jnp.zeros((1, config.image_height, config.image_width), jnp.uint8)
    variables = jax.jit(model.init)(rng, images)
    params = variables["params"]
    ema = jax.tree.map(jnp.copy, params) if config.get("ema_decay", 0.0) > 0 else None
    return TrainState.create(apply_fn=model.apply, params=params, ema_params=ema,
                             batch_stats=variables["batch_stats"], tx=create_optimizer(config))


def make_train_step(config: ml_collections.ConfigDict) -> Callable:
    """``train_step`` with the config's static choices (frozen groups, EMA decay) bound."""
    return functools.partial(train_step, frozen=frozen_groups(config),
                             ema_decay=float(config.get("ema_decay", 0.0)))


# ----------------------------------------------------------------------------- the step
def train_step(state: TrainState, batch: dict, rng: jax.Array, frozen: tuple[str, ...] = (),
               ema_decay: float = 0.0) -> tuple[TrainState, dict]:
    """One optimizer step on a global batch; a non-finite loss leaves the state unchanged.

    ``frozen``: parameter groups not trained (no gradient is computed for them; a frozen
    backbone runs as in inference). ``ema_decay`` > 0: ``state.ema_params`` becomes
    ``decay * ema + (1 - decay) * params`` after the update. ``rng`` is unused by the GRCNN
    (no dropout) but part of the signature so that stochastic models fit the same loop.
    """
    del rng
    fixed = {k: v for k, v in state.params.items() if k in frozen}
    backbone_train = None if BACKBONE not in frozen else False

    def loss_fn(trainable):
        logits, updates = state.apply_fn(
            {"params": {**fixed, **trainable}, "batch_stats": state.batch_stats},
            batch["image"], train=True, backbone_train=backbone_train, mutable=["batch_stats"])
        per_example = ctc_loss(logits, batch["labels"], batch["label_paddings"])
        mask = batch["mask"]
        return jnp.sum(per_example * mask) / jnp.maximum(jnp.sum(mask), 1.0), updates

    trainable = {k: v for k, v in state.params.items() if k not in frozen}
    (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    # The norm of all gradients as one vector (the same concatenation the flattened optimizer
    # makes, which XLA computes once), not a reduction per parameter array.
    flat = jnp.concatenate([jnp.ravel(g) for g in jax.tree.leaves(grads)])
    grad_norm = jnp.sqrt(jnp.vdot(flat, flat))
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    grads = {**jax.tree.map(jnp.zeros_like, fixed), **grads}

    def update():
        new = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
        if state.ema_params is not None:
            new = new.replace(ema_params=optax.incremental_update(
                new.params, state.ema_params, step_size=1.0 - ema_decay))
        return new

    new_state = jax.lax.cond(finite, update, lambda: state)
    return new_state, {"loss": loss, "grad_norm": grad_norm, "finite": finite}


def eval_params(state: TrainState) -> Any:
    """The params evaluation, checkpoints' readers and export use: the moving average when
    the config keeps one."""
    return state.params if state.ema_params is None else state.ema_params


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

    Everything the run depends on is checked before the workdir is created: the config
    (``config_check.validate``), the charset, the data paths and, for a new run, the
    ``init_from`` model and its fit to this one. The workdir is then locked for the run's
    lifetime (``workdir_lock``: a second run on it is refused).
    """
    config_check.validate(config)
    charset = Charset.from_spec(config.charset)
    model = create_model(config.model, charset.num_classes)
    train_source = open_split(config, "train")
    val_sets = open_val_sets(config)
    state = create_train_state(config, model, jax.random.key(config.seed))
    process.release_free_memory()                 # the init program's compile
    # A new run starts from init_from now; a resumed one from its checkpoint (read below).
    deferred_init = bool(config.get("init_from")) and checkpoints.has_saved_steps(workdir)
    if config.get("init_from") and not deferred_init:
        state = _initialized_from(state, config.init_from, charset)
    os.makedirs(workdir, exist_ok=True)
    lock = WorkdirLock(workdir).acquire() if jax.process_index() == 0 else None
    try:
        return _train_and_evaluate(config, workdir, charset, train_source, val_sets, state,
                                   deferred_init)
    finally:
        if lock is not None:
            lock.release()


def _initialized_from(state: TrainState, spec: str, charset: Charset) -> TrainState:
    """``state`` with the params and batch statistics of the model ``spec`` names
    (``config.init_from``), its optimizer fresh; ValueError names what does not fit."""
    source = init_from.load_variables(spec)
    state = init_from.init_state_from(state, source, charset)
    if state.ema_params is not None:
        state = state.replace(ema_params=state.params)
    log.info("initialized params and batch statistics from %s (step %d)", source.path,
             source.step)
    return state


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, charset: Charset,
                        train_source, val_sets: list, state: TrainState,
                        deferred_init: bool) -> TrainState:
    mesh = make_mesh()
    data_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    local_batch = host_batch_size(config.batch_size, "config.batch_size")

    preprocess = make_preprocess(config, charset)
    train_iter = pipeline.BatchIterator(pipeline.make_dataset(
        train_source, preprocess, local_batch, train=True, seed=config.seed,
        num_workers=config.data.num_workers, shard_index=jax.process_index(),
        shard_count=jax.process_count()), name=f"config.data.train={config.data.train}")

    rng = jax.random.key(config.seed)
    state = jax.device_put(state, replicated)
    manager = checkpoints.make_manager(workdir, config)
    try:
        restored_step = checkpoints.restore_latest(manager, state, train_iter, config, charset)
    except BaseException:
        manager.close()
        train_iter.close()
        raise
    if restored_step is not None:
        state = restored_step
        log.info("resumed from step %d", int(state.step))
    elif deferred_init:                   # step folders, none of them a checkpoint
        state = jax.device_put(_initialized_from(state, config.init_from, charset), replicated)
    start_step = int(state.step)

    step_fn = jax.jit(make_train_step(config), in_shardings=(replicated, data_sharding, replicated),
                      out_shardings=(replicated, replicated), donate_argnums=(0,))
    evaluator = make_evaluator(config, charset, mesh) if val_sets else None
    saver = guard.Saver(manager)
    # A resumed run replays the steps after its checkpoint: their old rows go.
    writer = MetricWriter(workdir, enabled=jax.process_index() == 0, after_step=start_step)
    writer.write_config(config)
    preemption = _Preemption()
    progress = writer.progress(total=config.num_train_steps, initial=start_step)
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
        while step < config.num_train_steps:
            try:
                batch = device_batch(next(train_iter), data_sharding)
            except pipeline.LoaderWorkerDied as e:
                # The position of every batch taken so far is known: saved with the state
                # that used them, the rerun resumes with exactly the next one.
                read(unread.flush())
                if step != start_step or restored_step is None:
                    saver.save(step, state, train_iter, config, charset)
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
            window_images += config.batch_size
            saver.check(step)
            # Read the previous step's metrics now: the device is already busy with this one.
            read(unread.push((step, metrics)))
            if step % config.log_every == 0 or step == config.num_train_steps:
                read(unread.flush())
                speed = window_images / max(time.perf_counter() - window_start, 1e-9)
                means = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                writer.scalars(step, {**means, "images_per_s": speed}, prefix="train")
                progress.set_postfix(loss=f"{means['loss']:.3f}", images_per_s=f"{speed:.0f}",
                                     refresh=False)
                window, window_start, window_images = [], time.perf_counter(), 0
            if evaluator and (step % config.eval_every == 0 or step == config.num_train_steps):
                for prefix, val_source in val_sets:
                    val_iter = pipeline.BatchIterator(pipeline.make_dataset(
                        val_source, preprocess, host_batch_size(config.eval_batch_size,
                                                                "config.eval_batch_size"),
                        train=False, num_workers=0, shard_index=jax.process_index(),
                        shard_count=jax.process_count()), name=prefix)
                    result = evaluator.evaluate(eval_params(state), state.batch_stats, val_iter)
                    last_val[prefix] = (step, result)
                    writer.scalars(step, result, prefix=prefix)
                    progress.write(f"step {step}: {prefix} " + " ".join(
                        f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in result.items()))
                process.release_free_memory()   # what the evaluator's compile and loader freed
            if (step % config.checkpoint_every == 0 or step == config.num_train_steps
                    or preemption.requested):
                read(unread.flush())                  # never save a state we have not checked
                saver.save(step, state, train_iter, config, charset)
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
    scalars = {"loss": float(values["loss"]), "grad_norm": float(values["grad_norm"])}
    window.append(scalars)
    progress.update(step - progress.n)
    progress.set_postfix(loss=f"{scalars['loss']:.3f}", refresh=False)
