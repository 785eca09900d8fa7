"""After training: fine-tuning with a changed charset, a frozen backbone, the moving average
of the weights, gradient accumulation and weighted training sets -- each against its
definition."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from helpers import IC03_MINI, tiny_config

from grcnn_jax.training import init_from
from grcnn_jax.inference import load, pretrained
from grcnn_jax.workdir import checkpoints
from grcnn_jax import assemble as components
from grcnn_jax.training import setup, train
from grcnn_jax.training.state import eval_params
from grcnn_jax.text import losses
from grcnn_jax.text.charset import Charset
from grcnn_jax.config.check import ConfigError, validate
from grcnn_jax.config.defaults import gray_mode
from grcnn_jax.data import pipeline
from grcnn_jax.data.preprocess import Preprocess
from grcnn_jax.data.sources import WeightedSources
from grcnn_jax.models import create_model


def fixture_images(config):
    from grcnn_jax.inference.recognize import expand_paths, load_images

    files, _ = expand_paths([str(IC03_MINI)])
    images, good, _ = load_images(files, config.image_height, config.image_width,
                                  config.data.keep_aspect, gray_mode(config))
    assert len(good) == 6
    return images


def greedy(logits, charset):
    from grcnn_jax.text import ctc_host
    from grcnn_jax.text import decode

    return ctc_host.greedy_decode(np.asarray(jnp.argmax(logits, -1)), charset)


# ----------------------------------------------------------------------------- charset
def test_added_characters_keep_the_old_predictions_at_step_0(caplog):
    shipped = load.load_for_inference()
    config = shipped.config
    wider = Charset(shipped.charset.chars + "ÄÖÜ€£")
    state = setup.train_state_of(config, create_model(config.model, wider.num_classes),
                                     jax.random.key(0))
    with caplog.at_level(logging.INFO, logger="grcnn_jax"):
        started = init_from.init_state_from(state, shipped, wider)
    assert "initialized for 5 new ('£ÄÖÜ€')" in caplog.text
    images = fixture_images(config)
    old = create_model(config.model, shipped.charset.num_classes).apply(
        {"params": shipped.params, "batch_stats": shipped.batch_stats}, images)
    new = create_model(config.model, wider.num_classes).apply(
        {"params": started.params, "batch_stats": started.batch_stats}, images)
    n_old = shipped.charset.num_classes
    # The same columns, but in a wider product: XLA may sum in another order there (AVX2
    # and AVX-512 kernels differ), so float32 agrees to rounding, not to the bit.
    scale = float(np.abs(np.asarray(old)).max())
    np.testing.assert_allclose(np.asarray(new[..., :n_old]), np.asarray(old), rtol=0,
                               atol=1e-5 * scale)
    assert np.all(np.asarray(new[..., n_old:]) < np.asarray(old).max(-1, keepdims=True))
    assert greedy(new, wider) == greedy(old, shipped.charset)
    assert sorted(greedy(new, wider)) == ["2017", "Coffee", "EXIT", "Hotel", "Stop", "park"]


def test_a_reordered_and_narrower_charset_moves_the_columns():
    shipped = load.load_for_inference()
    narrow = Charset("zyxcba0")                 # reordered, most characters dropped
    state = setup.train_state_of(shipped.config, create_model(
        shipped.config.model, narrow.num_classes), jax.random.key(0))
    started = init_from.init_state_from(state, shipped, narrow)
    old = np.asarray(shipped.params["blstm2"]["linear"]["kernel"])
    new = np.asarray(started.params["blstm2"]["linear"]["kernel"])
    for j, ch in enumerate(narrow.chars, start=1):
        np.testing.assert_array_equal(new[:, j], old[:, shipped.charset.chars.index(ch) + 1])
    np.testing.assert_array_equal(new[:, 0], old[:, 0])


def test_fine_tune_end_to_end_with_an_added_character_and_a_frozen_backbone(lmdb_path,
                                                                             tmp_path, caplog):
    source = tmp_path / "source"
    train.train_and_evaluate(tiny_config(lmdb_path, 2), str(source))
    _, before = checkpoints.load_state_arrays(str(source))
    config = tiny_config(lmdb_path, 3, **{"freeze": "backbone"})
    config.charset = config.charset + "!"
    config.init_from = str(source)
    with caplog.at_level(logging.INFO, logger="grcnn_jax"):
        state = train.train_and_evaluate(config, str(tmp_path / "tuned"))
    assert "initialized for 1 new ('!')" in caplog.text
    assert int(state.step) == 3
    flat_before = traverse_util.flatten_dict(before["params"], sep="/")
    flat_after = traverse_util.flatten_dict(jax.device_get(state.params), sep="/")
    moved = {k for k in flat_after
             if k in flat_before and flat_before[k].shape == flat_after[k].shape
             and not np.array_equal(flat_before[k], flat_after[k])}
    assert moved and all(k.startswith(("blstm1/", "blstm2/")) for k in moved)
    for key, value in traverse_util.flatten_dict(before["batch_stats"]["backbone"]).items():
        np.testing.assert_array_equal(
            value, traverse_util.flatten_dict(jax.device_get(state.batch_stats["backbone"]))[key])
    assert flat_after["blstm2/linear/kernel"].shape[-1] == len(config.charset) + 1


def test_freeze_names_only_known_groups(lmdb_path):
    config = tiny_config(lmdb_path, 2, freeze="backbone,decoder")
    with pytest.raises(ConfigError, match="config.freeze='backbone,decoder'"):
        validate(config)


# ----------------------------------------------------------------------------- EMA, accumulation
def _batches(n, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        labels = np.zeros((4, 25), np.int32)
        labels[:, :5] = rng.integers(1, 37, (4, 5))
        out.append({"image": rng.integers(0, 256, (4, 32, 100), np.uint8), "labels": labels,
                    "label_paddings": (np.arange(25)[None] >= 5).astype(np.float32).repeat(4, 0),
                    "mask": np.ones(4, np.float32)})
    return out


def _state_and_step(lmdb_path, **extra):
    config = tiny_config(lmdb_path, 10, **{"optimizer.name": "sgd", "optimizer.momentum": 0.0,
                                           "optimizer.learning_rate": 0.5, "grad_clip_norm": 0.0,
                                           **extra})
    model = create_model(config.model, Charset.from_spec(config.charset).num_classes,
                         guide_layers=config.guide_layers)
    state = setup.train_state_of(config, model, jax.random.key(0))
    return state, jax.jit(setup.train_step_of(config))


def test_the_moving_average_follows_its_definition(lmdb_path):
    state, step = _state_and_step(lmdb_path, ema_decay=0.75)
    expected = jax.device_get(state.params)
    for batch in _batches(3):
        state, metrics = step(state, batch, jax.random.key(0))
        assert bool(metrics["finite"])
        expected = jax.tree.map(lambda e, p: 0.75 * e + 0.25 * p, expected,
                                jax.device_get(state.params))
    for e, got in zip(jax.tree.leaves(expected), jax.tree.leaves(jax.device_get(state.ema_params))):
        np.testing.assert_allclose(got, e, rtol=1e-5, atol=1e-6)
    assert not np.allclose(jax.tree.leaves(state.ema_params)[0], jax.tree.leaves(state.params)[0])


def test_dropout_draws_from_the_step_key_in_training_only(lmdb_path):
    batch = _batches(1)[0]
    state, step = _state_and_step(lmdb_path, **{"model.dropout": 0.3})

    def loss(key):
        return float(step(state, batch, jax.random.key(key))[1]["loss"])
    assert loss(1) == loss(1) != loss(2)
    state0, step0 = _state_and_step(lmdb_path)
    assert float(step0(state0, batch, jax.random.key(1))[1]["loss"]) == \
        float(step0(state0, batch, jax.random.key(2))[1]["loss"])
    # Inference leaves nothing out: the same logits as the model without dropout.
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    plain = state0.apply_fn(variables, batch["image"])
    np.testing.assert_array_equal(state.apply_fn(variables, batch["image"]), plain)
    with pytest.raises(ConfigError, match="model.dropout"):
        validate(tiny_config(lmdb_path, 2, **{"model.dropout": 1.0}))


def test_the_confidence_penalty_raises_the_entropy_and_reports_the_ctc_loss(lmdb_path):
    batch = _batches(1, seed=2)[0]
    plain_state, plain = _state_and_step(lmdb_path)
    penalized_state, penalized = _state_and_step(lmdb_path, confidence_penalty=0.5)
    key = jax.random.key(0)
    after_plain, m_plain = plain(plain_state, batch, key)
    after_penalized, m_penalized = penalized(penalized_state, batch, key)
    assert float(m_plain["loss"]) == pytest.approx(float(m_penalized["loss"]), rel=1e-6)

    def entropy(state):                 # the outputs' mean entropy per frame, nats
        logits = state.apply_fn({"params": state.params, "batch_stats": state.batch_stats},
                                batch["image"])
        log_p = jax.nn.log_softmax(logits, axis=-1)
        return float(-(jnp.exp(log_p) * log_p).sum(-1).mean())
    assert entropy(after_penalized) > entropy(after_plain)
    with pytest.raises(ConfigError, match="confidence_penalty"):
        validate(tiny_config(lmdb_path, 2, confidence_penalty=1.5))


def test_sam_steps_along_the_gradient_taken_at_the_point_uphill(lmdb_path):
    # Plain SGD (lr 0.5, no clipping): a plain step from p gives g = (p - p') / lr; SAM's step
    # from p is p - lr * g(q), with q = p + rho * g / |g| and lr * g(q) read off a plain step
    # from q.
    rho, lr = 0.05, 0.5
    batch = _batches(1, seed=3)[0]
    state, plain = _state_and_step(lmdb_path)
    _, sam = _state_and_step(lmdb_path, sam_rho=rho)
    key = jax.random.key(0)
    p = jax.device_get(state.params)
    after_plain, plain_metrics = jax.device_get(plain(state, batch, key))
    g = jax.tree.map(lambda a, b: (a - b) / lr, p, after_plain.params)
    norm = np.sqrt(sum(float(np.vdot(x, x)) for x in jax.tree.leaves(g)))
    q = jax.tree.map(lambda a, b: a + rho * b / norm, p, g)
    after_q = jax.device_get(plain(state.replace(params=q), batch, key)[0].params)
    expected = jax.tree.map(lambda a, b, c: a - (b - c), p, q, after_q)
    after, metrics = sam(state, batch, key)
    for e, got in zip(jax.tree.leaves(expected), jax.tree.leaves(jax.device_get(after.params))):
        np.testing.assert_allclose(got, e, rtol=1e-4, atol=1e-5)
    assert not all(np.allclose(a, b) for a, b in zip(
        jax.tree.leaves(jax.device_get(after.params)), jax.tree.leaves(after_plain.params)))
    assert float(metrics["loss"]) == pytest.approx(float(plain_metrics["loss"]))
    with pytest.raises(ConfigError, match="sam_rho"):
        validate(tiny_config(lmdb_path, 2, sam_rho=-0.1))


def test_the_guide_trains_the_backbone_beside_ctc_and_reading_never_runs_it(lmdb_path):
    batch = _batches(1, seed=4)[0]
    plain_state, plain = _state_and_step(lmdb_path)
    state, guided = _state_and_step(lmdb_path, guide_layers=1, guide_weight=0.5)
    assert set(state.params) == {*plain_state.params, "guide"}
    # The guide adds variables beside the network's, which start as they would without it.
    for k in plain_state.params:
        for a, b in zip(jax.tree.leaves(plain_state.params[k]), jax.tree.leaves(state.params[k])):
            np.testing.assert_array_equal(a, b)
    key = jax.random.key(0)
    after_plain, m_plain = jax.device_get(plain(plain_state, batch, key))
    after, metrics = jax.device_get(guided(state, batch, key))
    assert float(metrics["loss"]) == pytest.approx(float(m_plain["loss"]), rel=1e-6)
    assert float(metrics["guide_loss"]) > 0 and "guide_loss" not in m_plain
    # SGD: the BLSTMs get the CTC gradient alone; the backbone also the guide's.
    for group in ("blstm1", "blstm2"):
        for a, b in zip(jax.tree.leaves(after.params[group]),
                        jax.tree.leaves(after_plain.params[group])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not all(np.allclose(a, b) for a, b in zip(
        jax.tree.leaves(after.params["backbone"]), jax.tree.leaves(after_plain.params["backbone"])))
    assert not all(np.array_equal(a, b) for a, b in zip(
        jax.tree.leaves(after.params["guide"]), jax.tree.leaves(state.params["guide"])))
    # Reading: the network's logits, with or without the guide's variables at hand.
    variables = {"params": after.params, "batch_stats": after.batch_stats}
    reader = {"params": eval_params(after), "batch_stats": after.batch_stats}
    assert set(reader["params"]) == set(plain_state.params)
    np.testing.assert_array_equal(state.apply_fn(variables, batch["image"]),
                                  plain_state.apply_fn(reader, batch["image"]))
    with pytest.raises(ConfigError, match="config.guide_weight=0.0"):
        validate(tiny_config(lmdb_path, 2, guide_layers=2, guide_weight=0.0))
    with pytest.raises(ConfigError, match="config.guide_layers=-1"):
        validate(tiny_config(lmdb_path, 2, guide_layers=-1))


def test_teacher_tokens_shift_each_label_behind_the_start_and_end_it():
    labels = np.array([[3, 4, 9], [5, 7, 2]], np.int32)     # the second one padded after 5
    paddings = np.array([[0, 0, 0], [0, 1, 1]], np.float32)
    inputs, targets, mask = jax.device_get(losses.teacher_tokens(labels, paddings))
    np.testing.assert_array_equal(inputs, [[0, 3, 4, 9], [0, 5, 0, 0]])
    np.testing.assert_array_equal(targets, [[3, 4, 9, 0], [5, 0, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 1], [1, 1, 0, 0]])
    # A guide sure of every target loses nothing; padding past the end is not scored.
    logits = np.full((2, 4, 10), -50.0, np.float32)
    np.put_along_axis(logits, targets[..., None], 50.0, axis=-1)
    logits[1, 3] = 0.0
    np.testing.assert_allclose(jax.device_get(losses.guide_loss(logits, targets, mask)), 0.0,
                               atol=1e-6)
    logits[0, 3] = 0.0                                       # unsure of the first word's end
    np.testing.assert_allclose(jax.device_get(losses.guide_loss(logits, targets, mask)),
                               [np.log(10.0), 0.0], rtol=1e-5, atol=1e-6)


def test_a_guided_run_saves_its_guide_and_readers_load_without_it(lmdb_path, tmp_path):
    source = tmp_path / "guided"
    train.train_and_evaluate(tiny_config(lmdb_path, 2, guide_layers=1), str(source))
    _, saved = checkpoints.load_state_arrays(str(source))
    assert "guide" in saved["params"]                      # resuming needs it
    reader = load.load_for_inference(workdir=str(source))
    assert set(reader.params) == {"backbone", "blstm1", "blstm2"}
    assert pretrained.training_leg(reader)["guide"] == {"layers": 1, "weight": 0.2}
    # Another guided leg from that reader: its guide starts fresh, the rest is the reader's.
    config = tiny_config(lmdb_path, 1, guide_layers=1)
    charset = Charset.from_spec(config.charset)
    state = setup.train_state_of(config, create_model(config.model, charset.num_classes,
                                                      guide_layers=1), jax.random.key(5))
    started = init_from.init_state_from(state, reader, charset)
    for a, b in zip(jax.tree.leaves(started.params["guide"]),
                    jax.tree.leaves(state.params["guide"])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(started.params["backbone"]),
                    jax.tree.leaves(reader.params["backbone"])):
        np.testing.assert_array_equal(a, b)


def test_accumulated_gradients_are_the_mean_of_the_steps(lmdb_path):
    b1, b2 = _batches(2, seed=1)
    state0, single = _state_and_step(lmdb_path)
    p0 = jax.device_get(state0.params)
    one = [jax.device_get(single(jax.tree.map(jnp.copy, state0), b, jax.random.key(0))[0].params)
           for b in (b1, b2)]
    state, accumulate = _state_and_step(lmdb_path, grad_accum_steps=2)
    state, _ = accumulate(state, b1, jax.random.key(0))
    for a, b in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(p0)):
        np.testing.assert_array_equal(a, b)                  # no update after the first
    state, _ = accumulate(state, b2, jax.random.key(0))
    # SGD: p0 - lr * (g1 + g2) / 2 is the mean of the two single steps from p0.
    for got, x, y in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(one[0]),
                         jax.tree.leaves(one[1])):
        np.testing.assert_allclose(got, (x + y) / 2, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- mixing
class Words:
    def __init__(self, prefix, n):
        self.prefix, self.n = prefix, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"key": f"{self.prefix}{i}", "text": "ab",
                "image": np.full((32, 100), 100 + i % 50, np.uint8)}


def test_weighted_training_sets_are_drawn_in_proportion_and_resume(lmdb_path):
    source = WeightedSources([Words("a", 7), Words("b", 50)], [0.8, 0.2])
    preprocess = Preprocess(Charset())

    def stream():
        return pipeline.BatchIterator(pipeline.make_dataset(source, preprocess, 10, train=True,
                                                            seed=3))

    it = stream()
    keys = [k for _ in range(40) for k in next(it)["meta"]["key"]]
    share_a = sum(k.startswith("a") for k in keys) / len(keys)
    assert share_a == pytest.approx(0.8, abs=0.03)
    assert len({k for k in keys if k.startswith("a")}) == 7        # the small set cycles
    state = it.get_state()
    following = next(it)["meta"]["key"]
    again = stream()
    again.set_state(state)
    assert next(again)["meta"]["key"] == following


def test_train_weights_open_weighted_sources_and_are_checked(lmdb_path):
    config = tiny_config(lmdb_path, 2)
    config.data.train = f"{lmdb_path},synth"
    config.data.train_weights = "0.5,0.5"
    validate(config)
    opened = components.open_split(config, "train")
    assert isinstance(opened, WeightedSources) and opened.weights == [0.5, 0.5]
    config.data.train_weights = "1"
    with pytest.raises(ConfigError, match="data.train_weights='1': must be 2 positive"):
        validate(config)
