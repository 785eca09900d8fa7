"""``python -m grcnn_jax.recognize``: the command in ``grcnn_jax.inference.recognize``."""

from grcnn_jax.inference.recognize import run

if __name__ == "__main__":
    run()
