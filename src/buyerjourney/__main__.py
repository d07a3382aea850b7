"""Run the ``buyerjourney`` command as ``python -m buyerjourney``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
