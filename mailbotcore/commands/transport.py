"""Which transport sends a message, SMTP or Microsoft Graph, for ``send`` and ``outbox``.

``OUTLOOK_SEND_VIA``: ``smtp``, ``graph`` or ``auto`` (the default). ``auto`` sends over SMTP
until the server says SMTP AUTH is switched off (535 5.7.139, 550 5.7.30, i.e.
:class:`SmtpAuthDisabled`; nothing was sent then), sends the same bytes through Graph instead,
and remembers that in the state folder, so later runs and ``outbox`` go straight to Graph.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType

from mailbotcore.config import Settings
from mailbotcore.errors import SmtpAuthDisabled, UsageError
from mailbotcore.net import graph as graph_client
from mailbotcore.net import smtp as smtp_client
from mailbotcore.store.transport_state import TransportState
from mailbotcore.wire.sasl import TokenProvider

log = logging.getLogger("mailbot.transport")
GraphProviders = Callable[[list[str]], TokenProvider]


@dataclass(frozen=True)
class Choice:
    via: str  # smtp | graph
    reason: str


def state(settings: Settings) -> TransportState:
    return TransportState(settings.state_dir, settings.require_username())


def choose(settings: Settings) -> Choice:
    """The transport the next message will use, and why (for ``send --dry-run`` and ``doctor``)."""
    if settings.send_via == "smtp":
        return Choice("smtp", "OUTLOOK_SEND_VIA=smtp")
    if settings.send_via == "graph":
        return Choice("graph", "OUTLOOK_SEND_VIA=graph")
    remembered = state(settings).load()
    if remembered is not None and remembered.via == "graph":
        return Choice(
            "graph",
            f"OUTLOOK_SEND_VIA=auto, and SMTP AUTH was refused on {remembered.since} ({remembered.reason})",
        )
    return Choice("smtp", "OUTLOOK_SEND_VIA=auto: SMTP until the server says SMTP AUTH is disabled")


class Transport:
    """Sends messages one by one over the chosen transport; connects lazily, closes on exit."""

    def __init__(self, settings: Settings, provider: TokenProvider, graph_providers: GraphProviders | None) -> None:
        self.settings = settings
        self.provider = provider
        self.graph_providers = graph_providers
        self.choice = choose(settings)
        self.stack = ExitStack()
        self.smtp: smtp_client.SmtpSession | None = None
        self.graph: graph_client.GraphSession | None = None
        self.connections = 0

    @property
    def via(self) -> str:
        return self.choice.via

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self.stack.close()
        self.stack = ExitStack()
        self.smtp = None
        self.graph = None

    def reconnect(self) -> None:
        """Drop the connection (the server closed an idle one); the next send connects again."""
        self.close()

    def send(self, sender: str, recipients: list[str], data: bytes) -> None:
        if self.choice.via == "graph":
            self._graph().send(sender, recipients, data)
            return
        try:
            self._smtp().send(sender, recipients, data)
        except SmtpAuthDisabled as exc:
            if self.settings.send_via != "auto" or self.graph_providers is None:
                raise
            self._fall_back(exc)
            self._graph().send(sender, recipients, data)

    def _fall_back(self, exc: SmtpAuthDisabled) -> None:
        reason = exc.message
        self.close()
        self.choice = Choice("graph", f"OUTLOOK_SEND_VIA=auto, and {reason}")
        print(
            f"note: {reason}: SMTP AUTH is disabled; sending through Microsoft Graph, now and from now on "
            f'(re-test SMTP with "{self.settings.command("doctor --retest-smtp")}")',
            file=sys.stderr,
            flush=True,
        )
        try:
            state(self.settings).remember("graph", reason)
        except OSError as error:
            log.warning("cannot remember the transport in %s: %s", self.settings.state_dir, error)

    def _smtp(self) -> smtp_client.SmtpSession:
        if self.smtp is None:
            self.smtp = self.stack.enter_context(smtp_client.connect(self.settings, self.provider))
            self.connections += 1
        return self.smtp

    def _graph(self) -> graph_client.GraphSession:
        if self.graph_providers is None:
            raise UsageError("sending through Microsoft Graph needs a sign-in")
        if self.graph is None:
            self.graph = self.stack.enter_context(graph_client.connect(self.settings, self.graph_providers))
            self.connections += 1
        return self.graph
