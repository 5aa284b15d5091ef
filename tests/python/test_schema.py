"""Typed events and checked actions, from Asterisk's AMI schema (issue 14).

The expectations are computed from the schema files and the wire bytes themselves, not from
the generated code: a documented event must arrive as its class with every header reachable,
and its attributes must give exactly what its headers say."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

import amiwire
from amiwire import Message, Parser, actions, events
from amiwire._schema import SCHEMAS, for_version
from amiwire.events import DialEnd, Hangup, NewExten, OriginateResponse, event_name
from amiwire.testing import Simulator
from conftest import AST13, AST22, FIXTURES, LOAD_CAPTURE, recv_chunks, tcp_fixtures

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = FIXTURES.parent / "schema"
DOCS = {v: json.loads((SCHEMA_DIR / f"asterisk-{v}-ami.json").read_text()) for v in ("13", "22")}
DOCUMENTED = {name.lower() for doc in DOCS.values() for name in doc["events"]}
LIVE = FIXTURES / "asterisk-22-live-state"


def wire_headers(message: Message) -> list[tuple[str, str]]:
    """(name, value) of every header line, split from the exact bytes received and decoded as
    amiwire promises (UTF-8, else Latin-1)."""

    def text(b: bytes) -> str:
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return b.decode("latin-1")

    pairs = []
    for line in message.raw.splitlines():
        name, colon, value = line.partition(b":")
        if colon:
            pairs.append((text(name), text(value[1:] if value.startswith(b" ") else value)))
    return pairs


def check_typed(message: Message) -> None:
    """A documented event is an instance of its class, loses no header, and each attribute
    reads its header (an int where the class says so)."""
    name = message.name
    if name is None or name.lower() not in DOCUMENTED:
        assert type(message) is Message, (name, type(message))
        return
    cls = type(message)
    assert cls is not Message and event_name(cls).lower() == name.lower()
    assert isinstance(message, Message)
    pairs = wire_headers(message)
    for header, value in pairs:
        assert value in message.get_all(header), (name, header)
    first = {}
    for header, value in pairs:
        first.setdefault(header.lower(), value)
    for attr in cls.__match_args__:
        field = vars(cls)[attr]
        wire = first.get(field.header.lower())
        if wire is None:
            with pytest.raises(AttributeError):
                getattr(message, attr)
        elif field.integer:
            assert getattr(message, attr) == int(wire), (name, attr, wire)
        else:
            assert getattr(message, attr) == message[field.header], (name, attr)


def all_tcp_fixtures() -> list[Path]:
    return tcp_fixtures(AST22) + tcp_fixtures(AST13) + tcp_fixtures(LIVE)


@pytest.mark.parametrize("path", all_tcp_fixtures(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_recorded_event_decodes_typed_and_loses_nothing(path: Path) -> None:
    for chunks in recv_chunks(path).values():
        parser = Parser()
        for chunk in chunks:
            for message in parser.feed(chunk):
                check_typed(message)


def test_both_versions_recordings_hold_typed_events() -> None:
    for directory in (AST13, AST22):
        kinds = {
            type(m) for p in tcp_fixtures(directory) for chunks in recv_chunks(p).values() for m in amiwire.parse(b"".join(chunks))
        }
        assert {Hangup, events.Newchannel, events.FullyBooted} <= kinds, directory


def test_the_load_capture_decodes_typed(load_capture: bytes) -> None:
    kinds = set()
    for message in amiwire.parse(load_capture):
        check_typed(message)
        kinds.add(type(message))
    # 22 kinds of events, 21 documented under the same name and Newexten as NewExten.
    assert NewExten in kinds and Hangup in kinds and DialEnd in kinds


def test_the_queue_fixture_decodes_typed() -> None:
    typed = [m for chunks in recv_chunks(LIVE / "tcp-queues.jsonl").values() for m in amiwire.parse(b"".join(chunks))]
    by_type = {type(m).__name__ for m in typed}
    assert {"QueueMemberStatus", "QueueCallerJoin", "AgentConnect", "QueueParams"} <= by_type, by_type
    member = next(m for m in typed if isinstance(m, events.QueueMemberStatus))
    assert member.queue == member["Queue"] and member.status == int(member["Status"])
    assert member.paused in (0, 1) and isinstance(member.penalty, int)


def test_attributes_names_ints_and_match() -> None:
    (hangup,) = amiwire.parse(
        b"Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/100-1\r\nChannelState: 6\r\n"
        b"ChannelStateDesc: Up\r\nLinkedid: 17.1\r\nCause: 16\r\nCause-txt: Normal Clearing\r\n"
        b"ChanVariable: FOO=bar\r\n\r\n",
        expect_banner=False,
    )
    assert type(hangup) is Hangup and hangup.name == "Hangup"
    assert (hangup.channel, hangup.cause, hangup.cause_txt) == ("PJSIP/100-1", 16, "Normal Clearing")
    assert (hangup.channel_state, hangup.channel_state_desc, hangup.linkedid) == (6, "Up", "17.1")
    # Undocumented headers are still there, and the message is the same Mapping.
    assert hangup["ChanVariable"] == "FOO=bar" and hangup["Privilege"] == "call,all"
    assert hangup == dict(hangup.items()) and repr(hangup).startswith("Hangup({'Event': 'Hangup'")
    with pytest.raises(AttributeError, match="TechCause"):
        hangup.tech_cause
    match hangup:
        case Hangup(channel=channel, cause=16):
            assert channel == "PJSIP/100-1"
        case _:
            pytest.fail("the class pattern did not match")
    # Names match case-insensitively; an unknown event stays a Message.
    (newexten, other) = amiwire.parse(b"Event: Newexten\r\nExten: 100\r\n\r\nEvent: MyModule\r\nX: 1\r\n\r\n", expect_banner=False)
    assert type(newexten) is NewExten and newexten.exten == "100"
    assert newexten.name == "Newexten"  # the wire's spelling, as ever
    assert type(other) is Message and other["X"] == "1"


def test_an_integer_header_that_is_not_one_says_so() -> None:
    (hangup,) = amiwire.parse(b"Event: Hangup\r\nCause: sixteen\r\n\r\n", expect_banner=False)
    with pytest.raises(ValueError, match='Cause is "sixteen", not an integer'):
        hangup.cause
    assert hangup["Cause"] == "sixteen"


# -- actions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["13", "22"])
def test_every_documented_action_is_checked(version: str) -> None:
    schema = SCHEMAS[version]
    for name, doc in DOCS[version]["actions"].items():
        params = [p["name"] for p in doc["parameters"] if p["name"] != "ActionID"]
        required = [p["name"] for p in doc["parameters"] if p.get("required")]
        # Everything documented, in any case and with underscores, is accepted and respelled.
        given = [re.sub(r"([a-z])([A-Z])", r"\1_\2", p).lower() for p in params]
        respell = schema.check(name.lower(), given, ("timeout",))
        assert [respell.get(g, g) for g in given] == params
        for missing in required:
            with pytest.raises(amiwire.LocalProtocolError, match=f"{name} needs .*{re.escape(missing)}"):
                schema.check(name, [p for p in params if p != missing], ())
        if "HeaderN" not in params:
            with pytest.raises(amiwire.LocalProtocolError, match=f"{name} has no parameter 'NoSuchHeader'"):
                schema.check(name, [*required, "NoSuchHeader"], ())


def test_refusals_name_the_nearest_valid_name() -> None:
    schema = SCHEMAS["22"]
    with pytest.raises(amiwire.LocalProtocolError, match=r"Originate has no parameter 'Aplication' \(did you mean 'Application'\?\)"):
        schema.check("Originate", ["Channel", "Aplication"], ())
    with pytest.raises(amiwire.LocalProtocolError, match=r"'timout' \(did you mean 'timeout'\?\)"):
        schema.check("Ping", ["timout"], ("timeout", "raise_on_error"))
    # An undocumented action goes through, except for a near-miss of a client keyword.
    assert schema.check("MyModuleAction", ["Foo", "Timeout"], ("timeout",)) == {}
    with pytest.raises(amiwire.LocalProtocolError, match="'raise_on_eror' looks like a mistyped keyword"):
        schema.check("MyModuleAction", ["raise_on_eror"], ("raise_on_error",))
    # Pattern parameters: UserEvent takes any header, UpdateConfig numbered ones.
    assert schema.check("UserEvent", ["UserEvent", "Anything"], ()) == {}
    assert schema.check("UpdateConfig", ["SrcFilename", "DstFilename", "Action-000001", "Cat-000001"], ()) == {}


def test_the_schema_follows_the_server_version() -> None:
    assert for_version("13.38.3") is SCHEMAS["13"] and for_version("11.2.0") is SCHEMAS["13"]
    assert for_version("22.10.1") is SCHEMAS["22"] and for_version("18.1.0") is SCHEMAS["22"]
    assert for_version(None) is SCHEMAS["22"]
    # PreDialGoSub appeared after 13.
    with pytest.raises(amiwire.LocalProtocolError, match="PreDialGoSub"):
        SCHEMAS["13"].check("Originate", ["Channel", "Application", "PreDialGoSub"], ())
    assert SCHEMAS["22"].check("Originate", ["Channel", "Application", "PreDialGoSub"], ()) == {}


def test_the_client_checks_before_sending_and_can_be_told_not_to() -> None:
    async def scenario(url: str) -> None:
        async with amiwire.connect(url) as ami:
            assert ami.asterisk_version == "22.10.1"
            with pytest.raises(amiwire.LocalProtocolError, match="did you mean 'timeout'"):
                ami.action("Ping", timout=3)
            with pytest.raises(amiwire.LocalProtocolError, match="Getvar needs Variable"):
                ami.action("Getvar")
            with pytest.raises(amiwire.LocalProtocolError, match="did you mean 'application'"):
                await ami.originate("Local/100@test", aplication="Echo")
            with pytest.raises(amiwire.LocalProtocolError, match="looks like a mistyped keyword"):
                ami.action("NoSuchModuleAction", timout=3)
            assert ami.stats()["pending"] == 0  # nothing was sent
            # Opt-out: the server answers for itself.
            with pytest.raises(amiwire.ActionError, match="No variable specified"):
                await ami.action("Getvar", check=False)
            # Documented spelling: `variable=` leaves as `Variable:`.
            await ami.action("Setvar", variable="TYPED", value="yes")
            assert (await ami.action("Getvar", variable="TYPED"))["Value"] == "yes"
            # Typed constructors and typed list items.
            assert (await ami.action(actions.Getvar(variable="TYPED")))["Value"] == "yes"
            answered = await ami.originate("Local/100@test", application="Wait", data="2")
            assert type(answered) is OriginateResponse and answered.reason == 4
            channels = await ami.action_list(actions.CoreShowChannels())
            assert channels and all(type(c) is events.CoreShowChannel for c in channels)
            assert channels[0].channel.startswith("Local/100@test")

    with Simulator() as sim:
        asyncio.run(scenario(sim.url))


def test_streams_by_class() -> None:
    async def scenario(url: str) -> None:
        async with amiwire.connect(url) as ami:
            stream = ami.events(Hangup, events.Newchannel)
            await ami.originate("Local/100@test", application="Wait", data="0")
            kinds = set()
            async for event in stream:
                assert isinstance(event, (Hangup, events.Newchannel))
                kinds.add(type(event))
                if isinstance(event, Hangup):
                    break
            assert Hangup in kinds and events.Newchannel in kinds
            with pytest.raises(TypeError, match="not an event class"):
                ami.events(Message)  # type: ignore[arg-type]

    with Simulator() as sim:
        asyncio.run(scenario(sim.url))


# -- generated code, user code ----------------------------------------------------------------


def test_generated_code_is_current() -> None:
    spec = importlib.util.spec_from_file_location("gen_schema", ROOT / "tools" / "gen_schema.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for path, text in gen.outputs(SCHEMA_DIR).items():
        assert path.read_text() == text, f"{path} is stale: run python tools/gen_schema.py"


def test_a_user_script_passes_mypy_strict() -> None:
    from mypy import api

    script = ROOT / "tests" / "typing" / "typed_user.py"
    out, err, status = api.run(["--strict", "--no-incremental", str(script)])
    assert status == 0, out + err
