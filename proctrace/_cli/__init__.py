"""The command line: argument parsing and the ``send`` and ``view`` commands."""
