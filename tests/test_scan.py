"""The T recurrent iterations are one while loop in the compiled program, whatever T is."""

import re

import jax
import jax.numpy as jnp
import pytest

from grcnn_jax.models import GRCL


def compiled_grcl(T: int, train: bool, **kw) -> str:
    model = GRCL(8, T=T, **kw)
    x = jnp.ones((2, 6, 10, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    fn = jax.jit(lambda v, x: model.apply(v, x, train=train, mutable=["batch_stats"]))
    return fn.lower(variables, x).compile().as_text()


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_iterations_compile_to_one_while_loop(train):
    short, long = compiled_grcl(2, train), compiled_grcl(6, train)
    assert count(r"\bwhile\(", short) == count(r"\bwhile\(", long) == 1
    # The program does not grow with T: the same number of convolutions for T = 2 and 6.
    assert count(r"convolution\(", short) == count(r"convolution\(", long) > 0


def test_unrolled_program_grows_with_t():
    """The check above can fail: fully unrolled, the convolutions multiply with T."""
    short, long = compiled_grcl(2, True, scan_unroll=2), compiled_grcl(6, True, scan_unroll=6)
    assert count(r"convolution\(", long) > count(r"convolution\(", short)
