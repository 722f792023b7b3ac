"""The emulator's Python API: ping the destinations, place calls through the route group.

``async with Cucm(...)`` pings every destination until each has a state, and keeps pinging it on
CUCM's schedule until the block ends; `place_calls` routes each INVITE to an in-service member.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Literal

from callrec.emulator import routing
from callrec.emulator.audio import write_loop
from callrec.emulator.availability import DestinationState, Outcome, PingTiming, State, on_ping
from callrec.emulator.calls import LegPlan, place_call
from callrec.emulator.errors import BadDestination, NotInService
from callrec.emulator.model import CallReport, Destination, ServiceChange
from callrec.emulator.options import UdpPinger, options_request, transmit_tcp
from callrec.emulator.ports import PortBook


class Cucm:
    """One CUCM node's view of a route group of recorders."""

    def __init__(
        self,
        destinations: Sequence[Destination],
        distribution: routing.Distribution = routing.Distribution.CIRCULAR,
        timing: PingTiming | None = None,
        local_ip: str = "127.0.0.1",
        transport: Literal["udp", "tcp"] = "udp",
        cluster: str = "CUCM-EMU",
        invite_timeout_s: float = 5.0,
        on_change: Callable[[ServiceChange], None] | None = None,
    ) -> None:
        names = [d.name for d in destinations]
        if not names or len(set(names)) != len(names):
            raise BadDestination(f"need at least one destination, names unique: {names}")
        self.destinations = {d.name: d for d in destinations}
        self.timing = timing or PingTiming()
        self.local_ip, self.transport, self.cluster = local_ip, transport, cluster
        self.invite_timeout_s = invite_timeout_s
        self.service_history: list[ServiceChange] = []
        self._on_change = on_change
        self._group = routing.RouteGroup(tuple(names), distribution)
        self._states = {name: DestinationState() for name in names}
        self._changed = asyncio.Event()
        self._refci = int(time.time() * 1000) % 10**9 * 10
        self._tasks: list[asyncio.Task[None]] = []
        self._udp: dict[str, UdpPinger] = {}
        """One pinging socket per local address (per link)."""
        self._work_dir: tempfile.TemporaryDirectory[str] | None = None
        self._ports = PortBook()
        self._audio = Path()
        """The payload file every leg streams, written in the work directory on entry."""

    async def __aenter__(self) -> Cucm:
        self._work_dir = tempfile.TemporaryDirectory(prefix="callrec-cucm-")
        self._audio = write_loop(Path(self._work_dir.name))
        if self.transport == "udp":
            for local_ip in {self._local_ip(d) for d in self.destinations.values()}:
                self._udp[local_ip] = await UdpPinger.open(local_ip)
        self._tasks = [asyncio.create_task(self._ping_loop(d)) for d in self.destinations.values()]
        first_round_s = (self.timing.retries + 1) * self.timing.retry_interval_s + 5
        try:
            await self._wait(lambda: State.UNKNOWN not in self.states.values(), first_round_s)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        while pending := [task for task in self._tasks if not task.done()]:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=1.0)  # cancelled again if one swallowed it
        crashed = [e for t in self._tasks if not t.cancelled() and (e := t.exception()) is not None]
        for pinger in self._udp.values():
            pinger.close()
        if self._work_dir is not None:
            self._work_dir.cleanup()
        if crashed:
            raise crashed[0]

    @property
    def states(self) -> dict[str, State]:
        return {name: s.state for name, s in self._states.items()}

    async def wait_in_service(self, name: str, within_s: float) -> ServiceChange:
        """Until ``name`` is in service; its latest change (when it came back)."""
        return await self._wait_state(name, State.IN_SERVICE, within_s)

    async def wait_out_of_service(self, name: str, within_s: float) -> ServiceChange:
        """Until ``name`` is out of service; its latest change says when that was detected."""
        return await self._wait_state(name, State.OUT_OF_SERVICE, within_s)

    async def place_calls(self, count: int, seconds: float) -> list[CallReport]:
        """``count`` recorded calls of ``seconds`` each, all offered at once."""
        assert self._work_dir is not None, "use Cucm inside `async with`"
        plans = []
        for _ in range(count):
            self._refci += 2  # the far end's refci is refci - 1
            plans.append(self._plan(seconds))
        return list(await asyncio.gather(*(place_call(plan, self._route) for plan in plans)))

    def _plan(self, seconds: float) -> LegPlan:
        """The near-end leg of the call of the current refci (the far end's follows from it)."""
        assert self._work_dir is not None, "use Cucm inside `async with`"
        return LegPlan(
            leg="near-end", cluster=self.cluster, refci=str(self._refci), seconds=seconds,
            local_ip=self.local_ip, transport=self.transport,
            invite_timeout_s=self.invite_timeout_s, work_dir=Path(self._work_dir.name),
            audio=self._audio, ports=self._ports,
        )

    async def place_held_call(
        self, seconds: float, hold_s: float,
        during_hold: Callable[[], Awaitable[None]] | None = None,
    ) -> list[CallReport]:
        """One call put on hold once, as CUCM records it: BYE on both legs at the hold, and a
        new INVITE pair with the same x-refci when the conversation resumes ``hold_s`` later
        (cucm-recording.md). ``during_hold`` runs meanwhile (e.g. stop a recorder). One report
        per segment."""
        assert self._work_dir is not None, "use Cucm inside `async with`"
        self._refci += 2
        plan = self._plan(seconds)
        first = await place_call(plan, self._route)
        resume_at = time.monotonic() + hold_s
        if during_hold is not None:
            await during_hold()
        await asyncio.sleep(max(0.0, resume_at - time.monotonic()))
        return [first, await place_call(plan, self._route)]

    def _route(self, tried: list[str]) -> Destination | None:
        in_service = [n for n, state in self.states.items() if state is State.IN_SERVICE]
        self._group, name = routing.select(self._group, in_service, tried)
        return None if name is None else self.destinations[name]

    async def _wait_state(self, name: str, state: State, within_s: float) -> ServiceChange:
        try:
            await self._wait(lambda: self.states[name] is state, within_s)
        except TimeoutError as e:
            raise NotInService(
                f"{name} is {self.states[name]}, not {state}, after {within_s:.1f} s"
            ) from e
        return [c for c in self.service_history if c.destination == name][-1]

    async def _wait(self, done: Callable[[], bool], within_s: float) -> None:
        async with asyncio.timeout(within_s):
            while not done():
                await self._changed.wait()

    def _local_ip(self, target: Destination) -> str:
        return target.local_ip or self.local_ip

    async def _ping_loop(self, target: Destination) -> None:
        call_id, request, retransmit = "", b"", False
        local_ip = self._local_ip(target)
        udp = self._udp.get(local_ip)
        while True:
            if udp is None:
                outcome: Outcome = await transmit_tcp(
                    target, local_ip, self.timing.retry_interval_s
                )
            else:
                if not retransmit:
                    udp.forget(call_id)
                    call_id, request = options_request(target, local_ip, udp.local_port, "udp")
                outcome = await udp.transmit(
                    target, call_id, request, self.timing.retry_interval_s
                )
            decision = on_ping(self._states[target.name], outcome, time.time(), self.timing)
            self._states[target.name] = decision.destination
            retransmit = decision.retransmit
            if decision.changed:
                self._record(target.name, decision.destination)
            await asyncio.sleep(max(0.0, decision.next_ping_at - time.time()))

    def _record(self, name: str, state: DestinationState) -> None:
        assert state.changed_at is not None
        change = ServiceChange(
            destination=name, state=state.state, at=datetime.fromtimestamp(state.changed_at, UTC)
        )
        self.service_history.append(change)
        if self._on_change is not None:
            self._on_change(change)
        self._changed.set()
        self._changed = asyncio.Event()
