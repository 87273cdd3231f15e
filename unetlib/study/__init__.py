"""Measurements over whole acquisitions: ``quantify`` (each organ's signal in each laser
over time), ``measure`` (per-cycle organ statistics and QC), ``kinetics`` (curve
parameters), ``cluster`` (many stacks at once on Dask).

Imports from every layer below; only ``app`` imports from here.
"""
