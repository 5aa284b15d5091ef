"""What amiwire writes to Python's logging: one line per state change, one DEBUG line per
action, never a secret, and nothing under another library's logger name."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

import amiwire
from amiwire.testing import Simulator

SECRET = "s3cr3t-XyZ"


async def settle() -> None:
    """Rust records cross through a forwarding thread: let it catch up."""
    await asyncio.sleep(0.3)


async def test_each_state_change_is_logged_once_with_user_host_port(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="amiwire")
    async with Simulator(users=[("ops", SECRET, "all", "all")]) as sim:
        peer = f"ops@{sim.host}:{sim.port}"
        async with amiwire.connect(f"tcp://ops:{SECRET}@{sim.host}:{sim.port}") as ami:
            await ami.ping()
        await settle()
    changes = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert changes == [f"amiwire {peer} connected", f"amiwire {peer} closed: closed by the user"]
    assert all(SECRET not in r.getMessage() for r in caplog.records)


async def test_debug_logs_one_line_per_action_without_headers(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="amiwire")
    async with Simulator(users=[("ops", SECRET, "all", "all")]) as sim:
        peer = f"ops@{sim.host}:{sim.port}"
        async with amiwire.connect(f"tcp://ops:{SECRET}@{sim.host}:{sim.port}") as ami:
            pong = await ami.ping()
            with pytest.raises(amiwire.ActionError):
                await ami.action("Getvar", action_id="my-id", check=False)
            await ami.action("UserEvent", UserEvent="x", Secret=SECRET)
        await settle()
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG and " action " in r.getMessage()]
    assert len(lines) == 3, lines
    assert re.fullmatch(rf"amiwire {re.escape(peer)} action Ping ActionID={re.escape(pong.action_id or '')}: Success in [\d.]+ ms", lines[0])
    assert re.fullmatch(rf"amiwire {re.escape(peer)} action Getvar ActionID=my-id: ActionError in [\d.]+ ms", lines[1])
    assert lines[2].startswith(f"amiwire {peer} action UserEvent ActionID=")
    assert all(SECRET not in r.getMessage() for r in caplog.records)


async def test_no_action_lines_when_debug_is_off(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="amiwire")
    async with Simulator() as sim, amiwire.connect(sim.url) as ami:
        await ami.ping()
    assert not [r for r in caplog.records if " action " in r.getMessage()]


async def test_http_stack_records_stay_under_the_amiwire_logger(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)  # the root logger: everything any library logs
    async with Simulator(http=True) as sim:
        async with amiwire.connect(sim.http_url("rawman")) as ami:
            await ami.ping()
        await settle()
    names = {r.name for r in caplog.records}
    assert names and all(name == "amiwire" or name.startswith("amiwire.") for name in names), names


LATE_CONFIG = """
import logging, time
from amiwire.testing import Simulator

with Simulator():  # amiwire's first records arrive while logging is not configured at all
    time.sleep(0.3)
seen = []
handler = logging.Handler()
handler.emit = lambda record: seen.append(record.name)
logging.getLogger("amiwire").addHandler(handler)
logging.getLogger("amiwire").setLevel(logging.DEBUG)
with Simulator():
    time.sleep(0.3)
print(sorted(set(seen)))
"""


def test_logging_configured_after_the_first_records_still_gets_rusts_records():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LATE_CONFIG], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "amiwire.sim" in done.stdout, done.stdout


# Rust records still queued when the interpreter exits: a client losing its server retries
# every millisecond, each failed attempt a warning, and the script ends without closing it.
EXIT_WHILE_LOGGING = """
import asyncio, logging, sys
import amiwire
from amiwire.testing import Simulator
logging.basicConfig(level=logging.DEBUG, stream=sys.stdout)

async def main():
    with Simulator() as sim:
        ami = await amiwire.connect(sim.url, reconnect_initial=0.001, reconnect_max=0.001)
    await asyncio.sleep(0.05)  # the server is gone: attempts fail and log, and go on

asyncio.run(main())
"""


def test_records_in_flight_at_exit_are_dropped_not_a_panic():
    import subprocess
    import sys

    for _ in range(5):
        done = subprocess.run([sys.executable, "-c", EXIT_WHILE_LOGGING], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "reconnect attempt" in done.stdout
        assert "panicked" not in done.stderr, done.stderr
