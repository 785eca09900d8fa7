"""A training run built from its config, once: ``build(config, workdir)`` reads every field
the run uses and returns a ``Run`` (the step, the data, the evaluator, the
checkpoint settings, the loop's numbers); below it nothing reads the config.

``optimizer_of``, ``train_state_of`` and ``train_step_of`` are the same reading for one
piece (benchmarks and tests use them).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from typing import Any, Callable

import jax
import ml_collections
import optax
from jax.sharding import Mesh

from grcnn_jax import process
from grcnn_jax.assemble import (host_batch_size, make_mesh, make_preprocess, open_split,
                                open_val_sets)
from grcnn_jax.config import check as config_check
from grcnn_jax.data import pipeline
from grcnn_jax.data.preprocess import Preprocess
from grcnn_jax.evaluation.evaluator import Evaluator, make_evaluator
from grcnn_jax.inference.pretrained import lineage
from grcnn_jax.models import create_model
from grcnn_jax.text.charset import Charset
from grcnn_jax.training import init_from
from grcnn_jax.training.state import TrainState, create_optimizer, create_train_state, train_step
from grcnn_jax.workdir import checkpoints

log = logging.getLogger(__name__)


def frozen_groups(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """``config.freeze`` as a tuple of ``models.grcnn.PARAM_GROUPS`` names (config_check
    validates them)."""
    return tuple(p.strip() for p in config.get("freeze", "").split(",") if p.strip())


def optimizer_of(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """ADADELTA (lr 1; rho, eps: DTRB's 0.95, 1e-8 by default, the seed's 0.9, 1e-6 in
    configs/grcl_seed.py), or Adam / AdamW / SGD with a schedule; then freezing and
    accumulation as the config says."""
    return create_optimizer(config.optimizer, total_steps=config.num_train_steps,
                            grad_clip_norm=config.grad_clip_norm, frozen=frozen_groups(config),
                            accum_steps=config.get("grad_accum_steps", 1))


def train_state_of(config: ml_collections.ConfigDict, model, rng: jax.Array) -> TrainState:
    """``model``'s initial state for the config's image size, optimizer and EMA choice."""
    return create_train_state(model, optimizer_of(config), rng,
                              (config.image_height, config.image_width),
                              ema=config.get("ema_decay", 0.0) > 0)


def train_step_of(config: ml_collections.ConfigDict) -> Callable:
    """``train_step`` with the config's static choices (frozen groups, EMA decay, confidence
    penalty, SAM radius, the attention guide's weight where the run has a guide) bound."""
    return functools.partial(train_step, frozen=frozen_groups(config),
                             ema_decay=float(config.get("ema_decay", 0.0)),
                             confidence_penalty=float(config.get("confidence_penalty", 0.0)),
                             sam_rho=float(config.get("sam_rho", 0.0)),
                             guide_weight=(float(config.get("guide_weight", 0.0))
                                           if config.get("guide_layers", 0) else 0.0))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When the loop does what, in steps; ``batch_size`` is the global batch."""

    num_train_steps: int
    batch_size: int
    log_every: int
    eval_every: int
    checkpoint_every: int


@dataclasses.dataclass
class Run:
    """Everything a training run needs, read from its config by ``build``."""

    schedule: Schedule
    charset: Charset
    mesh: Mesh
    step_fn: Callable               # train_step with its static choices bound, not yet jitted
    seed: int
    train_source: Any
    train_name: str                 # names the training data in the loader's messages
    local_batch: int                # this host's share of the global batch
    num_workers: int
    preprocess: Preprocess
    val_sets: list[tuple[str, Any]]   # (metric prefix, source)
    local_eval_batch: int
    evaluator: Evaluator | None
    init_from: str                  # '' or the model a new run starts from
    deferred_init: bool             # init_from is applied once the workdir proves to hold
                                    # step folders but no readable checkpoint
    keep_checkpoints: int
    async_checkpoints: bool
    config_json: dict               # the config, saved with checkpoints and as config.json
    init_lineage: list[dict] | None = None   # the legs behind init_from, once applied

    @property
    def model_config(self) -> dict:
        return self.config_json["model"]

    def train_batches(self) -> pipeline.BatchIterator:
        """The training data, shuffled, this host's share, in batches of ``local_batch``."""
        return pipeline.BatchIterator(pipeline.make_dataset(
            self.train_source, self.preprocess, self.local_batch, train=True, seed=self.seed,
            num_workers=self.num_workers, shard_index=jax.process_index(),
            shard_count=jax.process_count()), name=self.train_name)

    def val_batches(self, prefix: str, source: Any) -> pipeline.BatchIterator:
        """One validation set, in order, this host's share."""
        return pipeline.BatchIterator(pipeline.make_dataset(
            source, self.preprocess, self.local_eval_batch, train=False, num_workers=0,
            shard_index=jax.process_index(), shard_count=jax.process_count()), name=prefix)

    def initialized(self, state: TrainState) -> TrainState:
        """``state`` with the params and batch statistics of ``init_from`` (whose legs
        ``init_lineage`` then records)."""
        state, self.init_lineage = initialized_from(state, self.init_from, self.charset)
        return state


