"""Measurements over whole acquisitions: ``quantify`` (each organ's signal in each laser
over time), ``measure`` (per-cycle organ statistics and QC), ``kinetics`` (curve
parameters), ``cluster`` (many stacks at once on Dask); and over a study: ``sheet`` (which
stack is which mouse, group and injection), ``nca`` (one value per mouse), ``compare``
(group comparisons), ``analysis`` (the study's tables), ``report`` (report.html),
``workflow`` (the ``study`` command: quantify, then analyse).

Imports from every layer below; only ``app`` imports from here.
"""

_FORMER_STUDY_MODULE = ("StackOutcome", "StudyResult", "quantify_study")


def __getattr__(name: str):
    """``from unetlib.study import quantify_study`` as in the flat layout (one release)."""
    if name in _FORMER_STUDY_MODULE:
        # The cluster module loads Dask, which plain use of unetlib.study.quantify does
        # not need: a lazy import, on first use of a name from it.
        from unetlib.study import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module 'unetlib.study' has no attribute {name!r}")
