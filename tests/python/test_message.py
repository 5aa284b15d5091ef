"""amiwire.Message: a read-only, case-insensitive Mapping over one decoded message."""

from __future__ import annotations

import html
import sys
from collections.abc import ItemsView, KeysView, Mapping, ValuesView

import pytest

import amiwire
from amiwire import Message


def one(wire: bytes) -> Message:
    messages = amiwire.parse(wire, expect_banner=False)
    assert len(messages) == 1
    return messages[0]


LOGIN = one(
    b"Action: Login\r\nActionID: a-1\r\nUsername: admin\r\nSecret: s3cr3t-value\r\n"
    b"key: k3y-value\r\n\r\n"
)
HANGUP = one(
    b"Event: Hangup\r\nPrivilege: call,all\r\nChannel: PJSIP/100-00000001\r\n"
    b"Uniqueid: 1732621234.7\r\nCause-txt: Normal Clearing\r\nAccountCode: \r\n"
    b"Value:  two spaces\r\nNoSpace:x\r\n\r\n"
)
USER_EVENT = one(
    b"Event: UserEvent\r\nUserEvent: Repeat\r\nX: first\r\nActionID: u-1\r\n"
    b"x: second\r\nOther: o\r\nX: third\r\n\r\n"
)


def test_is_a_read_only_mapping() -> None:
    assert isinstance(HANGUP, Mapping)
    assert not isinstance(HANGUP, dict)
    with pytest.raises(TypeError):
        HANGUP["Channel"] = "x"
    with pytest.raises(AttributeError):
        HANGUP.name = "x"
    with pytest.raises(TypeError):
        hash(HANGUP)
    with pytest.raises(TypeError):
        Message()


def test_mapping_protocol_and_views() -> None:
    m = HANGUP
    assert len(m) == 8
    assert list(m) == [
        "Event", "Privilege", "Channel", "Uniqueid", "Cause-txt", "AccountCode", "Value", "NoSpace",
    ]
    assert isinstance(m.keys(), KeysView)
    assert isinstance(m.values(), ValuesView)
    assert isinstance(m.items(), ItemsView)
    assert m.keys() == {"Event", "Privilege", "Channel", "Uniqueid", "Cause-txt", "AccountCode", "Value", "NoSpace"}
    assert list(m.values())[:3] == ["Hangup", "call,all", "PJSIP/100-00000001"]
    assert ("Channel", "PJSIP/100-00000001") in m.items()
    assert dict(m) == m.to_dict()
    # Empty values are real; exactly one space after the colon is stripped; no space is fine.
    assert m["AccountCode"] == ""
    assert m["Value"] == " two spaces"
    assert m["NoSpace"] == "x"
    match m:
        case {"Event": "Hangup", "Channel": channel}:
            assert channel == "PJSIP/100-00000001"
        case _:
            pytest.fail("Message does not match as a mapping")


def test_keys_are_case_insensitive() -> None:
    m = HANGUP
    assert m["channel"] == m["CHANNEL"] == m["Channel"] == "PJSIP/100-00000001"
    assert "uniqueID" in m and "UNIQUEID" in m
    assert "Nope" not in m
    assert 42 not in m
    assert m.get("cause-TXT") == "Normal Clearing"
    assert m.get("missing") is None
    assert m.get("missing", "dflt") == "dflt"
    with pytest.raises(KeyError) as info:
        m["missing"]
    assert info.value.args == ("missing",)
    with pytest.raises(KeyError):
        m[1]  # type: ignore[index]


def test_repeated_headers() -> None:
    m = USER_EVENT
    # First value wins for [] / get; iteration yields each name once in its first spelling.
    assert m["x"] == "first"
    assert m.get_all("X") == ["first", "second", "third"]
    assert m.get_all("missing") == []
    assert list(m) == ["Event", "UserEvent", "X", "ActionID", "Other"]
    assert len(m) == 5
    d = m.to_dict()
    assert d == {
        "Event": "UserEvent", "UserEvent": "Repeat", "X": ["first", "second", "third"],
        "ActionID": "u-1", "Other": "o",
    }
    assert list(d) == list(m)
    # items() follows Mapping semantics: first values.
    assert dict(m.items())["X"] == "first"


def test_properties() -> None:
    assert HANGUP.name == "Hangup" and HANGUP.is_event and not HANGUP.is_response
    assert HANGUP.response is None and HANGUP.action_id is None
    reply = one(b"Response: Success\r\nActionID: p-1\r\nPing: Pong\r\n\r\n")
    assert reply.name is None and reply.is_response and not reply.is_event
    assert reply.response == "Success" and reply.action_id == "p-1"
    assert reply.body is None and reply.unparsed_lines == []
    # OriginateResponse carries Response: too, but it is an event.
    orig = one(b"Event: OriginateResponse\r\nActionID: o-1\r\nResponse: Failure\r\n\r\n")
    assert orig.is_event and not orig.is_response
    assert orig.name == "OriginateResponse" and orig.response is None and orig["Response"] == "Failure"
    other = one(b"Foo: bar\r\nstray line\r\n\r\n")
    assert not other.is_event and not other.is_response and other.name is None
    assert other.unparsed_lines == ["stray line"]
    assert list(other) == ["Foo"]


def test_raw_offset_and_get_bytes() -> None:
    wire = b"Event: A\r\nX: 1\r\n\r\nEvent: B\r\nY: caf\xc3\xa9\r\n\r\n"
    a, b = amiwire.parse(wire)
    assert a.raw == b"Event: A\r\nX: 1\r\n\r\n" and a.offset == 0
    assert b.raw == wire[len(a.raw):] and b.offset == len(a.raw)
    assert b.get_bytes("y") == "café".encode() and b["Y"] == "café"
    assert b.get_bytes("missing") is None


