"""The asyncio client against the embedded simulator."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

import amiwire
from amiwire.testing import Simulator


@pytest.fixture
def sim():
    with Simulator() as s:
        yield s


async def test_connect_ping_version_and_close(sim):
    ami = await amiwire.connect(sim.url)
    assert ami.state == "connected"
    assert ami.banner == "Asterisk Call Manager/11.0.0"
    assert ami.ami_version == "11.0.0"
    assert ami.asterisk_version and ami.asterisk_version.startswith("22.")
    pong = await ami.ping()
    assert pong["Ping"] == "Pong"
    assert pong.is_response and pong["Response"] == "Success"
    await ami.close()
    assert ami.state == "closed"
    with pytest.raises(amiwire.ClientClosed):
        await ami.ping()


async def test_md5_login_and_context_manager(sim):
    async with amiwire.connect(host=sim.host, port=sim.port, username="admin", secret="amiwire", auth="md5") as ami:
        assert (await ami.ping())["Ping"] == "Pong"
    assert ami.state == "closed"


async def test_bad_credentials_raise_at_once(sim):
    with pytest.raises(amiwire.AuthenticationError) as info:
        await amiwire.connect(host=sim.host, port=sim.port, username="admin", secret="not-the-secret", timeout=5)
    assert "not-the-secret" not in str(info.value)


async def test_pipelined_actions_resolve_by_action_id(sim):
    async with amiwire.connect(sim.url) as ami:
        replies = await asyncio.gather(*(ami.action("Getvar", Variable=f"GLOBAL(V{i})") for i in range(50)))
        assert len({r.action_id for r in replies}) == 50
        assert all(r["Response"] == "Success" for r in replies)


async def test_list_action_collects_items_and_completion(sim):
    async with amiwire.connect(sim.url) as ami:
        plan = await ami.action("ShowDialPlan", Context="test")
        assert plan["EventList"] == "start"
        assert plan.events and all(e.name == "ListDialplan" for e in plan.events)
        assert plan.complete.name == "ShowDialPlanComplete"
        assert int(plan.complete["ListItems"]) == len(plan.events)
        items = await ami.action_list("DeviceStateList")
        assert isinstance(items, list)


@pytest.mark.parametrize("transport", ["tcp", "http"])
async def test_a_list_past_list_limit_raises_with_its_first_items_and_the_rest_is_discarded(transport):
    with Simulator(http=True) as sim:
        url = sim.url if transport == "tcp" else sim.http_url()
        async with amiwire.connect(url) as unlimited:
            whole = await unlimited.action("ShowDialPlan", Context="test", timeout=10)  # 49 items here
        assert len(whole.events) > 10
        async with amiwire.connect(url, list_limit=10) as ami:
            stream = ami.events("ListDialplan", "ShowDialPlanComplete")
            with pytest.raises(amiwire.ListTooLong) as info:
                await ami.action("ShowDialPlan", Context="test", timeout=10)
            err = info.value
            assert err.limit == 10 and "list_limit" in str(err)
            response, *items = err.partial
            assert response["EventList"] == "start" and err.action_id == response.action_id
            # The first ten items, exactly as a complete listing has them.
            assert [dict(i) | {"ActionID": ""} for i in items] == [
                dict(i) | {"ActionID": ""} for i in whole.events[:10]
            ]
            # The connection carries on, and no item of the given-up list surfaced as an event.
            assert (await ami.ping())["Ping"] == "Pong"
            assert stream.queued == 0 and stream.dropped == 0
            assert ami.stats()["pending"] == 0


async def test_failing_list_action_raises_with_response(sim):
    async with amiwire.connect(sim.url) as ami:
        with pytest.raises(amiwire.ActionError) as info:
            await ami.action("ShowDialPlan", Context="nonexistent")
        assert info.value.response["Message"] == "Did not find context nonexistent"
        response = await ami.action("ShowDialPlan", Context="nonexistent", raise_on_error=False)
        assert response["Response"] == "Error"


async def test_command_output_is_exact(sim):
    async with amiwire.connect(sim.url) as ami:
        text = await ami.command("dialplan show test")
        lines = text.split("\n")
        assert lines[0].startswith("[ Context 'test'")
        # CLI indentation is kept: Output: lines are split at the colon plus one space only.
        assert any(line.startswith("  '100' =>") for line in lines)
        with pytest.raises(amiwire.ActionError) as info:
            await ami.command("no such cli command")
        assert "No such command" in info.value.output


async def test_originate_tracks_originate_response(sim):
    async with amiwire.connect(sim.url) as ami:
        ok = await ami.originate("Local/100@test", application="Wait", data="1", timeout=10)
        assert ok.name == "OriginateResponse"
        assert ok["Response"] == "Success" and ok["Reason"] == "4"
        with pytest.raises(amiwire.OriginateFailed) as info:
            await ami.originate("Local/999@test", application="Wait", data="1", timeout=10)
        assert info.value.reason == 0


async def test_originate_without_call_events_is_refused_at_once(sim):
    async with amiwire.connect(sim.url, events="off") as ami:
        with pytest.raises(amiwire.LocalProtocolError, match="'call' class"):
            await ami.originate("Local/100@test", application="Wait", data="1")
        assert ami.stats()["pending"] == 0, "nothing was sent"
        await ami.set_event_mask("call,user")
        result = await ami.originate("Local/100@test", application="Wait", data="1", timeout=10)
        assert result["Response"] == "Success"


async def test_events_are_filtered_in_rust_and_fan_out(sim):
    async with amiwire.connect(sim.url) as ami:
        user_a = ami.events("UserEvent", UserEvent="Alpha")
        user_any = ami.events("User*")
        by_regex = ami.events(UserEvent=re.compile("^Al"))
        await ami.action("UserEvent", UserEvent="Alpha", Foo="1")
        await ami.action("UserEvent", UserEvent="Beta", Foo="2")
        got_a = await asyncio.wait_for(user_a.__anext__(), 5)
        assert got_a["UserEvent"] == "Alpha"
        names = []
        while len(names) < 2:
            names += [e["UserEvent"] for e in await asyncio.wait_for(user_any.next_batch(), 5)]
        assert names == ["Alpha", "Beta"]
        assert (await asyncio.wait_for(by_regex.__anext__(), 5))["UserEvent"] == "Alpha"
        assert user_a.queued == 0


async def test_streams_show_what_they_want_and_their_counters(sim):
    async with amiwire.connect(sim.url) as ami:
        stream = ami.events("UserEvent", UserEvent="Repr*", maxsize=1)
        await ami.action("UserEvent", UserEvent="Repr1")
        await ami.action("UserEvent", UserEvent="Repr2")
        await ami.ping()
        assert repr(stream) == "<amiwire.EventStream UserEvent UserEvent='Repr*': 1 queued, 0 delivered, 1 dropped, 0 gaps>"
        await stream.__anext__()
        stream.close()
        assert repr(stream).endswith(": 0 queued, 1 delivered, 1 dropped, 0 gaps, closed>")
        assert repr(ami.events()).startswith("<amiwire.EventStream *: ")


async def test_slow_consumer_drops_oldest_and_counts(sim):
    async with amiwire.connect(sim.url) as ami:
        stream = ami.events("UserEvent", maxsize=3)
        for i in range(10):
            await ami.action("UserEvent", UserEvent=f"N{i}")
        await ami.ping()
        batch = await asyncio.wait_for(stream.next_batch(), 5)
        assert [e["UserEvent"] for e in batch] == ["N7", "N8", "N9"]
        assert stream.dropped == 7


async def test_disconnect_policy_ends_the_stream(sim):
    async with amiwire.connect(sim.url) as ami:
        stream = ami.events("UserEvent", maxsize=2, overflow="disconnect")
        for i in range(4):
            await ami.action("UserEvent", UserEvent=f"N{i}")
        await ami.ping()
        with pytest.raises(amiwire.ClientClosed):
            while True:
                await asyncio.wait_for(stream.next_batch(), 5)
        assert (await ami.ping())["Ping"] == "Pong"


async def test_timeout_and_cancel_remove_pending(sim):
    async with amiwire.connect(sim.url) as ami:
        with pytest.raises(amiwire.ActionTimeout):
            await ami.action("WaitEvent", Timeout="1", timeout=0.2)
        assert ami.stats()["pending"] == 0

        async def waits() -> None:
            await ami.action("WaitEvent", Timeout="1")

        task = asyncio.ensure_future(waits())
        await asyncio.sleep(0.05)
        assert ami.stats()["pending"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert ami.stats()["pending"] == 0
        # wait_for cancels the action's future itself when its time is up.
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ami.action("WaitEvent", Timeout="1"), 0.05)
        assert ami.stats()["pending"] == 0
        # The simulator, like Asterisk, answers nothing else while a WaitEvent runs.
        assert (await ami.ping(timeout=10))["Ping"] == "Pong"


async def test_actions_leave_in_call_order_without_being_awaited(sim):
    async with amiwire.connect(sim.url) as ami:
        stream = ami.events("UserEvent")
        first = ami.action("UserEvent", UserEvent="first")
        second = ami.action("UserEvent", UserEvent="second")
        assert isinstance(first, asyncio.Future) and not first.done()
        assert ami.stats()["pending"] == 2
        # Awaited in reverse: the order on the wire is the order of the calls.
        assert (await second)["Response"] == "Success"
        assert (await first)["Response"] == "Success"
        got = []
        while len(got) < 2:
            got += await asyncio.wait_for(stream.next_batch(), 5)
        assert [e["UserEvent"] for e in got] == ["first", "second"]


async def test_bursts_and_single_actions_keep_their_order_on_the_wire(sim):
    # The first action since the loop's last I/O is written at once, the rest of a burst at the
    # next loop turn: bursts of every size, turns apart, still leave in call order.
    async with amiwire.connect(sim.url) as ami:
        stream = ami.events("UserEvent")
        futures = []
        for burst in (1, 5, 1, 1, 20, 3, 1):
            for _ in range(burst):
                futures.append(ami.action("UserEvent", UserEvent=f"u{len(futures)}"))
            await asyncio.sleep(0)
        await asyncio.gather(*futures)
        got = []
        while len(got) < len(futures):
            got += await asyncio.wait_for(stream.next_batch(), 5)
        assert [e["UserEvent"] for e in got] == [f"u{i}" for i in range(len(futures))]


async def test_usage_errors_raise_at_the_call(sim):
    async with amiwire.connect(sim.url) as ami:
        with pytest.raises(amiwire.LocalProtocolError):
            ami.action("Ping", {"X": "a\nb"})
        assert ami.stats()["pending"] == 0


async def test_error_response_returned_when_not_raising(sim):
    async with amiwire.connect(sim.url) as ami:
        response = await ami.action("NoSuchAction", raise_on_error=False)
        assert response["Response"] == "Error"
        assert response.events == []
        with pytest.raises(amiwire.ActionError) as err:
            await ami.action("NoSuchAction")
        assert err.value.response["Message"] == response["Message"]


async def test_header_injection_is_refused_before_sending(sim):
    async with amiwire.connect(sim.url) as ami:
        with pytest.raises(amiwire.LocalProtocolError):
            await ami.action("Setvar", Variable="X", Value="1\r\nAction: Originate")
        with pytest.raises(amiwire.LocalProtocolError):
            await ami.action("Ping", {"Bad:Key": "1"})
        assert (await ami.ping())["Ping"] == "Pong"


async def test_bad_event_mask_is_refused(sim):
    async with amiwire.connect(sim.url) as ami:
        with pytest.raises(amiwire.LocalProtocolError):
            await ami.set_event_mask("cal,user")
        assert (await ami.set_event_mask("call,user"))["Events"] == "On"


async def test_callbacks_run_on_the_loop(sim):
    async with amiwire.connect(sim.url) as ami:
        seen: list[str] = []
        done = asyncio.Event()

        @ami.on("UserEvent")
        async def handler(event):
            seen.append(event["UserEvent"])
            done.set()

        await asyncio.sleep(0)
        await ami.action("UserEvent", UserEvent="CB")
        await asyncio.wait_for(done.wait(), 5)
        assert seen == ["CB"]


def test_blocking_client(sim):
    with amiwire.connect_blocking(sim.url) as ami:
        assert ami.ping()["Ping"] == "Pong"
        assert "Asterisk" in ami.command("core show version")
        events = ami.events("UserEvent")
        ami.action("UserEvent", UserEvent="Sync")
        assert next(events)["UserEvent"] == "Sync"
        assert repr(events) == "<amiwire.BlockingEventStream UserEvent: 0 queued, 1 delivered, 0 dropped, 0 gaps>"


async def test_recording_masks_secrets_and_replays(sim, tmp_path):
    path = tmp_path / "session.jsonl"
    async with amiwire.connect(sim.url, record=str(path)) as ami:
        first = await ami.action("Getvar", Variable="GLOBAL(NOPE)")
        assert ami.stats()["orphans"] == 0
    text = path.read_text()
    assert "amiwire" not in text.replace("amiwire.", ""), "the secret was recorded"
    records = [json.loads(line) for line in text.splitlines()]
    assert records[0]["dir"] == "recv" and records[0]["data"].startswith("Asterisk Call Manager/")
    sent = "".join(r.get("data", "") for r in records if r["dir"] == "send")
    assert "Secret: ********" in sent and "Action: Getvar" in sent
    # The simulator answers a replayed client with what was recorded.
    with Simulator(replay=str(path)) as replay:
        async with amiwire.connect(replay.url, reconnect=False) as again:
            assert again.banner == "Asterisk Call Manager/11.0.0"
            second = await again.action("Getvar", Variable="GLOBAL(NOPE)")
    # The recorded answer, delivered under the replaying client's own ActionID.
    assert second.action_id != first.action_id
    assert {k: v for k, v in second.items() if k != "ActionID"} == {
        k: v for k, v in first.items() if k != "ActionID"
    }


async def test_an_early_stream_sees_the_session_from_its_first_event(sim):
    async with amiwire.connect(sim.url, early_stream=True) as ami:
        stream = ami.early_stream
        assert stream is not None
        first = await asyncio.wait_for(stream.__anext__(), 5)
        assert first.name == "FullyBooted"
    async with amiwire.connect(sim.url) as ami:
        assert ami.early_stream is None


async def test_a_stream_bounded_in_bytes_names_the_limit_it_met(sim):
    async with amiwire.connect(sim.url) as ami:
        stream = ami.events("UserEvent", max_bytes=5_000, overflow="disconnect")
        for i in range(20):
            sim.emit_event("UserEvent", [("UserEvent", "Big"), ("Data", "x" * 1_000), ("Seq", str(i))])
        await ami.ping()  # the events were read before its response
        with pytest.raises(amiwire.ClientClosed, match="max_bytes limit of 5000 bytes"):
            async for _ in stream:
                pass
        assert stream.limit_hit == "max_bytes limit of 5000 bytes"
        kept = ami.events("UserEvent", max_bytes=5_000)
        sim.emit_event("UserEvent", [("UserEvent", "Small")])
        await ami.ping()
        assert kept.queued == 1 and 0 < kept.queued_bytes < 5_000
        assert ami.stats()["queued_event_bytes"] >= kept.queued_bytes
        assert ami.stats()["max_event_bytes"] == 128 * 1024 * 1024


async def test_huge_timeouts_saturate_instead_of_failing_the_connection(sim):
    import sys

    async with amiwire.connect(sim.url, timeout=sys.maxsize, keepalive=sys.maxsize) as ami:
        assert (await ami.ping(timeout=sys.maxsize))["Ping"] == "Pong"
        assert (await ami.ping())["Ping"] == "Pong"
        assert ami.state == "connected"


async def test_a_list_past_max_list_bytes_raises_list_too_long_naming_the_limit(sim):
    async with amiwire.connect(sim.url, max_list_bytes=1_000) as ami:
        with pytest.raises(amiwire.ListTooLong, match="more than 1000 bytes.*max_list_bytes") as info:
            await ami.action("ShowDialPlan", Context="test")
        assert info.value.limit == 1_000 and info.value.partial is None
        assert (await ami.ping())["Ping"] == "Pong"


async def test_a_stream_that_never_runs_dry_still_lets_other_tasks_run():
    # The firehose queues events faster than this consumer takes them, so its queue never
    # empties: without a turn of the loop per batch, `async for` would hold the loop for the
    # whole flood, and no other task (a Ping's reply, a callback, a heartbeat) would run.
    from conftest import LOAD_CAPTURE

    with Simulator(firehose_file=str(LOAD_CAPTURE), firehose_repeats=3, firehose_after="UserEvent") as sim:
        async with amiwire.connect(sim.url, keepalive=None) as ami:
            stream = ami.events()
            await ami.action("UserEvent", UserEvent="go")
            while stream.queued < 4096:
                await asyncio.sleep(0.001)
            turns = 0

            async def heartbeat() -> None:
                nonlocal turns
                while True:
                    turns += 1
                    await asyncio.sleep(0)

            beating = asyncio.ensure_future(heartbeat())
            await asyncio.sleep(0)
            turns_at_start, seen = turns, 0
            async for _ in stream:
                seen += 1
                if seen == 4096:
                    break
            beating.cancel()
            assert turns > turns_at_start + 1, "the consumer held the loop"
