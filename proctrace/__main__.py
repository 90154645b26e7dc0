"""The ``proctrace`` command: ``run``, ``send`` and ``view``."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["run"]:
        from ._api.run import main as run

        run(args[1:])
        return
    from ._cli.main import main as cli

    cli(args)


if __name__ == "__main__":
    main()
