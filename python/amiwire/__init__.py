"""amiwire: the Asterisk Manager Interface with a Rust core."""

from __future__ import annotations

import atexit

from . import _core
from ._core import Message, __version__
from .exceptions import (
    ActionError,
    ActionTimeout,
    AMIError,
    AuthenticationError,
    ClientClosed,
    ConnectionLost,
    InternalError,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
)

atexit.register(_core._shutdown)

__all__ = [
    "AMIError",
    "ActionError",
    "ActionTimeout",
    "AuthenticationError",
    "ClientClosed",
    "ConnectionLost",
    "InternalError",
    "LocalProtocolError",
    "Message",
    "ProtocolError",
    "RemoteProtocolError",
    "__version__",
]
