"""Averaging readers: the mean of their weights, refusals naming what differs, the command."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from grcnn_jax.cli import pretrained as pretrained_cli
from grcnn_jax.inference import pretrained
from grcnn_jax.inference.average import AverageError, average
from grcnn_jax.text.charset import Charset


@pytest.fixture(scope="module")
def shipped():
    return pretrained.load()


def shifted(ckpt, by: float):
    """``ckpt`` with every param and batch statistic moved by ``by``."""
    move = lambda tree: jax.tree.map(lambda x: np.asarray(x) + np.float32(by), tree)  # noqa: E731
    return dataclasses.replace(ckpt, params=move(ckpt.params), batch_stats=move(ckpt.batch_stats))


def test_the_mean_is_taken_leaf_by_leaf(shipped):
    soup = average([shifted(shipped, 1.0), shifted(shipped, -1.0), shipped])
    assert soup.charset.chars == shipped.charset.chars and soup.step == shipped.step
    for group in ("params", "batch_stats"):
        got, want = jax.tree.leaves(getattr(soup, group)), jax.tree.leaves(getattr(shipped, group))
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a.dtype == np.float32
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_readers_that_differ_are_refused_naming_what(shipped):
    other_charset = dataclasses.replace(shipped, charset=Charset("0123456789abcdefghijklmnopqrstuvwxyz"))
    with pytest.raises(AverageError, match=r"^b: its charset \(36 characters\) differs from a's"):
        average([shipped, other_charset], ["a", "b"])
    wider = shipped.config.copy_and_resolve_references()
    wider.model.hidden = 64
    with pytest.raises(AverageError, match=r"^b: config\.model\.hidden=64 differs from a's 128"):
        average([shipped, dataclasses.replace(shipped, config=wider)], ["a", "b"])
    taller = shipped.config.copy_and_resolve_references()
    taller.image_height = 48
    with pytest.raises(AverageError, match=r"config\.image_height=48"):
        average([shipped, dataclasses.replace(shipped, config=taller)], ["a", "b"])
    params = jax.tree.map(np.asarray, shipped.params)
    name = next(iter(params))
    missing = {k: v for k, v in params.items() if k != name}
    with pytest.raises(AverageError, match=rf"^b: params/{name}/.* is missing"):
        average([shipped, dataclasses.replace(shipped, params=missing)], ["a", "b"])


def test_training_only_model_settings_may_differ(shipped):
    """A run trained with dropout (or another remat, unroll or convolution form) averages
    with one without: those settings leave every weight's meaning as it is."""
    trained = shipped.config.copy_and_resolve_references()
    with trained.unlocked():
        trained.model.dropout = 0.2
    trained.model.remat = "full"
    soup = average([shifted(shipped, 1.0), dataclasses.replace(shifted(shipped, -1.0),
                                                               config=trained)])
    for a, b in zip(jax.tree.leaves(soup.params), jax.tree.leaves(shipped.params)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_the_command_writes_the_mean_and_records_its_ingredients(shipped, tmp_path, capsys):
    plus = str(tmp_path / "plus")
    pretrained.export(shifted(shipped, 0.5), plus, note="moved")
    out = str(tmp_path / "soup")
    assert pretrained_cli.main(["--checkpoint", "pretrained", "--average", plus,
                                "--out", out, "--note", "a soup"]) == 0
    assert "the mean of 2 readers" in capsys.readouterr().out
    soup = pretrained.load(out)
    for a, b in zip(jax.tree.leaves(soup.params), jax.tree.leaves(shipped.params)):
        np.testing.assert_allclose(a, np.asarray(b) + 0.25, rtol=0, atol=1e-5)
    with open(os.path.join(out, pretrained.META_FILE), encoding="utf-8") as f:
        meta = json.load(f)
    with open(os.path.join(pretrained.ASSET_DIR, pretrained.META_FILE), encoding="utf-8") as f:
        shipped_meta = json.load(f)
    assert meta["lineage"] == shipped_meta["lineage"]        # the first reader's legs, once
    [plus_entry] = meta["averaged_with"]
    assert plus_entry["source"] == plus and plus_entry["note"] == "moved"
    assert plus_entry["steps"] == shipped.step and len(plus_entry["sha256"]) == 64


def test_the_command_refuses_a_bad_ingredient_in_one_line(tmp_path):
    out = tmp_path / "soup"
    for value in (str(tmp_path / "none"), "pretrained," + str(tmp_path / "none")):
        with pytest.raises(SystemExit) as e:
            pretrained_cli.main(["--checkpoint", "pretrained", "--average", value,
                                 "--out", str(out)])
        message = str(e.value.code)
        assert message.startswith("FATAL") and "\n" not in message
        assert f"--average '{tmp_path / 'none'}'" in message
    assert not out.exists()
