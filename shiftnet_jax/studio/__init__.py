"""Inpainting studio in the browser (``python serve.py --ckpt DIR``).

``engine``: models in memory, uploads decoded, one forward at a time (the only
module that calls the decoding/inference library). ``server``: the Starlette
app, the HTTP API and the page in ``static/``.
"""
