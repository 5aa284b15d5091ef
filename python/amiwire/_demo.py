"""``make demo``: the embedded simulator, and the client doing what users do with a PBX."""

from __future__ import annotations

import asyncio
import time

import amiwire
from amiwire.testing import Simulator


def _line(label: str, text: str) -> None:
    print(f"  {label:<22} {text}")


async def _demo(url: str, calls: int) -> None:
    started = time.perf_counter()
    async with amiwire.connect(url, auth="md5") as ami:
        print(f"connected: {ami.banner} (Asterisk {ami.asterisk_version}, MD5 login)")

        pong = await ami.ping()
        _line("Ping", f"{pong['Ping']} at {pong['Timestamp']}")
        settings = await ami.action("CoreSettings")
        _line("CoreSettings", f"AMI {settings['AMIversion']}, Asterisk {settings['AsteriskVersion']}")
        plan = await ami.action("ShowDialPlan", Context="test")
        items = plan.complete["ListItems"] if plan.complete else "?"
        _line("ShowDialPlan (list)", f"{len(plan.events)} items, ListItems={items}")
        version = await ami.command("core show version")
        _line("Command", version.strip())

        hangups = ami.events("Hangup", Context="test")
        everything = ami.events()
        print(f"originating {calls} calls (Async, tracked to OriginateResponse):")
        targets = ["Local/100@test", "Local/200@test", "Local/999@test"]
        jobs = [ami.originate(targets[i % len(targets)], application="Wait", data="1") for i in range(calls)]
        for target, result in zip(targets * calls, await asyncio.gather(*jobs, return_exceptions=True)):
            if isinstance(result, amiwire.OriginateFailed):
                _line(target, f"failed: {result.reason_text} (Reason {result.reason})")
            elif isinstance(result, BaseException):
                _line(target, f"error: {result!r}")
            else:
                _line(target, f"{result['Response']} Reason={result['Reason']} Channel={result['Channel']}")

        print("live events (first 12):")
        shown = 0
        deadline = time.monotonic() + 5
        while shown < 12 and time.monotonic() < deadline:
            try:
                batch = await asyncio.wait_for(everything.next_batch(12 - shown), timeout=1)
            except TimeoutError:
                break
            for event in batch:
                _line(event.name or "?", ", ".join(f"{k}={v}" for k, v in list(event.items())[1:4]))
            shown += len(batch)
        everything.close()
        try:
            hung = await asyncio.wait_for(hangups.next_batch(), timeout=5)
            _line("Hangup events", f"{len(hung)} so far, e.g. {hung[0]['Channel']} cause {hung[0]['Cause-txt']}")
        except TimeoutError:
            _line("Hangup events", "none within 5 s")
        print(f"stats: {ami.stats()}")
    print(f"logged off cleanly after {time.perf_counter() - started:.2f} s")


def run(calls: int = 3) -> int:
    with Simulator() as sim:
        print(f"simulator listening on {sim.host}:{sim.port} (users: {', '.join(sim.users)})")
        asyncio.run(asyncio.wait_for(_demo(sim.url, calls), timeout=25))
    return 0
