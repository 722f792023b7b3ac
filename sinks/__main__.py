"""`python -m callrec.sinks`: the mixer worker, configured by CALLREC_* variables."""

from callrec.sinks.cli import run_worker

run_worker()
