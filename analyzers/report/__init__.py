"""Analysis reports: a report model gathered from summaries and results (model.py), rendered as HTML (html.py),
Markdown, JSON and CSV (formats.py); PDF is the same HTML printed by the window's browser engine (app/)."""
