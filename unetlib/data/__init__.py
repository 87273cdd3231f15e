"""The user's data: acquisitions, frames, masks and organ tables.

``stack`` (read and split interleaved multi-laser TIFF stacks), ``timing`` (when each
frame was taken), ``frames`` (pick frames to annotate), ``organs`` (the organ table),
``masks`` (mask encodings), ``dataset`` (a data folder: frames paired with masks, the
check report), ``normalize`` (intensity scaling), ``synthetic`` and ``phantom`` (the
demo and the hard benchmark acquisitions). Imports only from ``core``.
"""
