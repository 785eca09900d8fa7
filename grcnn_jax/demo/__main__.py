from grcnn_jax.cli.demo import run

run()
