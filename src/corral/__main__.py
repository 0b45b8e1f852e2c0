"""``python -m corral``: the same entry point as the ``corral`` command."""

from corral.cli import main

if __name__ == "__main__":
    main()
