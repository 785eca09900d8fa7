"""Checkpoints with orbax: train state, data-iterator position, config and charset.

Layout: ``workdir/checkpoints/<step>/{state,data,meta}``. ``state`` is the
TrainState pytree (params, batch_stats, opt_state, step); ``data`` the Grain
iterator state, one JSON file per host; ``meta`` the config and the charset,
enough for evaluation to rebuild the model with nothing else.
"""

from __future__ import annotations

import json
import os
from typing import Any

import grain
import jax
import numpy as np
import ml_collections
import orbax.checkpoint as ocp

from grcnn_jax.charset import Charset

ITEMS = ("state", "data", "meta")


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def make_manager(workdir: str, config: ml_collections.ConfigDict) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True,
                                           enable_async_checkpointing=config.async_checkpoints)
    return ocp.CheckpointManager(checkpoint_dir(workdir), item_names=ITEMS, options=options)


def _meta(config: ml_collections.ConfigDict, charset: Charset, step: int) -> dict:
    return {"config": json.loads(config.to_json_best_effort()), "charset": charset.chars,
            "step": step}


def save(manager: ocp.CheckpointManager, step: int, state: Any, data_iterator: Any,
         config: ml_collections.ConfigDict, charset: Charset) -> None:
    """Saves (asynchronously where enabled) the state, the data position and the metadata."""
    manager.save(step, force=True, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(data_iterator.grain_iterator),
        meta=ocp.args.JsonSave(_meta(config, charset, step))))


def restore_latest(manager: ocp.CheckpointManager, state: Any, data_iterator: Any,
                   config: ml_collections.ConfigDict, charset: Charset) -> Any | None:
    """Restores the latest checkpoint into ``state``'s structure and shardings, and moves the
    data iterator to its saved position. None if there is no checkpoint.

    Raises ValueError if the checkpoint's model or charset differ from the config's.
    """
    step = manager.latest_step()
    if step is None:
        return None
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    check_compatible(meta, config, charset, os.path.join(str(manager.directory), str(step)))
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract),
        data=grain.checkpoint.CheckpointRestore(data_iterator.grain_iterator)))
    return restored.state


def check_compatible(meta: dict, config: ml_collections.ConfigDict, charset: Charset,
                     where: str) -> None:
    saved_model = meta["config"]["model"]
    model = json.loads(config.model.to_json_best_effort())
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


def load_state_arrays(workdir: str, step: int | None = None) -> tuple[int, dict]:
    """A checkpoint's train state as host numpy arrays, on any device topology.

    Returns ``(step, {'params', 'batch_stats', 'opt_state', 'step'})``; ``step``
    None takes the latest. Raises FileNotFoundError naming the workdir if there
    is no checkpoint.
    """
    if step is None:
        step = latest_step(workdir)
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(workdir)!r}")
    path = os.path.join(checkpoint_dir(workdir), str(step), "state")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no checkpoint for step {step} at {path!r}")
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path).item_metadata.tree
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    state = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    return step, state
