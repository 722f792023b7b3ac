"""`python -m callrec.producers`: run a recorder configured by CALLREC_RECORDER_* variables."""

import sys

from callrec.producers.main import run_recorder
from callrec.producers.settings import RecorderSettings

if __name__ == "__main__":
    sys.exit(run_recorder(RecorderSettings()))
