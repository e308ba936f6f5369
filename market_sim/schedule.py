"""The discrete-event schedule of a market period: phases, gates, mailboxes with latency.

Time is simulated by simpy in seconds since the start of the run. A message takes the link's
latency plus its serialised size over the bandwidth; one that would arrive after its gate is
rejected and logged as late. The message log is written here and nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import simpy

from market_sim.config import CommunicationConfig, GatesConfig
from market_sim.messages import Kind, Message

log = logging.getLogger(__name__)

#: Columns of the ``messages`` results table.
MESSAGE_COLUMNS = (
    "period",
    "time_s",
    "arrival_s",
    "sender",
    "receiver",
    "kind",
    "step",
    "items",
    "bytes",
    "late",
)


@dataclass(frozen=True)
class PeriodClock:
    """Absolute simulated times (s) of one period's phases."""

    period: int
    start_s: float
    length_s: float
    gates: GatesConfig

    @property
    def bids_gate(self) -> float:
        return self.start_s + self.gates.bids_s

    @property
    def validation_gate(self) -> float:
        return self.start_s + self.gates.validation_s

    @property
    def dispatch_gate(self) -> float:
        return self.start_s + self.gates.dispatch_s

    @property
    def delivery(self) -> float:
        """Delivery happens over the period; its power flow is evaluated at the period's end."""
        return self.start_s + self.length_s


class Post:
    """Mailboxes of all agents and the transport between them."""

    def __init__(
        self,
        env: simpy.Environment,
        comm: CommunicationConfig,
        on_late: Callable[[Message], None] | None = None,
    ) -> None:
        self.env = env
        self.comm = comm
        self.on_late = on_late
        self.mailboxes: dict[str, list[Message]] = {}
        self.log: list[tuple] = []

    def delay_s(self, message: Message, size_bytes: int) -> float:
        """Transport time: zero inside one agent, else latency plus size over bandwidth."""
        if message.sender == message.receiver:
            return 0.0
        return self.comm.latency_s + size_bytes * 8 / (self.comm.bandwidth_mbit_s * 1e6)

    def send(self, messages: Iterable[Message], gate_s: float | None = None) -> simpy.Event:
        """Send messages; the event fires when every message on time has arrived."""
        arrivals = []
        for m in messages:
            size = m.size_bytes
            delay = self.delay_s(m, size)
            arrival = self.env.now + delay
            late = gate_s is not None and arrival > gate_s + 1e-9
            self.log.append(
                (
                    m.period,
                    self.env.now,
                    arrival,
                    m.sender,
                    m.receiver,
                    m.kind.value,
                    m.step,
                    m.items,
                    size,
                    late,
                )
            )
            if late:
                log.debug(
                    "late %s %s->%s arrives %.1f after gate %.1f",
                    m.kind,
                    m.sender,
                    m.receiver,
                    arrival,
                    gate_s,
                )
                if self.on_late:
                    self.on_late(m)
                continue
            arrivals.append(self.env.process(self._deliver(m, delay)))
        return simpy.AllOf(self.env, arrivals)

    def _deliver(self, message: Message, delay: float):
        yield self.env.timeout(delay)
        self.mailboxes.setdefault(message.receiver, []).append(message)

    def take(self, receiver: str, kind: Kind) -> list[Message]:
        """Remove and return the messages of a kind waiting in a receiver's mailbox."""
        box = self.mailboxes.get(receiver, [])
        taken = [m for m in box if m.kind == kind]
        self.mailboxes[receiver] = [m for m in box if m.kind != kind]
        return taken

    def clear(self) -> None:
        """Drop what nobody read (a step's record of its own validation): at a period's end,
        so that nothing of one period reaches the next and memory does not grow."""
        self.mailboxes.clear()

    def take_log(self) -> list[tuple]:
        """The log rows so far, and a new empty log: a long run writes its messages to disk
        chunk by chunk instead of holding a year of them."""
        rows, self.log = self.log, []
        return rows

    def wait_until(self, time_s: float) -> simpy.Event:
        """An event at an absolute time (a gate closure)."""
        return self.env.timeout(max(0.0, time_s - self.env.now))
