"""Explanation: what the user asks of a live model (requests), and the jobs that answer (run, attribute).

Plain data and framework-free code: the window builds requests, the model-runner process answers
them, the CLI does both in one process.
"""
