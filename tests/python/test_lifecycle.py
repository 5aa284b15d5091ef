"""Interpreter exit, fork and loop changes: where tokio-backed extensions usually crash or hang."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

import amiwire
from amiwire.testing import Simulator

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, amiwire
    async def main(url):
        ami = await amiwire.connect(url)
        await asyncio.gather(*(ami.ping() for _ in range(200)))
        stream = ami.events()
        await ami.action("UserEvent", UserEvent="exit-test")
        # Leave the client open on purpose: exit must still be clean.
    asyncio.run(main(sys.argv[1]))
    """
)


def test_interpreter_exit_is_clean_every_time():
    with Simulator() as sim:
        for _ in range(12):
            done = subprocess.run([sys.executable, "-c", SCRIPT, sim.url], capture_output=True, timeout=60)
            assert done.returncode == 0, done.stderr.decode()
            assert b"Fatal Python error" not in done.stderr


def _raises_client_closed_in_a_forked_child(use_client: Callable[[], object]) -> None:
    """Runs `use_client` in a forked child, where the parent's socket and runtime are not
    ours: it must raise ClientClosed, not hang or crash."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            use_client()
        except amiwire.ClientClosed:
            code = 0
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_client_used_after_fork_raises_client_closed():
    with Simulator() as sim:
        ami = amiwire.connect_blocking(sim.url)
        try:
            _raises_client_closed_in_a_forked_child(lambda: ami.ping(timeout=2))
            assert ami.ping()["Ping"] == "Pong"
        finally:
            ami.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_async_client_used_after_fork_fails_its_actions():
    with Simulator() as sim:
        ami = asyncio.run(_connect(sim.url))
        try:
            # The child has no driver: the action fails at its flush instead of waiting.
            _raises_client_closed_in_a_forked_child(lambda: asyncio.run(asyncio.wait_for(ami.ping(), 5)))
            assert asyncio.run(ami.ping())["Ping"] == "Pong"
        finally:
            asyncio.run(ami.close())


async def _connect(url: str) -> amiwire.Client:
    return await amiwire.connect(url)


def test_one_client_across_two_event_loops():
    with Simulator() as sim:
        ami = asyncio.run(_connect(sim.url))
        assert asyncio.run(ami.ping())["Ping"] == "Pong"
        assert asyncio.run(ami.ping())["Ping"] == "Pong"
        asyncio.run(ami.close())
        assert ami.state == "closed"


def test_an_action_left_unsent_by_a_stopped_loop_goes_out_with_the_next_loop():
    with Simulator() as sim:
        ami = asyncio.run(_connect(sim.url))
        old = asyncio.new_event_loop()
        left: list[asyncio.Future[amiwire.Message]] = []

        def queue_then_stop() -> None:
            left.append(ami.action("UserEvent", UserEvent="left"))
            old.stop()  # the loop ends before the flush it scheduled runs

        old.call_soon(queue_then_stop)
        old.run_forever()

        async def on_the_next_loop() -> amiwire.Message:
            return await asyncio.wait_for(ami.ping(), 5)

        assert asyncio.run(on_the_next_loop())["Ping"] == "Pong"
        assert left[0].done() and left[0].result()["Response"] == "Success"
        old.close()
        asyncio.run(ami.close())


def test_calling_without_a_loop_says_what_to_do():
    with Simulator() as sim:
        ami = asyncio.run(_connect(sim.url))
        with pytest.raises(RuntimeError, match="connect_blocking"):
            ami.events("X").__anext__().send(None)
        asyncio.run(ami.close())
