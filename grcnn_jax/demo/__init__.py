"""The demo page (``grcnn-demo``, ``python -m grcnn_jax.demo``): read word images in a browser.

``reading``: what the page shows for one image (numpy and Pillow); ``page``: the Gradio page
and its command (the ``[demo]`` extra).
"""
