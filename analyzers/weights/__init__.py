"""Weight values: reading a checkpoint's tensors one at a time (source.py) and what is computed from them
(statistics, quantisation and pruning previews, drift between two checkpoints)."""
