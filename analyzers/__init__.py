"""Headless core of LayerScope: summaries, loaders and numbers. Never imports Qt."""
