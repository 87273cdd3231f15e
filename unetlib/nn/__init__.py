"""The network and what feeds it: ``model`` (the U-Net), ``augment`` and ``pipeline``
(tf.data training input), ``metrics`` (Dice, IoU, per-organ scores and losses).

Imports only from ``core`` and ``data``.
"""
