from grcnn_jax.demo.page import run

run()
