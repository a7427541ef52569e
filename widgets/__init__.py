"""Qt views: plain data in (set_*), user intent out (Signals). Never run models."""
