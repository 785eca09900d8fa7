"""The train state, the optimizer and the pure data-parallel train step.

Nothing here reads a config: ``training.setup`` turns the config into these pieces' values.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import optax
from flax.training import train_state

from grcnn_jax.config.check import OPTIMIZERS, SCHEDULES
from grcnn_jax.models.grcnn import BACKBONE
from grcnn_jax.models.guide import without_guide
from grcnn_jax.text.losses import ctc_loss, guide_loss, teacher_tokens


class TrainState(train_state.TrainState):
    """Flax's TrainState (step, params, opt_state, apply_fn, tx) plus BatchNorm statistics
    and, when an EMA decay is set, the moving average of the params (else None)."""

    batch_stats: Any = None
    ema_params: Any = None


class NonFiniteLossError(FloatingPointError):
    """The loss or gradient became NaN or inf; the state keeps the last good update."""


# One maker per name of config.check.OPTIMIZERS (which the config check reads); a module-level
# assert keeps the two the same.
_OPTIMIZER_MAKERS = {
    "adadelta": lambda lr, o: optax.adadelta(lr, rho=o["rho"], eps=o["eps"]),
    "adam": lambda lr, o: optax.adam(lr, b1=o["b1"], b2=o["b2"], eps=o["eps"]),
    "adamw": lambda lr, o: optax.adamw(lr, b1=o["b1"], b2=o["b2"], eps=o["eps"],
                                       weight_decay=o["weight_decay"]),
    "sgd": lambda lr, o: optax.sgd(lr, momentum=o["momentum"] or None),
}
assert tuple(_OPTIMIZER_MAKERS) == OPTIMIZERS, "config.check.OPTIMIZERS and the makers differ"


def create_optimizer(settings: Mapping[str, Any], *, total_steps: int,
                     grad_clip_norm: float = 0.0, frozen: tuple[str, ...] = (),
                     accum_steps: int = 1) -> optax.GradientTransformation:
    """The optimizer ``settings`` name (a config's ``optimizer`` section: name, learning_rate,
    schedule, warmup_steps and the optimizer's own constants), with a cosine schedule over
    ``total_steps`` where asked, global-norm clipping (0: off), no updates for the ``frozen``
    parameter groups, and gradients averaged over ``accum_steps`` steps per update."""
    name, schedule = settings["name"], settings["schedule"]
    if schedule not in SCHEDULES or name not in OPTIMIZERS:   # config.check names both
        raise ValueError(f"config.optimizer: name {name!r} (one of {OPTIMIZERS}), schedule "
                         f"{schedule!r} (one of {SCHEDULES})")
    lr: Any = settings["learning_rate"]
    if schedule == "cosine":
        warmup = settings["warmup_steps"]
        lr = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(total_steps, warmup + 1))
    tx = _OPTIMIZER_MAKERS[name](lr, settings)
    if grad_clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(grad_clip_norm), tx)
    # On one flat vector: a handful of large elementwise kernels instead of a few per
    # parameter array (over a hundred of them), which XLA compiles for seconds and runs slower.
    tx = optax.flatten(tx)
    if frozen:
        # Frozen groups get zero updates and no optimizer state; the rest the optimizer above.
        tx = optax.multi_transform(
            {"train": tx, "frozen": optax.set_to_zero()},
            lambda params: {k: jax.tree.map(lambda _: "frozen" if k in frozen else "train", v)
                            for k, v in params.items()})
    if accum_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=accum_steps)
    return tx


def create_train_state(model, tx: optax.GradientTransformation, rng: jax.Array,
                       image_size: tuple[int, int], ema: bool = False) -> TrainState:
    """``model``'s initial variables for uint8 images of ``image_size`` (height, width), with
    the optimizer ``tx`` and, if ``ema``, a moving average starting at the params."""
    images = jnp.zeros((1, *image_size), jnp.uint8)
    variables = jax.jit(model.init)(rng, images)
    params = variables["params"]
    return TrainState.create(apply_fn=model.apply, params=params,
                             ema_params=jax.tree.map(jnp.copy, params) if ema else None,
                             batch_stats=variables["batch_stats"], tx=tx)


def train_step(state: TrainState, batch: dict, rng: jax.Array, frozen: tuple[str, ...] = (),
               ema_decay: float = 0.0, confidence_penalty: float = 0.0, sam_rho: float = 0.0,
               guide_weight: float = 0.0) -> tuple[TrainState, dict]:
    """One optimizer step on a global batch; a non-finite loss leaves the state unchanged.

    ``frozen``: parameter groups not trained (no gradient is computed for them; a frozen
    backbone runs as in inference). ``ema_decay`` > 0: ``state.ema_params`` becomes
    ``decay * ema + (1 - decay) * params`` after the update. ``rng``: the step's dropout
    key (used where ``model.dropout`` > 0). ``confidence_penalty`` > 0: the loss minimized
    is each image's CTC loss less that times its output distribution's entropy summed over
    the frames (Pereyra et al. 2017's confidence penalty); the ``loss`` reported is the CTC
    loss alone either way. ``sam_rho`` > 0: sharpness-aware minimization (Foret et al.
    2021): the update follows the gradient taken again at ``params + sam_rho * g / |g|``
    (``g`` the gradient at the params, ``|g|`` its global norm), the nearby point where the
    loss rises fastest; a step then costs two forward and backward passes, and the batch
    statistics and the ``loss`` reported are the first pass's. ``guide_weight`` > 0 (a model
    with an attention guide, ``models.guide``): the loss minimized adds that times the guide's
    cross-entropy per word (``text.losses.guide_loss``, teacher-forced on the labels),
    reported as ``guide_loss``; ``loss`` stays the CTC loss.
    """
    fixed = {k: v for k, v in state.params.items() if k in frozen}
    backbone_train = None if BACKBONE not in frozen else False

    guide = {}
    if guide_weight:
        tokens, targets, token_mask = teacher_tokens(batch["labels"], batch["label_paddings"])
        guide = {"guide_inputs": tokens}

    def loss_fn(trainable):
        outputs, updates = state.apply_fn(
            {"params": {**fixed, **trainable}, "batch_stats": state.batch_stats},
            batch["image"], train=True, backbone_train=backbone_train, mutable=["batch_stats"],
            rngs={"dropout": rng}, **guide)
        logits, guide_logits = outputs if guide else (outputs, None)
        per_example = ctc_loss(logits, batch["labels"], batch["label_paddings"])
        mask = batch["mask"]
        count = jnp.maximum(jnp.sum(mask), 1.0)
        ctc = jnp.sum(per_example * mask) / count
        total, reported = ctc, {"loss": ctc}
        if confidence_penalty:
            log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
            entropy = -jnp.sum(jnp.exp(log_p) * log_p, axis=(1, 2))                # [B]
            total = total - confidence_penalty * jnp.sum(entropy * mask) / count
        if guide:
            guided = jnp.sum(guide_loss(guide_logits, targets, token_mask) * mask) / count
            total, reported = total + guide_weight * guided, {**reported, "guide_loss": guided}
        return total, (updates, reported)

    def global_norm(tree):
        # The norm of all gradients as one vector (the same concatenation the flattened
        # optimizer makes, which XLA computes once), not a reduction per parameter array.
        flat = jnp.concatenate([jnp.ravel(g) for g in jax.tree.leaves(tree)])
        return jnp.sqrt(jnp.vdot(flat, flat))

    trainable = {k: v for k, v in state.params.items() if k not in frozen}
    gradient = jax.value_and_grad(loss_fn, has_aux=True)
    (_, (updates, reported)), grads = gradient(trainable)
    loss = reported["loss"]
    if sam_rho:
        scale = sam_rho / jnp.maximum(global_norm(grads), 1e-12)
        _, grads = gradient(jax.tree.map(lambda p, g: p + scale * g, trainable, grads))
    grad_norm = global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    grads = {**jax.tree.map(jnp.zeros_like, fixed), **grads}

    def update():
        new = state.apply_gradients(grads=grads, batch_stats=updates["batch_stats"])
        if state.ema_params is not None:
            new = new.replace(ema_params=optax.incremental_update(
                new.params, state.ema_params, step_size=1.0 - ema_decay))
        return new

    new_state = jax.lax.cond(finite, update, lambda: state)
    return new_state, {**reported, "grad_norm": grad_norm, "finite": finite}


def eval_params(state: TrainState) -> Any:
    """The params evaluation, checkpoints' readers and export use: the moving average when
    the run keeps one, without the attention guide's (which reading never runs)."""
    params = state.params if state.ema_params is None else state.ema_params
    return without_guide(params)
