"""``python -m proctrace._agent``: the agent process (see ``main``)."""

import sys

from .main import main

main(sys.argv[1:])
