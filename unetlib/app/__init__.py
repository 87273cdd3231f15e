"""What people run: ``cli`` (``python -m unetlib``), ``notebooks`` (papermill batch runs),
``demo`` (``make demo``) and ``organ_benchmark`` (the hard multi-organ benchmark).

The top layer: it may import from every other, and nothing imports from it.
"""
