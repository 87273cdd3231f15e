"""Training and its result, the run folder.

``run`` (the run folder: its files, model and threshold), ``callbacks`` (what Keras calls
during training), ``train``, ``finetune``, ``crossval`` (k-fold training), ``export`` and
``package`` (bioimage.io model packages). Imports only from the layers below:
``core``, ``data``, ``nn``, ``viz``.
"""
