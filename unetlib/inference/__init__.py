"""Using a run on new frames: ``predict`` (full-resolution segmentation of frames and
stacks), ``evaluate`` (scores against truth masks), ``activations`` (feature maps),
``uncertainty`` (where the model is unsure, to pick frames to annotate).

Imports only from ``core``, ``data``, ``nn``, ``viz`` and ``runs``.
"""
