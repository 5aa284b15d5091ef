"""Command line: ``python -m amiwire {events,action,command,simulate,demo} ...``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from . import ActionError, AMIError, Message, __version__, connect

DESCRIPTION = "The Asterisk Manager Interface from the shell: tail events, send actions, run CLI commands."

EPILOG = """\
URL forms:
  tcp://user:secret@host:5038          plain AMI
  tls://user:secret@host:5039          AMI over TLS (?ca_file=/path/ca.pem&server_name=pbx)
  http://user:secret@host:8088/rawman  AMI over HTTP (also /mxml, /manager; https://;
                                       Digest: /arawman, /amxml, /amanager)
Query options become connect() keywords: ?auth=md5&timeout=5&insecure=1.
Percent-encode / ? # @ : % in the username or secret (%2F %3F %23 %40 %3A %25), or leave the
secret out of the URL and set AMIWIRE_SECRET, which keeps it out of process listings and
shell history."""


def _pair(text: str) -> tuple[str, str]:
    """An argparse type: ``Key=Value``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        # Not echoed: it may be a secret typed as `Secret:pw`.
        raise argparse.ArgumentTypeError("expected NAME=VALUE, got an argument without a name and '='")
    return key, value


class _Parser(argparse.ArgumentParser):
    """Reports a usage mistake in one line, as the rest of the command line does."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _message_json(msg: Message) -> str:
    return json.dumps(msg.to_dict(), ensure_ascii=False)


def _connect_args(url: str, events: str = "off") -> dict[str, Any]:
    extra: dict[str, Any] = {"events": events}
    if os.environ.get("AMIWIRE_SECRET"):
        extra["secret"] = os.environ["AMIWIRE_SECRET"]
    return extra


async def _events(args: argparse.Namespace) -> int:
    filters = dict(args.where)
    async with connect(args.url, **_connect_args(args.url, events="on")) as ami:
        stream = ami.events(*args.patterns, **filters)
        count = 0
        async for event in stream:
            print(_message_json(event), flush=True)
            count += 1
            if args.count and count >= args.count:
                break
    return 0


async def _action(args: argparse.Namespace) -> int:
    async with connect(args.url, **_connect_args(args.url)) as ami:
        response = await ami.action(args.name, args.headers, raise_on_error=False, timeout=args.timeout, check=False)
        print(_message_json(response))
        for item in response.events:
            print(_message_json(item))
        if response.complete is not None:
            print(_message_json(response.complete))
        return 0 if response.get("Response") != "Error" else 1


async def _command(args: argparse.Namespace) -> int:
    async with connect(args.url, **_connect_args(args.url)) as ami:
        try:
            sys.stdout.write(await ami.command(" ".join(args.command), timeout=args.timeout))
        except ActionError as err:
            if err.output is None:
                raise
            # Asterisk's own words ("No such command ..."), not the envelope's Message.
            sys.stderr.write(err.output)
            return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m amiwire",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"amiwire {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True)
    with_url_forms: dict[str, Any] = {"epilog": EPILOG, "formatter_class": argparse.RawDescriptionHelpFormatter}

    p = sub.add_parser("events", **with_url_forms, help="tail events as JSON lines")
    p.add_argument("url")
    p.add_argument("patterns", nargs="*", help="event names or globs (default: all)")
    p.add_argument(
        "--where", action="append", default=[], type=_pair, metavar="HEADER=VALUE", help="header filter (glob)"
    )
    p.add_argument("--count", type=int, default=0, help="stop after this many events")

    p = sub.add_parser("action", **with_url_forms, help="send one action and print the response(s) as JSON lines")
    p.add_argument("url")
    p.add_argument("name")
    p.add_argument("headers", nargs="*", type=_pair, metavar="Key=Value")
    p.add_argument("--timeout", type=float, default=None)

    p = sub.add_parser("command", **with_url_forms, help="run a CLI command and print its output")
    p.add_argument("url")
    p.add_argument("command", nargs="+")
    p.add_argument("--timeout", type=float, default=None)

    from . import _cli_sim

    _cli_sim.add_parser(sub)

    p = sub.add_parser("demo", help="start the embedded simulator and show the client at work")
    p.add_argument("--calls", type=int, default=3)

    args = parser.parse_args(argv)
    try:
        if args.cmd == "events":
            return asyncio.run(_events(args))
        if args.cmd == "action":
            return asyncio.run(_action(args))
        if args.cmd == "command":
            return asyncio.run(_command(args))
        if args.cmd == "simulate":
            return _cli_sim.run(args)
        from ._demo import run as run_demo

        return run_demo(args.calls)
    except KeyboardInterrupt:
        return 130
    except AMIError as err:
        # Refused logins, unreachable hosts, timeouts: the message says it all.
        print(f"amiwire: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as Unix tools do, and keep the
        # interpreter's final flush of stdout from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # as if killed by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
