"""Checkpoints with orbax: train state, data-iterator position, config and charset.

Layout: ``workdir/checkpoints/<step>/{state,data,meta}``. ``state`` is the
TrainState pytree (params, batch_stats, opt_state, step); ``data`` the Grain
iterator state, one JSON file per host; ``meta`` the config and the charset,
enough for evaluation to rebuild the model with nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from typing import Any, Sequence

import grain
import jax
import numpy as np
import ml_collections
import orbax.checkpoint as ocp

from grcnn_jax.models.guide import without_guide
from grcnn_jax.text.charset import Charset
from grcnn_jax.workdir.guard import CheckpointError, first_line, set_aside, step_problem
from grcnn_jax.workdir.writers import METRICS_FILE, read_metrics

log = logging.getLogger(__name__)

ITEMS = ("state", "data", "meta")


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def make_manager(workdir: str, max_to_keep: int = 3,
                 async_save: bool = True) -> ocp.CheckpointManager:
    """The manager of ``workdir/checkpoints``: keeps the newest ``max_to_keep`` steps, saves
    in a background thread if ``async_save``."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           enable_async_checkpointing=async_save)
    return ocp.CheckpointManager(checkpoint_dir(workdir), item_names=ITEMS, options=options)


def restore_latest(manager: ocp.CheckpointManager, state: Any, data_iterator: Any,
                   model_config: dict, charset: Charset) -> Any | None:
    """Restores the newest usable checkpoint into ``state``'s structure and shardings, and
    moves the data iterator to its saved position. None if there is no checkpoint.

    A step that cannot be read (empty, truncated, missing files) is skipped with a warning
    naming it and why, and the next older one is tried; once an older one restores, the
    unreadable newer steps are moved to ``WORKDIR/checkpoints_unreadable/`` (so that the
    run can save those steps again) and the log says where. If no step restores, nothing
    is moved and CheckpointError lists each step's reason.

    Raises ValueError (not skipped) if a checkpoint's model or charset differ from
    ``model_config`` (the config's ``model`` section, as JSON) and ``charset``: that is the
    wrong workdir, not a damaged step.
    """
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        return None
    workdir = os.path.dirname(str(manager.directory))
    bad: list[tuple[int, str]] = []
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    for step in steps:
        where = os.path.join(str(manager.directory), str(step))
        meta, reason = None, step_problem(where)
        if reason is None:
            try:
                meta = manager.restore(step, args=ocp.args.Composite(
                    meta=ocp.args.JsonRestore())).meta
            except Exception as e:  # noqa: BLE001 -- any failure to read makes it unusable
                reason = first_line(e)
        if meta is not None:
            check_compatible(meta, model_config, charset, where)
            try:
                restored = manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract),
                    data=grain.checkpoint.CheckpointRestore(data_iterator.grain_iterator)))
            except Exception as e:  # noqa: BLE001
                reason = first_line(e)
            else:
                set_aside(manager, workdir, bad, step)
                return restored.state
        bad.append((step, reason))
        log.warning("checkpoint step %d in %s is unreadable (%s); trying the one before",
                    step, manager.directory, reason)
    raise CheckpointError(f"no usable checkpoint in {str(manager.directory)!r}: " + "; ".join(
        f"step {s}: {r}" for s, r in bad) + " (nothing was moved; if the config changed "
        "since these were written, use the old config or another --workdir)")


def check_compatible(meta: dict, model: dict, charset: Charset, where: str) -> None:
    """ValueError unless the checkpoint ``meta`` at ``where`` has this model config (a
    config's ``model`` section, as JSON) and charset."""
    saved_model = meta["config"]["model"]
    diff = sorted(k for k in set(saved_model) | set(model) if saved_model.get(k) != model.get(k))
    if diff:
        raise ValueError(
            f"checkpoint {where} was trained with a different model: "
            + ", ".join(f"model.{k}={saved_model.get(k)!r} there, {model.get(k)!r} now"
                        for k in diff)
            + "; use another --workdir or the same config")
    if meta["charset"] != charset.chars:
        raise ValueError(f"checkpoint {where} has charset {meta['charset']!r}, the config "
                         f"{charset.chars!r}")


