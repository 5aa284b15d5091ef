"""Command line: ``python -m amiwire {events,action,command,simulate,demo} ...``.

URLs look like ``tcp://user:secret@host:5038`` or ``tls://user:secret@host:5039``; the secret
may come from the ``AMIWIRE_SECRET`` environment variable instead, to keep it out of process
listings and shell history.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import AMIError, Message, connect


def _message_json(msg: Message) -> str:
    return json.dumps(msg.to_dict(), ensure_ascii=False)


def _connect_args(url: str, events: str = "off") -> dict[str, Any]:
    extra: dict[str, Any] = {"events": events}
    if os.environ.get("AMIWIRE_SECRET"):
        extra["secret"] = os.environ["AMIWIRE_SECRET"]
    return extra


async def _events(args: argparse.Namespace) -> int:
    filters = dict(f.split("=", 1) for f in args.where)
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
    headers = [tuple(h.split("=", 1)) for h in args.headers]
    async with connect(args.url, **_connect_args(args.url)) as ami:
        response = await ami.action(args.name, headers, raise_on_error=False, timeout=args.timeout, check=False)
        print(_message_json(response))
        for item in response.events:
            print(_message_json(item))
        if response.complete is not None:
            print(_message_json(response.complete))
        return 0 if response.get("Response") != "Error" else 1


async def _command(args: argparse.Namespace) -> int:
    async with connect(args.url, **_connect_args(args.url)) as ami:
        sys.stdout.write(await ami.command(" ".join(args.command), timeout=args.timeout))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m amiwire", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("events", help="tail events as JSON lines")
    p.add_argument("url")
    p.add_argument("patterns", nargs="*", help="event names or globs (default: all)")
    p.add_argument("--where", action="append", default=[], metavar="HEADER=VALUE", help="header filter (glob)")
    p.add_argument("--count", type=int, default=0, help="stop after this many events")

    p = sub.add_parser("action", help="send one action and print the response(s) as JSON lines")
    p.add_argument("url")
    p.add_argument("name")
    p.add_argument("headers", nargs="*", metavar="Key=Value")
    p.add_argument("--timeout", type=float, default=None)

    p = sub.add_parser("command", help="run a CLI command and print its output")
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
