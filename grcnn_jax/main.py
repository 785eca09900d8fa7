"""``python -m grcnn_jax.main``: the command ``grcnn_jax.cli.train`` defines."""

from grcnn_jax.cli import train as _command
from grcnn_jax.cli.train import run

__doc__ = _command.__doc__           # what --help prints

if __name__ == "__main__":
    run()
