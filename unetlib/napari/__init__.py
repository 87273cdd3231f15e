"""The napari plugin: annotate by correcting the model, train, and quantify in napari.

Installed with the ``napari`` extra (``pip install -e .[napari]``, or ``make napari``),
declared to napari by the npe2 manifest ``napari.yaml`` (the ``napari.manifest`` entry
point). :mod:`~unetlib.napari.layers` turns the project's files into napari layer data
without Qt; :mod:`~unetlib.napari.reader` is napari's reader; :mod:`~unetlib.napari.widgets`
holds the dock widgets. Nothing here is imported by the rest of ``unetlib``.
"""
