"""A user's script: typed events and checked actions. `mypy --strict` must pass on it
(tests/python/test_schema.py runs it); it is not run."""

from __future__ import annotations

import asyncio
from typing import assert_type

import amiwire
from amiwire import actions
from amiwire.events import CoreShowChannel, DialEnd, Hangup, OriginateResponse


async def main(url: str) -> None:
    async with amiwire.connect(url) as ami:
        answered = await ami.originate("PJSIP/100", exten="200", context="default")
        assert_type(answered, OriginateResponse)
        print(answered.uniqueid, answered.reason + 1)

        channels = await ami.action_list(actions.CoreShowChannels())
        assert_type(channels, list[CoreShowChannel])
        for channel in channels:
            print(channel.channel, channel.channel_state_desc, channel.duration)

        bridges = await ami.action_list(actions.BridgeList())  # documented without a list: Messages
        assert_type(bridges, list[amiwire.Message])
        await ami.action(actions.Hangup(channel="PJSIP/100-00000001", cause=16))
        await ami.action(actions.QueuePause(interface="Local/100@queues", paused=True, queue="support"))
        await ami.action("Setvar", variable="X", value="1", check=False)

        async for event in ami.events(Hangup, DialEnd):
            assert_type(event, Hangup | DialEnd)
            match event:
                case Hangup(channel=name, cause=16):
                    cause: int = event.cause
                    print(name.upper(), cause, event.cause_txt.lower())
                case DialEnd(dial_status="ANSWER"):
                    print(event.dest_channel)
                case _:
                    pass

        async for anything in ami.events("Dial*"):
            print(anything.name, anything["Channel"])


if __name__ == "__main__":
    asyncio.run(main("tcp://admin:amiwire@127.0.0.1:5038"))
