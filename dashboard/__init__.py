"""NeuroScan clinician dashboard: NiceGUI pages over TorchServe, a SQLite case store and PDF reports."""
