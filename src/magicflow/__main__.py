"""``python -m magicflow`` is the ``magic-flow`` command."""

from magicflow.cli import main

if __name__ == "__main__":
    main()
