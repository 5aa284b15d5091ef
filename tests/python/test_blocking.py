"""The blocking client: timeouts that lose nothing, closing that is always safe."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

import amiwire
from amiwire.testing import Simulator


def test_a_timed_out_next_batch_loses_no_event():
    with Simulator() as sim, amiwire.connect_blocking(sim.url) as ami:
        stream = ami.events("UserEvent")
        assert stream.next_batch(timeout=0.05) == []
        for n in range(50):
            ami.action("UserEvent", UserEvent=f"E{n}")
        got: list[str] = []
        deadline = time.monotonic() + 10
        while len(got) < 50 and time.monotonic() < deadline:
            got += [event["UserEvent"] for event in stream.next_batch(timeout=1)]
        assert got == [f"E{n}" for n in range(50)]


def test_a_timed_out_next_batch_then_iteration_loses_no_event():
    with Simulator() as sim, amiwire.connect_blocking(sim.url) as ami:
        stream = ami.events("UserEvent")
        assert stream.next_batch(timeout=0.01) == []
        ami.action("UserEvent", UserEvent="late")
        assert next(stream)["UserEvent"] == "late"


def test_a_stream_closed_after_a_timed_out_next_batch_ends():
    with Simulator() as sim, amiwire.connect_blocking(sim.url) as ami:
        stream = ami.events("UserEvent")
        assert stream.next_batch(timeout=0.01) == []
        stream.close()
        with pytest.raises(StopIteration):
            stream.next_batch(timeout=5)
        assert list(stream) == []


def test_every_call_after_close_raises_client_closed():
    with Simulator() as sim:
        ami = amiwire.connect_blocking(sim.url)
        stream = ami.events("UserEvent")
        ami.close()
        calls = [
            ami.ping,
            lambda: ami.action("Ping"),
            lambda: ami.action_list("CoreShowChannels"),
            lambda: ami.command("core show version"),
            lambda: ami.events("Hangup"),
            lambda: ami.set_event_mask("off"),
            lambda: ami.add_filter("Event: Hangup"),
            lambda: ami.originate("Local/100@test", application="Wait", data="1"),
            lambda: stream.next_batch(timeout=1),
        ]
        for call in calls:
            with pytest.raises(amiwire.ClientClosed):
                call()
        ami.close()  # again: nothing happens


def test_an_unknown_keyword_is_refused_before_a_thread_starts():
    threads = threading.active_count()
    with pytest.raises(TypeError, match="tiemout"):
        amiwire.connect_blocking("tcp://admin:amiwire@127.0.0.1:1", tiemout=5)  # type: ignore[call-arg]
    with pytest.raises(amiwire.LocalProtocolError, match="timeout"):
        amiwire.connect_blocking("tcp://admin:amiwire@127.0.0.1:1", timeout=float("nan"))
    assert threading.active_count() == threads


CLOSE_SCRIPT = """
    import gc, sys, threading, warnings
    warnings.simplefilter("error")
    import amiwire
    from amiwire.testing import Simulator

    with Simulator() as sim:
        with amiwire.connect_blocking(sim.url) as ami:
            stream = ami.events("UserEvent")
            ended = []

            def wait() -> None:
                try:
                    next(stream)
                except (StopIteration, amiwire.ClientClosed) as err:
                    ended.append(type(err).__name__)

            waiter = threading.Thread(target=wait)
            waiter.start()
            assert ami.ping()["Ping"] == "Pong"
            ami.close()
            ami.close()
        waiter.join(5)
        assert not waiter.is_alive() and ended, ended
        ami.close()
        gc.collect()
    print("ok")
"""


def test_close_inside_with_and_twice_is_quiet():
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", textwrap.dedent(CLOSE_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
    assert done.stderr == ""


def test_the_blocking_signatures_are_the_async_ones():
    import inspect

    def parameters(fn: object) -> list[str]:
        return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]

    assert parameters(amiwire.connect_blocking) == parameters(amiwire.connect)
    for name in ("action", "action_list", "originate", "ping", "command", "set_event_mask", "add_filter", "events"):
        assert parameters(getattr(amiwire.BlockingClient, name)) == parameters(getattr(amiwire.Client, name)), name
