"""``python -m callrec.streams``: run a call-state worker configured from CALLREC_* variables."""

from callrec.streams.main import main

main()
