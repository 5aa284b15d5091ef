"""The live state through the asyncio client, against the simulator: the read-only maps, the
change stream, a rebuild after a forced disconnect, and calls placed with ``Client.call``.
(The oracle under load, the PBX's own lists at random moments, is tests/transport_live.rs.)"""

from __future__ import annotations

import asyncio
import time

import pytest

import amiwire
from amiwire.testing import Simulator


async def wait_until(condition: object, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_live_needs_the_option_and_the_call_events() -> None:
    with Simulator() as sim:
        with pytest.raises(amiwire.LocalProtocolError, match="'call'"):
            amiwire.connect(sim.url, live=True, events="user")
        async with amiwire.connect(sim.url) as ami:
            with pytest.raises(amiwire.LocalProtocolError, match="live=True"):
                ami.channels


async def test_the_maps_follow_the_calls_and_a_gap_is_rebuilt() -> None:
    with Simulator(load_calls=10, call_duration=0.5) as sim:
        async with amiwire.connect(sim.url, live=True, reconnect_initial=3.0, reconnect_max=3.0) as ami:
            changes = ami.live.changes()
            await wait_until(lambda: len(ami.channels) >= 20, "the calls come up")
            snapshot = ami.live.snapshot()
            for uniqueid, channel in snapshot.channels.items():
                assert channel.uniqueid == uniqueid
                assert uniqueid in snapshot.calls[channel.linkedid].channels
                if channel.bridge is not None:
                    assert uniqueid in snapshot.bridges[channel.bridge].members
            assert snapshot.version >= 1
            assert repr(snapshot).startswith("<LiveSnapshot")
            first = await changes.next_batch()
            assert {c.kind for c in first} <= {"channel_added", "call_added", "bridge_added", "channel_changed",
                                                "call_changed", "bridge_changed", "channel_removed",
                                                "call_removed", "bridge_removed"}
            seen_before = set(ami.channels)
            sim.disconnect_all()
            await wait_until(lambda: ami.live.status["rebuilds"] >= 2 and not ami.live.rebuilding, "rebuilt")
            # Away for 1.5 s at least (the backoff waits 50-100 % of its 3 s), longer than a call
            # lasts (at most 0.85 s): every channel seen before the gap ended during it.
            await asyncio.sleep(0.5)
            removed: dict[str, int | None] = {}
            while changes.queued:
                for change in await changes.next_batch():
                    if change.kind == "channel_removed":
                        assert change.channel is not None
                        removed[change.channel.uniqueid] = change.cause
            assert not (seen_before & set(ami.channels))
            assert seen_before <= set(removed), "every channel seen before the gap is removed"
            # A Hangup written in the instant before the disconnect still arrives with its cause.
            unseen = [uniqueid for uniqueid in seen_before if removed[uniqueid] is None]
            assert len(unseen) * 10 >= len(seen_before) * 9, "what ended during the gap has no cause"
            assert ami.live.status["rebuild_error"] is None


async def test_a_placed_call_is_followed_to_its_end() -> None:
    with Simulator() as sim:
        async with amiwire.connect(sim.url, live=True) as ami:
            call = await ami.call("Local/100@test", application="Wait", data="1")
            answered = await call.answered()
            assert answered["Response"] == "Success"
            assert call.uniqueid.startswith("amiwire-")
            channel = ami.channels[call.uniqueid]
            assert channel.linkedid == call.linkedid
            assert call.linkedid in ami.calls
            ended = await asyncio.wait_for(call.ended(), 10)
            assert ended.kind == "channel_removed"
            assert ended.cause == 16, ended.cause_text
            assert call.uniqueid not in ami.channels and call.linkedid not in ami.calls
            events = await call.events().next_batch()
            names = [event.name for event in events]
            assert "Newchannel" in names and "Hangup" in names
            assert all(event["Linkedid"] == call.linkedid for event in events)


async def test_a_call_can_be_redirected_and_hung_up_and_a_failed_one_says_why() -> None:
    with Simulator() as sim:
        async with amiwire.connect(sim.url, live=True) as ami:
            # 500@test waits 300 s: the call lasts until it is hung up.
            call = await ami.call("Local/500@test", application="Wait", data="300")
            await call.answered()
            await call.redirect("test", "500", priority=1)
            await wait_until(lambda: ami.channels[call.uniqueid].exten == "500", "redirected")
            assert ami.channels[call.uniqueid].context == "test"
            started = time.monotonic()
            await call.hangup(cause=17)
            ended = await asyncio.wait_for(call.ended(), 10)
            assert time.monotonic() - started < 5
            assert ended.cause == 17, ended.cause_text
            assert call.linkedid not in ami.calls
            failed = await ami.call("Local/999@test", application="Wait", data="1")
            with pytest.raises(amiwire.OriginateFailed):
                await asyncio.wait_for(failed.ended(), 10)


def test_the_blocking_client_reads_the_live_state() -> None:
    with Simulator(load_calls=5, call_duration=2.0) as sim:
        with amiwire.connect_blocking(sim.url, live=True) as ami:
            deadline = time.monotonic() + 10
            while len(ami.channels) < 10:
                assert time.monotonic() < deadline, "the calls come up"
                time.sleep(0.02)
            snapshot = ami.live_snapshot()
            listed = ami.action_list("CoreShowChannels")
            assert len(listed) >= 10
            assert all(channel.linkedid in snapshot.calls for channel in snapshot.channels.values())
            assert len(ami.calls) >= 3  # ten channels: at least three calls of up to four each
            for bridge in snapshot.bridges.values():
                assert all(snapshot.channels[member].bridge == bridge.id for member in bridge.members)


async def test_channel_variables_are_kept_only_when_asked() -> None:
    with Simulator() as sim:
        for keep in (False, True):
            async with amiwire.connect(sim.url, live=True, live_variables=keep) as ami:
                call = await ami.call("Local/500@test", application="Wait", data="300")
                await call.answered()
                changes = ami.live.changes()
                channel = ami.channels[call.uniqueid]
                await ami.action("Setvar", Channel=channel.name, Variable="foo", Value="bar")
                await ami.ping()  # the VarSet event came before this answer
                assert ami.channels[call.uniqueid].variables == ({"foo": "bar"} if keep else {})
                fields = {f for change in await changes.next_batch() for f in change.fields} if keep else set()
                assert ("variables" in fields) == keep
                await call.hangup()
                await call.ended()
