"""``python -m grcnn_jax.recognize``: the command ``grcnn_jax.cli.recognize`` defines."""

from grcnn_jax.cli import recognize as _command
from grcnn_jax.cli.recognize import run

__doc__ = _command.__doc__           # what --help prints

if __name__ == "__main__":
    run()
