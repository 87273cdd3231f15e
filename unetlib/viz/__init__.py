"""Figures and notebook widgets: ``plots`` (matplotlib figures of frames, masks, training
histories and curves) and ``widgets`` (ipywidgets browsers).

Imports only from ``core``, ``data`` and ``nn``.
"""
