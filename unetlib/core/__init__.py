"""Foundations every other layer stands on, knowing nothing of images or networks.

``config`` (every default, as dataclasses), ``errors`` (the error types and their
one-line form), ``io`` (atomic writes, CSV/JSON/image files), ``locking`` (one writer per
output folder), ``resources`` (memory and disk checks), ``runtime`` and ``_tensorflow``
(TensorFlow loaded once, quietly, with the right CPU kernels).
"""
