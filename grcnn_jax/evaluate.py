"""``python -m grcnn_jax.evaluate``: the command ``grcnn_jax.cli.evaluate`` defines."""

from grcnn_jax.cli import evaluate as _command
from grcnn_jax.cli.evaluate import run

__doc__ = _command.__doc__           # what --help prints

if __name__ == "__main__":
    run()
