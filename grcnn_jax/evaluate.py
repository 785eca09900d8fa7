"""``python -m grcnn_jax.evaluate``: the command in ``grcnn_jax.cli.evaluate``."""

from grcnn_jax.cli.evaluate import run

if __name__ == "__main__":
    run()
