"""Code as a user writes it, checked by `mypy --strict` and pyright (`make test`): the types
amiwire publishes must accept it with no `Any` leaking and no ignore comments."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import amiwire
from amiwire.testing import Simulator


def header_names(message: Mapping[str, str]) -> list[str]:
    return [name for name in message]


def channels(messages: list[amiwire.Message]) -> dict[str, str]:
    return {m["Channel"]: m.get("State", "?") for m in messages}


async def watch(url: str) -> str:
    async with amiwire.connect(url, timeout=5.0, events="on") as ami:
        seen: list[str] = []

        @ami.on("Hangup")
        async def on_hangup(event: amiwire.Message) -> None:
            seen.append(event["Channel"])

        def on_user(event: amiwire.Message) -> None:
            seen.append(event.get("UserEvent", ""))

        ami.on("UserEvent", on_user, Context="test")
        on_hangup.__name__  # the decorator returned the function itself

        pong: amiwire.Message = await ami.ping()
        names = header_names(pong)
        try:
            await ami.action("Getvar", check=False)  # the server refuses it
        except amiwire.ActionError as err:
            reason: str = err.response["Message"]
            items: list[amiwire.Message] = err.events
            names.append(reason + str(len(items)))
        try:
            await ami.command("core show nonsense")
        except amiwire.ActionError as err:
            text: str | None = err.output
            names.append(text or "")
        stream = ami.events("UserEvent", UserEvent="x*")
        await ami.action("UserEvent", UserEvent="x1")
        async for event in stream:
            names.append(event["UserEvent"])
            break
        return ",".join(names + seen)


async def live(url: str) -> str:
    async with amiwire.connect(url, live=True) as ami:
        call: amiwire.Call = await ami.call("Local/100@test", application="Wait", data="0.2")
        await call.answered()
        channel: amiwire.LiveChannel | None = ami.channels.get(call.uniqueid)
        members: list[str] = [m for b in ami.bridges.values() for m in b.members]
        ended: amiwire.LiveChange = await call.ended()
        changes: amiwire.EventStream[amiwire.LiveChange] = ami.live.changes(maxsize=100)
        changes.close()
        snapshot: amiwire.LiveSnapshot = ami.live.snapshot()
        state = channel.state_desc if channel is not None else "gone"
        return f"{state} {len(members)} {ended.cause} {len(snapshot.calls)}"


def blocking(url: str) -> str:
    with amiwire.connect_blocking(url, timeout=5.0, reconnect=False) as ami:
        stream = ami.events("UserEvent", maxsize=100)
        ami.action("UserEvent", UserEvent="hi", timeout=2.0)
        assert next(stream)["UserEvent"] == "hi"
        batch: list[amiwire.Message] = stream.next_batch(timeout=1.0)
        listed = channels(ami.action_list("CoreShowChannels"))
        return f"{ami.ping()['Ping']} {len(batch)} {len(listed)} {ami.command('core show version')}"


def main() -> None:
    with Simulator(auth_fail_delay=0.05, time_scale=0.1, users=[("ops", "pw", "all", "all")]) as sim:
        print(asyncio.run(watch(sim.url)), blocking(sim.url), asyncio.run(live(sim.url)))
    try:
        amiwire.parse_url("tcp://h?tiemout=5")
    except amiwire.AMIError as err:
        print(err)


if __name__ == "__main__":
    main()
