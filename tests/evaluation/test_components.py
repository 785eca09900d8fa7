"""The parts every command builds from a config agree: one lexicon case policy everywhere."""

import copy

import pytest

from helpers import IC03_MINI, make_lmdb, tiny_config

from grcnn_jax.inference import load
from grcnn_jax import assemble as components
from grcnn_jax.evaluation import evaluator as evaluator_lib
from grcnn_jax.evaluation import scoring as evaluate
from grcnn_jax.inference import recognize
from grcnn_jax.training import setup, train

FIXTURE = str(IC03_MINI)


@pytest.fixture
def built(monkeypatch):
    """The lexicon policy of every Evaluator made while the test runs."""
    seen = []
    real = evaluator_lib.make_evaluator

    def spy(*args, **kwargs):
        evaluator = real(*args, **kwargs)
        seen.append(evaluator.lexicon_lowercase)
        return evaluator

    monkeypatch.setattr(evaluator_lib, "make_evaluator", spy)
    for module in (evaluate, setup):          # those that import it by name
        monkeypatch.setattr(module, "make_evaluator", spy)
    return seen


@pytest.mark.parametrize("policy,lowercase", [("skip", False), ("lower", True)])
def test_the_lexicon_case_policy_is_the_datas_everywhere(built, tmp_path, policy, lowercase):
    shipped = load.load_for_inference()
    ckpt = copy.copy(shipped)
    ckpt.config = shipped.config.copy_and_resolve_references()
    ckpt.config.data.policy.unknown_chars = policy
    evaluate.evaluate_checkpoint(ckpt, [FIXTURE], num_workers=0, batch_size=8)
    recognize.recognize_images(ckpt, recognize.load_images(
        [f"{FIXTURE}/word_1.png"], 32, 100, False)[0], lexicon=["hotel", "Motel"])
    config = tiny_config(make_lmdb(tmp_path / "d.lmdb", n=8), 1)
    config.data.val, config.data.policy.unknown_chars = FIXTURE, policy
    train.train_and_evaluate(config, str(tmp_path / "run"))
    assert built == [lowercase] * 3


def test_a_batch_that_does_not_split_over_the_devices_names_its_flag():
    import jax

    config = load.load_for_inference().config
    with pytest.raises(ValueError, match=r"--batch_size=-4 is not a positive multiple"):
        evaluator_lib.make_evaluator(config, load.load_for_inference().charset,
                                     components.make_mesh(), -4, what="--batch_size")
    assert components.host_batch_size(4 * jax.device_count(), "x") == 4 * jax.device_count()
