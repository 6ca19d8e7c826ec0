"""``python -m symbolic``: see symbolic/cli.py."""

from symbolic.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
