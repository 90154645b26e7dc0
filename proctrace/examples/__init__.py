"""Runnable examples: ``python -m proctrace.examples.create --method spawn``."""
