"""``python -m grcnn_jax.export``: the command in ``grcnn_jax.inference.export``."""

from grcnn_jax.inference.export import run

if __name__ == "__main__":
    run()