def latest_step(workdir: str) -> int | None:
    """The newest finished checkpoint step in ``workdir``, or None."""
    with ocp.CheckpointManager(checkpoint_dir(workdir), item_names=ITEMS) as manager:
        return manager.latest_step()


def load_state_arrays(workdir: str, step: int | None = None,
                      keys: Sequence[str] | None = None) -> tuple[int, dict]:
    """A checkpoint's train state as host numpy arrays, on any device topology.

    Returns ``(step, {'params', 'batch_stats', 'opt_state', 'step'})``; ``step``
    None takes the latest. ``keys`` restores only those top-level entries (e.g.
    ``('params', 'batch_stats')`` for inference: the optimizer state is not read).
    Raises FileNotFoundError naming the workdir if there is no checkpoint, KeyError
    naming a key the checkpoint does not have.
    """
    if step is None:
        step = latest_step(workdir)
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)!r}")
    return step, load_state_dir(os.path.join(checkpoint_dir(workdir), str(step)), keys)


def load_state_dir(step_dir: str, keys: Sequence[str] | None = None) -> dict:
    """The ``state`` item of the checkpoint step directory ``step_dir`` as numpy arrays
    (``keys``: only those top-level entries, see ``load_state_arrays``)."""
    # orbax opens the folder by a file:// address, which needs an absolute path.
    path = os.path.join(os.path.abspath(step_dir), "state")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no checkpoint state at {path!r}")
    # orbax warns that a CheckpointManager item has no _CHECKPOINT_METADATA of its own: noise.
    with _quiet_absl():
        checkpointer = ocp.PyTreeCheckpointer()
        tree = checkpointer.metadata(path).item_metadata.tree
        partial = keys is not None
        if partial:
            missing = [k for k in keys if k not in tree]
            if missing:
                raise KeyError(f"checkpoint {path!r} has no {missing} (it has {sorted(tree)})")
            tree = {k: tree[k] for k in keys}
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        args = (ocp.args.PyTreeRestore(item=tree, restore_args=restore_args, partial_restore=True)
                if partial else ocp.args.PyTreeRestore(restore_args=restore_args))
        return checkpointer.restore(path, args=args)


@contextlib.contextmanager
def _quiet_absl():
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def saved_steps(workdir: str) -> list[int]:
    """The finished checkpoint steps in ``workdir``, ascending."""
    with ocp.CheckpointManager(checkpoint_dir(workdir), item_names=ITEMS) as manager:
        return sorted(manager.all_steps())


def has_saved_steps(workdir: str) -> bool:
    """Whether ``workdir/checkpoints`` holds a step folder (read or not); creates nothing."""
    folder = checkpoint_dir(workdir)
    return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def load_meta(step_dir: str) -> dict:
    """The ``meta`` item (config, charset, step) of a checkpoint step directory."""
    root, step = os.path.split(os.path.normpath(step_dir))
    with ocp.CheckpointManager(root, item_names=ITEMS) as manager:
        return manager.restore(int(step), args=ocp.args.Composite(
            meta=ocp.args.JsonRestore())).meta


# ----------------------------------------------------------------------------- inference
@dataclasses.dataclass
class InferenceCheckpoint:
    """What evaluation and inference need from a checkpoint.

    Attributes:
      path: the step directory (``.../checkpoints/<step>``).
      workdir: the training workdir it belongs to.
      step: the training step.
      config: the full training config, as saved.
      charset: the label alphabet, as saved.
      params, batch_stats: the model variables (numpy; no optimizer state).
      lm: the character language model it reads with (``text.char_lm.CharLM``; a reader
        folder's ``lm.npz``), or None: training checkpoints have none.
    """

    path: str
    workdir: str
    step: int
    config: ml_collections.ConfigDict
    charset: Charset
    params: Any
    batch_stats: Any
    lm: Any = None