def build(config: ml_collections.ConfigDict, workdir: str) -> tuple[Run, TrainState]:
    """Checks the config (``config_check.validate``), the charset, the data paths, the batch
    sizes and, for a new run, the ``init_from`` model and its fit; returns the run and its
    initial state (from ``init_from`` unless that waits for the workdir's step folders).
    Creates nothing on disk."""
    config_check.validate(config)
    charset = Charset.from_spec(config.charset)
    model = create_model(config.model, charset.num_classes,
                         guide_layers=config.get("guide_layers", 0))
    train_source = open_split(config, "train")
    val_sets = open_val_sets(config)
    state = train_state_of(config, model, jax.random.key(config.seed))
    process.release_free_memory()                 # the init program's compile
    init = config.get("init_from") or ""
    # A new run starts from init_from now; a resumed one from its checkpoint (read later).
    deferred_init = bool(init) and checkpoints.has_saved_steps(workdir)
    init_lineage = None
    if init and not deferred_init:
        state, init_lineage = initialized_from(state, init, charset)
    mesh = make_mesh()
    local_batch = host_batch_size(config.batch_size, "config.batch_size")
    local_eval_batch = (host_batch_size(config.eval_batch_size, "config.eval_batch_size")
                        if val_sets else 0)
    run = Run(
        schedule=Schedule(num_train_steps=config.num_train_steps, batch_size=config.batch_size,
                          log_every=config.log_every, eval_every=config.eval_every,
                          checkpoint_every=config.checkpoint_every),
        charset=charset, mesh=mesh, step_fn=train_step_of(config),
        seed=config.seed, train_source=train_source,
        train_name=f"config.data.train={config.data.train}", local_batch=local_batch,
        num_workers=config.data.num_workers, preprocess=make_preprocess(config, charset),
        val_sets=val_sets, local_eval_batch=local_eval_batch,
        evaluator=make_evaluator(config, charset, mesh) if val_sets else None,
        init_from=init, deferred_init=deferred_init,
        keep_checkpoints=config.keep_checkpoints, async_checkpoints=config.async_checkpoints,
        config_json=json.loads(config.to_json_best_effort()), init_lineage=init_lineage)
    return run, state


def initialized_from(state: TrainState, spec: str,
                     charset: Charset) -> tuple[TrainState, list[dict]]:
    """``state`` with the params and batch statistics of the model ``spec`` names
    (``config.init_from``), its optimizer fresh, and the training legs behind that model
    (``pretrained.lineage``); ValueError names what does not fit."""
    source = init_from.load_variables(spec)
    state = init_from.init_state_from(state, source, charset)
    if state.ema_params is not None:
        state = state.replace(ema_params=state.params)
    log.info("initialized params and batch statistics from %s (step %d)", source.path,
             source.step)
    return state, lineage(source)
