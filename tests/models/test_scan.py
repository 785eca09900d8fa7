"""The T recurrent iterations are one while loop in the compiled training program, whatever T is."""

import re

import jax
import jax.numpy as jnp
import pytest

from grcnn_jax.models import GRCL, GRCLOptions


def compiled_grcl(T: int, train: bool, **kw) -> str:
    model = GRCL(8, GRCLOptions(T=T, **kw))
    x = jnp.ones((2, 6, 10, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    fn = jax.jit(lambda v, x: model.apply(v, x, train=train, mutable=["batch_stats"]))
    return fn.lower(variables, x).compile().as_text()


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


@pytest.mark.parametrize("train,unroll", [(True, 0), (False, 1)], ids=["train", "eval-rolled"])
def test_iterations_compile_to_one_while_loop(train, unroll):
    short, long = compiled_grcl(2, train, scan_unroll=unroll), compiled_grcl(6, train,
                                                                             scan_unroll=unroll)
    assert count(r"\bwhile\(", short) == count(r"\bwhile\(", long) == 1
    # The program does not grow with T: the same number of matrix products for T = 2 and 6.
    assert count(r"\bdot\(", short) == count(r"\bdot\(", long) > 0


@pytest.mark.parametrize("train,unroll", [(True, "T"), (False, 0)], ids=["train", "eval-default"])
def test_unrolled_program_grows_with_t(train, unroll):
    """The check above can fail: unrolled (by default in eval mode), products multiply with T."""
    def compiled(T):
        return compiled_grcl(T, train, scan_unroll=T if unroll == "T" else unroll)
    short, long = compiled(2), compiled(6)
    assert count(r"\bwhile\(", long) == 0
    assert count(r"\bdot\(", long) > count(r"\bdot\(", short)
