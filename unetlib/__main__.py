"""Entry point for ``python -m unetlib``."""

import os
import sys

# TensorFlow's C++ start-up chatter (oneDNN, CUDA probing) is not for CLI users; errors
# still show. Set before anything imports TensorFlow; an explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# A path that is not UTF-8 (an old file server's Latin-1 name) reaches us as surrogates;
# print it as the bytes it is rather than fail on it.
for _stream in (sys.stdout, sys.stderr):
    if hasattr(_stream, "reconfigure"):
        _stream.reconfigure(errors="surrogateescape")

from unetlib.app.cli import main  # noqa: E402

raise SystemExit(main())
