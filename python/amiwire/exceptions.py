"""The amiwire exception hierarchy.

Defined in Python (not in the extension) so that the classes can carry attributes such as
``.response`` and inherit from built-ins (``ConnectionError``, ``TimeoutError``) under abi3.
Every class derives from :class:`AMIError`, so ``except amiwire.AMIError`` catches them all,
and none derives from ``BaseException`` alone. :class:`InternalError` reports a bug in amiwire
(the connection's driver task ending abnormally closes the client with it); a Rust panic in a
call, which no known input causes, raises PyO3's ``PanicException`` at that call instead of
crashing the interpreter.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._core import Message

__all__ = [
    "AMIError",
    "ProtocolError",
    "RemoteProtocolError",
    "LocalProtocolError",
    "ConnectionLost",
    "ClientClosed",
    "AuthenticationError",
    "ActionError",
    "ActionTimeout",
    "ListTooLong",
    "InternalError",
]


class AMIError(Exception):
    """Base class of every amiwire error."""


class ProtocolError(AMIError):
    """Bytes or an action that break the AMI protocol."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something unparseable or beyond the limits.

    ``offset`` is the stream offset of the byte where the limit was crossed,
    ``message_offset`` where the offending message started, ``kind`` a short name
    (``"line too long"``, ``"too many lines in one message"``, ``"message too large"``).
    """

    def __init__(self, message: str, *, kind: str = "", offset: int = 0, message_offset: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.offset = offset
        self.message_offset = message_offset


class LocalProtocolError(ProtocolError, ValueError):
    """An action amiwire refuses to send: CR, LF or NUL in a key or value (header injection),
    an empty key or one with ':', a line over 1022 bytes, more than 128 lines, an ActionID
    over 64 characters or already in flight."""


class ConnectionLost(AMIError, ConnectionError):
    """The connection broke (socket error, EOF, missed keepalive) while this was pending."""


class ClientClosed(AMIError):
    """The client was closed (``close()``, interpreter exit, or used after ``fork()``)."""


class AuthenticationError(AMIError):
    """Login refused: wrong user or secret, MD5 key rejected, digest 401 after a retry.
    Not retried: Asterisk delays each failure by a second."""


class ActionError(AMIError):
    """The server answered ``Response: Error``.

    ``response`` is the response :class:`~amiwire.Message`; ``events`` what arrived with it
    (list items, or the ``OriginateResponse`` of a failed tracked originate);
    ``action_id`` the ActionID; ``output`` the CLI text when :meth:`~amiwire.Client.command`
    failed (``"No such command ..."``), else None.
    """

    def __init__(
        self,
        message: str,
        *,
        response: Message,
        events: Iterable[Message] = (),
        action_id: str | None = None,
        output: str | None = None,
    ) -> None:
        super().__init__(message)
        self.response: Message = response
        self.events: list[Message] = list(events)
        self.action_id = action_id
        self.output = output


class ActionTimeout(AMIError, TimeoutError):
    """No complete answer before the action's deadline. The pending entry is gone;
    ``partial`` holds what had arrived (the response, then a list's first items), or ``None``."""

    def __init__(self, message: str, *, action_id: str | None = None, partial: list[Message] | None = None) -> None:
        super().__init__(message)
        self.action_id = action_id
        self.partial = partial


class ListTooLong(AMIError):
    """A list action sent more than ``limit`` items (``connect(list_limit=...)``, 250,000 by
    default): a runaway list must not take memory without end. ``partial`` holds the response
    and the first ``limit`` items; the rest of the list is read and discarded, so none of it
    surfaces as events and the connection carries on. Items passing ``max_list_bytes`` raise it
    too: ``limit`` is then in bytes and ``partial`` is None."""

    def __init__(
        self, message: str, *, action_id: str | None = None, limit: int = 0, partial: list[Message] | None = None
    ) -> None:
        super().__init__(message)
        self.action_id = action_id
        self.limit = limit
        self.partial = partial


class InternalError(AMIError):
    """A bug in amiwire (its driver task ended abnormally). Please report it."""
