"""amiwire: the Asterisk Manager Interface with a Rust core."""

from __future__ import annotations

import atexit
from collections.abc import Mapping

from . import _core, events
from ._core import Message, Parser, __version__, encode_action, parse
from .blocking import BlockingClient, BlockingEventStream, connect_blocking
from .client import Client, EventStream, OriginateFailed, connect, parse_url
from .exceptions import (
    ActionError,
    ActionTimeout,
    AMIError,
    AuthenticationError,
    ClientClosed,
    ConnectionLost,
    InternalError,
    ListTooLong,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)

# Message implements the Mapping protocol in Rust; registering it makes isinstance() agree.
Mapping.register(Message)

atexit.register(_core._shutdown)

__all__ = [
    "BlockingClient",
    "BlockingEventStream",
    "Client",
    "EventStream",
    "OriginateFailed",
    "connect",
    "connect_blocking",
    "parse_url",
    "AMIError",
    "ActionError",
    "ActionTimeout",
    "ListTooLong",
    "AuthenticationError",
    "ClientClosed",
    "ConnectionLost",
    "InternalError",
    "LocalProtocolError",
    "Message",
    "Parser",
    "ProtocolError",
    "RemoteProtocolError",
    "__version__",
    "encode_action",
    "events",
    "parse",
]
