"""amiwire: the Asterisk Manager Interface with a Rust core."""

from __future__ import annotations

import atexit
from collections.abc import Mapping

from . import _core, events
from ._core import (
    LiveBridge,
    LiveCall,
    LiveChange,
    LiveChannel,
    LiveMap,
    LiveSnapshot,
    Message,
    Parser,
    __version__,
    encode_action,
    parse,
)
from .blocking import BlockingClient, BlockingEventStream, connect_blocking
from .client import Client, OriginateFailed, connect, parse_url
from .live import Call, Live
from .streams import EventStream
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
    "Call",
    "Client",
    "EventStream",
    "Live",
    "LiveBridge",
    "LiveCall",
    "LiveChange",
    "LiveChannel",
    "LiveMap",
    "LiveSnapshot",
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
