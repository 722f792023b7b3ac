"""`python -m callrec.emulator run|serve ...`: the emulator without the rest of the CLI."""

from callrec.emulator.cli import main

if __name__ == "__main__":
    main()
