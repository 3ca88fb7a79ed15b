"""The PACS side of NeuroScan: Orthanc's launcher and the worker that analyses the studies sent to it.

Its own process (``python -m pacs``): it follows Orthanc's change feed, analyses each MR series
through TorchServe, and writes a DICOM SR and an encapsulated PDF back into the study. It imports
the core (``neuroscan``), never ``dashboard``, ``handler`` or ``training``.
"""
