"""unetlib: U-Net organ segmentation for multi-laser SWIR mouse imaging.

The notebooks and the CLI (``python -m unetlib``) are thin layers over these modules,
one per stage of the data flow: ``stack`` (reshape an acquisition), ``frames`` (choose
frames to annotate), ``organs`` (the organ table), ``masks`` (mask encodings),
``dataset`` (pair frames with masks, the check report), ``augment`` and ``pipeline``
(training input), ``model``, ``train``, ``run`` (the run folder), ``predict``,
``evaluate``, ``metrics``; plus ``io``, ``locking`` (one writer per output folder),
``resources`` (memory and disk checks), ``plots``, ``widgets``, ``notebooks`` (papermill
batch runs), ``synthetic`` and ``demo`` (the demo acquisition and ``make demo``) and
``config`` (every default).
"""

from unetlib.errors import InputError, OutputError, ParameterError, UnetlibError, UnetlibWarning

__version__ = "0.1.0"

__all__ = ["InputError", "OutputError", "ParameterError", "UnetlibError", "UnetlibWarning",
           "__version__"]