def test_latin1_fallback_is_lossless() -> None:
    raw_value = b"Zo\xeb \xd1and\xfa"  # Latin-1, not valid UTF-8
    m = one(b"Event: X\r\nCallerIDName: " + raw_value + b"\r\nUTF8: Zo\xc3\xab\r\nN\xe4me: v\r\n\r\n")
    assert m["CallerIDName"] == "Zoë Ñandú"
    assert m["CallerIDName"].encode("latin-1") == raw_value
    assert m.get_bytes("CallerIDName") == raw_value
    assert m["UTF8"] == "Zoë"
    # A name that is not UTF-8 decodes as Latin-1 too, and can be looked up by what iteration yields.
    assert "Näme" in list(m)
    assert m["Näme"] == "v" and m["NäME"] == "v"


def test_equality() -> None:
    wire = b"Event: A\r\nX: 1\r\n\r\n"
    assert one(wire) == one(wire)
    assert one(wire) != one(b"Event: A\r\nX: 2\r\n\r\n")
    # Same items, different bytes: Mapping equality holds against a dict, not between Messages.
    lf = one(b"Event: A\nX: 1\n\n")
    assert lf == {"Event": "A", "X": "1"} and one(wire) == {"Event": "A", "X": "1"}
    assert lf != one(wire)
    assert one(wire) != {"Event": "A"}
    assert one(wire) != [("Event", "A"), ("X", "1")]
    assert USER_EVENT == dict(USER_EVENT.items())


def test_repr_masks_secret_and_key() -> None:
    text = repr(LOGIN)
    assert "s3cr3t-value" not in text and "k3y-value" not in text
    assert text == (
        "Message({'Action': 'Login', 'ActionID': 'a-1', 'Username': 'admin', "
        "'Secret': '********', 'key': '********'})"
    )
    assert "s3cr3t-value" not in str(LOGIN)
    # Masking never touches the data itself.
    assert LOGIN["Secret"] == "s3cr3t-value" and LOGIN.to_dict()["key"] == "k3y-value"
    # A documented event shows its class (amiwire.events); anything else, as LOGIN, "Message".
    assert repr(USER_EVENT).startswith("UserEvent({'Event': 'UserEvent', 'UserEvent': 'Repeat', 'X': ['first', ")


def test_repr_html_is_escaped_and_masked() -> None:
    m = one(b"Event: X<b>\r\nNote: a & b <script>alert('x')</script>\r\nSecret: hunter2\r\nstray <i>\r\n\r\n")
    page = m._repr_html_()
    assert "hunter2" not in page
    assert "<script>" not in page and "<b>" not in page and "<i>" not in page
    assert html.escape("a & b <script>alert('x')</script>") in page
    assert "<th>Secret</th><td>********</td>" in page
    assert html.escape("stray <i>") in page


async def test_repr_html_of_a_list_response_shows_its_items() -> None:
    from amiwire.testing import Simulator

    with Simulator() as sim:
        async with amiwire.connect(sim.url, timeout=5) as ami:
            plan = await ami.action("ShowDialPlan", Context="test")
    items = list(plan.events)
    assert len(items) > 4 and plan.complete is not None
    page = plan._repr_html_()
    # The response, then every item and the completion, each collapsed under a summary.
    assert page.count("<table") == 1 + len(items) + 1
    assert f"<details class=\"amiwire-events\"><summary>{len(items)} items</summary>" in page
    assert f"<summary>{plan.complete.name}</summary>" in page
    for item in items:
        assert item._repr_html_() in page
    assert page.index(items[0]._repr_html_()) < page.index(items[-1]._repr_html_())
    # A plain event or response has no collapsed parts.
    assert "<details" not in items[0]._repr_html_()


async def test_repr_html_of_a_huge_list_draws_the_first_thousand_items() -> None:
    from amiwire.testing import Simulator

    dialplan = "[big]\n" + "".join(f"exten => {n},1,NoOp(item {n})\n" for n in range(1200))
    with Simulator(dialplan=dialplan) as sim:
        async with amiwire.connect(sim.url, timeout=10) as ami:
            plan = await ami.action("ShowDialPlan", Context="big")
    assert len(plan.events) == 1200
    page = plan._repr_html_()
    assert page.count("<table") == 1 + 1000 + 1
    assert "<summary>1200 items</summary>" in page and "… and 200 more" in page


def test_sizeof_counts_owned_bytes() -> None:
    # The object plus its wire bytes and line index: what a retained message really costs.
    assert sys.getsizeof(HANGUP) >= len(HANGUP.raw) + 4 * 8
    assert sys.getsizeof(HANGUP) < 2 * len(HANGUP.raw) + 200


def test_short_strings_are_shared_but_secrets_never_cached() -> None:
    wire = b"Event: Login\r\nStatus: Up\r\nSecret: pw-1\r\nKey: k-1\r\nUniqueid: 1795691133.6512\r\n\r\n"
    first, second = amiwire.parse(wire + wire, expect_banner=False)
    a, b = first.to_dict(), second.to_dict()
    assert a == b
    # Header names, event names and short values come from one process-wide cache...
    assert [k1 is k2 for k1, k2 in zip(a, b)] == [True] * 5
    assert a["Status"] is b["Status"] and first.name is second.name
    # ...long values are built per message, and secrets are never kept by the cache.
    assert a["Uniqueid"] is not b["Uniqueid"]
    assert a["Secret"] is not b["Secret"] and a["Key"] is not b["Key"]
