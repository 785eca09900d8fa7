"""The demo page (``grcnn-demo``): read word images in a browser.

``reading``: what the page shows for one image (numpy and Pillow); ``page``: the Gradio page
(the ``[demo]`` extra). The command: ``grcnn_jax.cli.demo``.
"""
