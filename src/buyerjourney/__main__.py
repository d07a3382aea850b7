"""Run the ``buyerjourney`` command as ``python -m buyerjourney``."""

from buyerjourney.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
