"""``python -m grcnn_jax.main``: the command in ``grcnn_jax.cli.train``."""

from grcnn_jax.cli.train import run

if __name__ == "__main__":
    run()
