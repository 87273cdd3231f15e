"""Entry point for ``python -m unetlib``."""

from unetlib.cli import main

raise SystemExit(main())
