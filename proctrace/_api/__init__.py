"""The public surface: the decorator, ``configure()``, ``instrument()`` and ``proctrace run``."""
