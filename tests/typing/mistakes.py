"""Mistakes the type checkers must catch. Each line carries the error code it must raise:
under `--strict` (warn_unused_ignores) an ignore that is not needed fails the check, so an
argument the API wrongly accepted would show up here."""

from __future__ import annotations

import amiwire
from amiwire.testing import Simulator


def mistakes(ami: amiwire.BlockingClient, message: amiwire.Message) -> int:
    amiwire.connect_blocking("tcp://h", tiemout=5)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    Simulator(comand_style="legacy")  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    ami.ping(timout=1)  # type: ignore[call-arg]  # pyright: ignore[reportCallIssue]
    ami.action("Ping", timeout="soon")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    ami.action_list("CoreShowChannels", list_complete=3)  # type: ignore[call-overload]  # pyright: ignore[reportCallIssue, reportArgumentType]
    ami.originate("Local/100@test", priority="one")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    ami.events("Hangup", maxsize="big")  # type: ignore[arg-type]  # pyright: ignore[reportArgumentType]
    count: int = message["Channel"]  # type: ignore[assignment]  # pyright: ignore[reportAssignmentType]
    message["Channel"] = "x"  # type: ignore[index]  # pyright: ignore[reportIndexIssue]
    return count
