"""Training side of NeuroScan: data, leakage-aware split, fine-tuning, baseline, evaluation."""
