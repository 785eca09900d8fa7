"""``python -m grcnn_jax.export``: the command ``grcnn_jax.cli.export`` defines."""

from grcnn_jax.cli import export as _command
from grcnn_jax.cli.export import run

__doc__ = _command.__doc__           # what --help prints

if __name__ == "__main__":
    run()
