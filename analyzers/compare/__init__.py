"""Comparing two models: their structures aligned layer by layer (structure.py), their weights' drift
(drift.py), their outputs and attribution maps on one input (outputs.py), and the
`layerscope.compare/1` document (document.py)."""