def best_step(workdir: str, metric: str = "val/word_accuracy") -> int:
    """The saved step with the highest ``metric`` in ``workdir/metrics.jsonl`` (ties: the
    later step). Raises FileNotFoundError / ValueError naming what is missing."""
    steps = saved_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)!r}")
    try:
        rows = read_metrics(workdir)
    except FileNotFoundError:
        raise FileNotFoundError(f"--step=best needs {os.path.join(workdir, METRICS_FILE)!r}, "
                                "which does not exist") from None
    values = {r["step"]: r[metric] for r in rows if metric in r}
    scored = [(values[s], s) for s in steps if s in values]
    if not scored:
        raise ValueError(f"--step=best: none of the saved steps {steps} of {workdir!r} has "
                         f"{metric!r} in {METRICS_FILE} (validation logged at steps "
                         f"{sorted(values) or 'none'})")
    return max(scored)[1]


def resolve_step_dir(workdir: str | None, checkpoint: str | None, step: str | int) -> str:
    """The checkpoint step directory named by ``--checkpoint`` or ``--workdir`` + ``--step``.

    Args:
      workdir: a training workdir (holding ``checkpoints/``), or None.
      checkpoint: a step directory ``.../checkpoints/<step>``; wins over workdir/step.
      step: 'latest', 'best' (highest val/word_accuracy, see ``best_step``) or a step.

    Raises FileNotFoundError / ValueError naming the missing workdir, checkpoint or step.
    """
    if checkpoint:
        path = os.path.normpath(os.path.abspath(os.path.expanduser(checkpoint)))
        if os.path.basename(path) in ITEMS:            # .../<step>/state given: take the step
            path = os.path.dirname(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist")
        if not os.path.basename(path).isdigit() or not all(
                os.path.isdir(os.path.join(path, item)) for item in ("state", "meta")):
            raise FileNotFoundError(
                f"{checkpoint!r} is not a checkpoint step directory (expected "
                "WORKDIR/checkpoints/<step> holding state/ and meta/)")
        return path
    if not workdir:
        raise ValueError("give --workdir (a training workdir) or --checkpoint (a step directory)")
    workdir = os.path.expanduser(workdir)
    if not os.path.isdir(workdir):
        raise FileNotFoundError(f"workdir {workdir!r} does not exist")
    if not os.path.isdir(checkpoint_dir(workdir)):
        raise FileNotFoundError(f"workdir {workdir!r} has no checkpoints/ folder")
    step = str(step).strip().lower()
    if step == "latest":
        number = latest_step(workdir)
        if number is None:
            raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)!r}")
    elif step == "best":
        number = best_step(workdir)
    elif step.isdigit():
        number = int(step)
        steps = saved_steps(workdir)
        if number not in steps:
            raise FileNotFoundError(f"no checkpoint for step {number} in "
                                    f"{checkpoint_dir(workdir)!r}; saved steps: {steps}")
    else:
        raise ValueError(f"--step={step!r}: give 'latest', 'best' or a step number")
    return os.path.join(checkpoint_dir(workdir), str(number))


def read_for_inference(path: str) -> InferenceCheckpoint:
    """The weights, config and charset of the checkpoint step directory ``path`` (the moving
    average of the params where the run kept one). Raises CheckpointError for a step that
    is incomplete or unreadable."""
    problem = step_problem(path)
    if problem is not None:
        raise CheckpointError(problem)
    meta = load_meta(path)
    # A run that keeps a moving average of its params is evaluated (and exported) with it.
    weights = "ema_params" if meta["config"].get("ema_decay", 0.0) > 0 else "params"
    state = load_state_dir(path, keys=(weights, "batch_stats"))
    # A run trained with an attention guide (config.guide_layers) saves its variables too;
    # reading never runs it, so a reader is the network without them.
    return InferenceCheckpoint(
        path=path, workdir=os.path.dirname(os.path.dirname(path)), step=int(meta["step"]),
        config=ml_collections.ConfigDict(meta["config"]), charset=Charset(meta["charset"]),
        params=without_guide(state[weights]), batch_stats=state["batch_stats"])
