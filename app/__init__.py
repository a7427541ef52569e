"""The shell: state, workers, main window, actions, CLI. Wires widgets to analyzers."""
