"""``python -m statefleet``: the same CLI as the ``statefleet`` console script."""

from statefleet.cli import main

if __name__ == "__main__":
    main()
