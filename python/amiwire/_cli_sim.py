"""``python -m amiwire simulate``: run the embedded AMI simulator in the foreground."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from typing import Any

from .testing import Simulator

# Seconds Ctrl-C or SIGTERM waits for the simulator to stop before the process just exits.
STOP_GRACE = 0.5

FAULTS = (
    "close_during_login",
    "close_mid_message",
    "close_mid_list",
    "stall_after_login",
    "garbage_after_login",
    "ignore_pings",
    "drip",
)


def _port(text: str) -> int:
    """An argparse type: a port to listen on (0 = any free one)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, not {text!r}")
    return int(text)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Adds the ``simulate`` sub-command to an ``argparse`` sub-parser set."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="run an AMI server that behaves like Asterisk 22",
        description="Run amiwire's embedded AMI simulator until interrupted.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=5038, help="port (default 5038; 0 = any free)")
    p.add_argument("--http", action="store_true", help="also serve AMI over HTTP (/rawman, /mxml, /manager) on a free port")
    p.add_argument("--tls", action="store_true", help="serve TLS with a generated certificate")
    p.add_argument("--tls-cert", help="PEM certificate file (with --tls-key)")
    p.add_argument("--tls-key", help="PEM private key file (with --tls-cert)")
    p.add_argument(
        "--legacy-command",
        action="store_true",
        help="answer Command like Asterisk 13 (Response: Follows ... --END COMMAND--)",
    )
    p.add_argument("--fault", action="append", choices=FAULTS, default=[], help="inject a fault")
    p.add_argument("--time-scale", type=float, default=1.0, help="multiply dialplan waits")
    p.add_argument(
        "--write-timeout",
        type=float,
        help="disconnect a client that stops reading for this many seconds (Asterisk: 0.1)",
    )
    p.add_argument("--firehose-file", help="stream this raw capture after each login")
    p.add_argument("--firehose-count", type=int, help="stream this many generated events")
    p.add_argument("--firehose-repeats", type=int, default=1)
    p.add_argument("--replay", help="serve a recorded JSONL transcript instead")
    p.add_argument("--dialplan", help="extensions.conf file to model (default: context test)")
    p.set_defaults(func=run)
    return p


def _read(path: str | None) -> str | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return f.read()


def run(args: argparse.Namespace) -> int:
    """Starts the simulator, prints where it listens and its users, serves until Ctrl-C."""
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "command_style": "legacy" if args.legacy_command else "output",
        "faults": list(args.fault),
        "time_scale": args.time_scale,
        "firehose_repeats": args.firehose_repeats,
        "write_timeout": args.write_timeout,
    }
    if args.http:
        options["http"] = True
    if args.tls_cert or args.tls_key:
        options["tls_cert"] = _read(args.tls_cert)
        options["tls_key"] = _read(args.tls_key)
    elif args.tls:
        options["tls"] = True
    if args.firehose_file:
        options["firehose_file"] = args.firehose_file
    if args.firehose_count is not None:
        options["firehose_count"] = args.firehose_count
    if args.replay:
        options["replay"] = args.replay
    if args.dialplan:
        options["dialplan"] = _read(args.dialplan)

    stop = threading.Event()
    # Installed before the address is printed: whoever reads it may signal at once.
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    sim = Simulator(**options).start()
    try:
        _announce(sim, args)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        # A session streaming to a client that stopped reading can hold the stop (and the
        # runtime's shutdown at exit) for seconds: give it a moment, then end the process.
        closing = threading.Thread(target=sim.close, name="amiwire-sim-close", daemon=True)
        closing.start()
        closing.join(STOP_GRACE)
    print("AMI simulator stopped", file=sys.stderr, flush=True)
    if closing.is_alive():
        sys.stdout.flush()
        os._exit(0)
    return 0


def _announce(sim: Simulator, args: argparse.Namespace) -> None:
    """Where the simulator listens, its users, and the certificate to trust."""
    scheme = "tls" if sim.tls_cert_pem is not None else "tcp"
    print(f"AMI simulator listening on {scheme}://{sim.host}:{sim.port}", flush=True)
    if args.http:
        print(f"AMI over HTTP on http://{sim.host}:{sim.http_port}/rawman (also /mxml, /manager)", flush=True)
    for name, secret in sim.users.items():
        print(f"  user {name!r} secret {secret!r}", flush=True)
    if sim.tls_cert_pem is not None and not args.tls_cert:
        print("server certificate (trust it on the client):", flush=True)
        print(sim.tls_cert_pem, end="", flush=True)
