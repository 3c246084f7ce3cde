"""``python -m pgqrs``: the same as the ``pgqrs`` command."""

from pgqrs._cli import main

if __name__ == "__main__":
    main()
