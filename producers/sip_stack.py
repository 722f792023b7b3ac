"""sippy's transaction layer as the recorder runs it: one UDP worker, and what it cannot parse
counted and logged within a budget instead of printed with a traceback to stdout."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import sippy.SipTransactionManager as sippy_tm
from sippy.SipTransactionManager import SipTransactionManager
from sippy.Udp_server import Udp_server, Udp_server_opts

from callrec.producers.sip_limits import LogBudget

log = logging.getLogger("callrec.producers.sip_uas")
_STATUS_LINE = re.compile(r"SIP/2\.0 [1-6][0-9][0-9](?:\s|$)")


class _OneWorkerUdp(Udp_server_opts):  # type: ignore[misc]
    """sippy's default is a pool of UDP threads on SO_REUSEPORT sockets, which reorders messages
    (a 487 overtaking the 200 to its CANCEL) and lets a second process share our port unnoticed.
    A trunk endpoint's SIP rate is tiny: one thread each way keeps order and owns the port."""

    nworkers = 1


class TransactionManager(SipTransactionManager):  # type: ignore[misc]
    """sippy's, with what it cannot parse handed to ``on_unparsable`` instead of stdout."""

    model_udp_server = (Udp_server, _OneWorkerUdp)
    on_unparsable: Callable[[str], None] = staticmethod(lambda what: None)

    def handleIncoming(self, data_in: Any, ra: Any, server: Any, rtime: Any) -> None:
        """sippy would raise on bytes that are not UTF-8 and print a bad status line to stdout."""
        try:
            text = data_in.decode() if isinstance(data_in, bytes) else data_in
        except UnicodeDecodeError:
            self.on_unparsable(f"not UTF-8, from {ra}")
            return
        if text.startswith("SIP/2.0 ") and not _STATUS_LINE.match(text):
            self.on_unparsable(f"bad status line, from {ra}")
            return
        super().handleIncoming(data_in, ra, server, rtime)


class ParseFailures:
    """Counts every unparsable message in the UAS's ``stats`` and logs within the budget, so a
    flood of junk cannot fill the disk the spool lives on (sippy's stdout is a log nobody
    rotates)."""

    def __init__(self, stats: Counter[str], budget: LogBudget) -> None:
        self.stats = stats
        self.budget = budget

    def install(self, tm: TransactionManager) -> None:
        """Take over sippy's parse-failure reports; its transaction layer calls its
        ``dump_exception`` only for those."""
        tm.on_unparsable = self
        sippy_tm.dump_exception = self.sippy_hook

    def __call__(self, what: str) -> None:
        self.stats["unparsable"] += 1
        held_back = self.budget.take(time.monotonic())
        if held_back is not None:
            more = f" ({held_back} more not logged)" if held_back else ""
            log.info("unparsable SIP: %s%s", what, more)

    def sippy_hook(self, msg: str, f: Any = None, extra: Any = None) -> None:
        """Stands in for sippy's ``dump_exception`` (same signature): one line, no traceback."""
        self(f"{msg}: {sys.exc_info()[1]!r}"[:300])
