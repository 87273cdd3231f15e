"""Entry point for ``python -m unetlib``."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) is not for CLI users; errors
# still show. Set before anything imports TensorFlow; an explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from unetlib.cli import main  # noqa: E402

raise SystemExit(main())
