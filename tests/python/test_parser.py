"""amiwire.parse / amiwire.Parser against the real captures, the limits, and encode_action."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import amiwire
from amiwire import LocalProtocolError, Message, Parser, RemoteProtocolError

from conftest import AST13, AST22, recv_chunks, tcp_fixtures

# ---- a deliberately simple reference splitter -------------------------------------------------


def reference_split(stream: bytes) -> tuple[str | None, list[tuple[bytes, list[tuple[str, str]]]]]:
    """Asterisk 22 framing the naive way: LF-terminated lines (a CR before the LF dropped), an
    empty line closes a message, empty lines between messages are dropped, the first line is
    the banner when it has no colon. Headers split at the first colon, then one space goes.
    Returns the banner and, per message, its raw bytes and (name, value) pairs."""
    banner = None
    messages: list[tuple[bytes, list[tuple[str, str]]]] = []
    headers: list[tuple[str, str]] = []
    start = pos = 0
    first = True
    while (nl := stream.find(b"\n", pos)) >= 0:
        line = stream[pos:nl].removesuffix(b"\r")
        pos = nl + 1
        if first:
            first = False
            if b":" not in line:
                banner = line.decode()
                start = pos
                continue
        if not line:
            if headers:
                messages.append((stream[start:pos], headers))
                headers = []
            start = pos
            continue
        name, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        headers.append((name.decode(), value.decode()))
    return banner, messages


def assert_same_headers(message: Message, expected: list[tuple[str, str]]) -> None:
    """Every header of `message` against the reference pairs: names in first spelling and
    order, every value of every name in order, first values through [], and the kind."""
    distinct: dict[str, str] = {}
    for name, _ in expected:
        distinct.setdefault(name.lower(), name)
    assert list(message) == list(distinct.values())
    for lower, name in distinct.items():
        values = [v for n, v in expected if n.lower() == lower]
        assert message.get_all(name) == values, name
        assert message.get_all(name.upper()) == values, name
        assert message[name] == values[0]
        assert message.to_dict()[name] == (values[0] if len(values) == 1 else values)
    names = [n.lower() for n, _ in expected]
    if "event" in names:
        assert message.is_event and message.name == message["Event"]
    elif "response" in names:
        assert message.is_response and message.response == message["Response"]


AST22_TCP = tcp_fixtures(AST22)
ALL_TCP = AST22_TCP + tcp_fixtures(AST13)


@pytest.mark.parametrize("path", AST22_TCP, ids=lambda p: p.name)
def test_parse_matches_reference_on_asterisk22_fixtures(path: Path) -> None:
    for conn, chunks in recv_chunks(path).items():
        stream = b"".join(chunks)
        banner, expected = reference_split(stream)
        parser = Parser()
        messages = parser.feed(stream)
        assert parser.banner == banner, conn
        assert len(messages) == len(expected), conn
        for message, (raw, headers) in zip(messages, expected):
            assert message.raw == raw
            assert message.offset == stream.index(raw, message.offset)
            assert_same_headers(message, headers)
        # parse() is the same thing in one call.
        assert amiwire.parse(stream) == messages


def fingerprint(messages: list[Message]) -> list[tuple[object, ...]]:
    return [(m.raw, m.offset, m.to_dict(), m.body, m.unparsed_lines) for m in messages]


def feed_all(chunks: list[bytes]) -> tuple[Parser, list[Message]]:
    parser = Parser()
    out: list[Message] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return parser, out


@pytest.mark.parametrize("path", ALL_TCP, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_chunking_never_changes_the_result(path: Path) -> None:
    rng = random.Random(path.name)
    for chunks in recv_chunks(path).values():
        stream = b"".join(chunks)
        whole_parser, whole = feed_all([stream])
        assert whole and whole_parser.buffered == 0
        expected = fingerprint(whole)
        # The real read boundaries, byte by byte, and random cuts.
        bytewise = [stream[i : i + 1] for i in range(len(stream))]
        cuts = sorted(rng.sample(range(1, len(stream)), min(40, len(stream) - 1)))
        random_chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)])]
        for variant in (chunks, bytewise, random_chunks):
            parser, got = feed_all(variant)
            assert fingerprint(got) == expected
            assert parser.banner == whole_parser.banner
            assert parser.offset == len(stream) and parser.buffered == 0


def test_load_capture_whole_and_in_256k_chunks(load_capture: bytes) -> None:
    messages = amiwire.parse(load_capture)
    assert len(messages) == 21829
    assert sum(m.is_event for m in messages) == 21527
    assert sum(m.is_response for m in messages) == 302
    assert sum(m.name == "VarSet" for m in messages) == 5700
    assert sum(m.name == "OriginateResponse" for m in messages) == 300
    size = 256 * 1024
    parser, chunked = feed_all([load_capture[i : i + size] for i in range(0, len(load_capture), size)])
    assert parser.banner == "Asterisk Call Manager/11.0.0" and parser.error_count == 0
    assert chunked == messages
    assert b"".join(m.raw for m in messages) == load_capture[len(b"Asterisk Call Manager/11.0.0\r\n") :]


def test_legacy_command_body_asterisk13() -> None:
    stream = b"".join(recv_chunks(AST13 / "tcp-command-legacy.jsonl")[0])
    messages = amiwire.parse(stream)
    follows = [m for m in messages if m.response == "Follows"]
    assert [m.action_id for m in follows[:3]] == ["cmd-1", "cmd-2", "cmd-3"]
    first = follows[0]
    assert first.body is not None
    assert first.body.startswith("Asterisk 13.38.3 built by root") and first.body.endswith(" UTC\n")
    assert "--END COMMAND--" not in first.body
    assert list(first) == ["Response", "Privilege", "ActionID"]
    assert follows[2].body == "6 active channels\n3 of 5000 max active calls ( 0.06% of capacity)\n25 calls processed\n"
    # The marker line ends each message (the blank line after it is dropped as a stray one).
    assert all(m.raw.endswith(b"\n--END COMMAND--\r\n") for m in follows)
    empty = [m for m in follows if m.action_id == "cmd-hangup-2"]
    assert len(empty) == 1 and empty[0].body == ""


def test_custom_end_markers() -> None:
    wire = b"Response: Follows\r\nActionID: 1\r\nline one\nline two\n--END SMS EVENT--\r\n\r\nEvent: Next\r\n\r\n"
    custom = amiwire.parse(wire, end_markers=["--END SMS EVENT--"])
    assert [m.body for m in custom] == ["line one\nline two\n", None]
    assert custom[1].name == "Next"
    # With the default marker the body runs on: nothing is complete yet.
    parser = Parser()
    assert parser.feed(wire) == []
    assert parser.buffered == len(wire)


# ---- limits: one bad message never costs the others ---------------------------------------------

GOOD_A = b"Event: A\r\n\r\n"
LONG = b"Event: Long\r\nData: " + b"y" * 100 + b"\r\nMore: z\r\n\r\n"
GOOD_C = b"Event: C\r\n\r\n"


def test_limit_error_carries_offsets_and_nothing_is_lost() -> None:
    parser = Parser(max_line=50)
    with pytest.raises(RemoteProtocolError) as info:
        parser.feed(GOOD_A + LONG + GOOD_C)
    err = info.value
    assert isinstance(err, amiwire.ProtocolError) and isinstance(err, amiwire.AMIError)
    assert err.kind == "line too long"
    assert err.message_offset == len(GOOD_A)
    assert err.offset == len(GOOD_A) + len(b"Event: Long\r\n") + 50
    assert f"byte {err.offset}" in str(err)
    assert parser.error_count == 1
    # The message decoded before the error, then the one after it.
    assert [m.name for m in parser.drain()] == ["A", "C"]
    assert parser.drain() == []
    assert [m.name for m in parser.feed(b"Event: D\r\n\r\n")] == ["D"]


def test_pending_messages_come_first_on_the_next_feed() -> None:
    parser = Parser(max_line=50)
    with pytest.raises(RemoteProtocolError):
        parser.feed(GOOD_A + LONG)
    assert [m.name for m in parser.feed(GOOD_C)] == ["A", "C"]


def test_each_error_is_raised_once_in_stream_order() -> None:
    parser = Parser(max_line=50)
    wire = GOOD_A + LONG + GOOD_C + LONG + b"Event: E\r\n\r\n"
    with pytest.raises(RemoteProtocolError) as first:
        parser.feed(wire)
    with pytest.raises(RemoteProtocolError) as second:
        parser.drain()
    assert first.value.message_offset == len(GOOD_A)
    assert second.value.message_offset == len(GOOD_A + LONG + GOOD_C)
    assert [m.name for m in parser.drain()] == ["A", "C", "E"]
    assert parser.error_count == 2


def test_skip_policy_counts_and_keeps_going() -> None:
    parser = Parser(max_line=50, errors="skip")
    assert [m.name for m in parser.feed(GOOD_A + LONG + GOOD_C + LONG)] == ["A", "C"]
    assert parser.error_count == 2
    assert [m.name for m in amiwire.parse(GOOD_A + LONG + GOOD_C, max_line=50, errors="skip")] == ["A", "C"]


def test_partial_line_over_the_limit_fails_before_it_ends() -> None:
    # The limit is enforced on what is buffered: a peer cannot make the parser hold a huge line.
    parser = Parser(max_line=50)
    assert [m.name for m in parser.feed(GOOD_A + b"Event: Long\r\nData: ")] == ["A"]
    with pytest.raises(RemoteProtocolError) as info:
        parser.feed(b"y" * 200)
    assert info.value.kind == "line too long"
    assert parser.buffered == 0
    assert [m.name for m in parser.feed(b"y" * 10_000 + b"\r\n\r\n" + GOOD_C)] == ["C"]


def test_too_many_lines_and_message_too_large() -> None:
    many = b"Event: Many\r\n" + b"".join(b"H%d: v\r\n" % i for i in range(10)) + b"\r\n"
    with pytest.raises(RemoteProtocolError) as info:
        amiwire.parse(GOOD_A + many + GOOD_C, max_lines=5)
    assert info.value.kind == "too many lines in one message"
    assert info.value.message_offset == len(GOOD_A)
    assert info.value.offset == len(GOOD_A) + len(b"Event: Many\r\n") + sum(len(b"H%d: v\r\n" % i) for i in range(4))
    with pytest.raises(RemoteProtocolError) as info:
        amiwire.parse(GOOD_A + many + GOOD_C, max_message=60)
    assert info.value.kind == "message too large"
    assert info.value.offset == len(GOOD_A) + 60
    assert [m.name for m in amiwire.parse(GOOD_A + many + GOOD_C, max_lines=5, errors="skip")] == ["A", "C"]


def test_bytearray_input() -> None:
    wire = bytearray(GOOD_A + GOOD_C)
    parser = Parser()
    got = parser.feed(wire)
    wire[:] = b"x" * len(wire)  # the parser copied what it needed
    assert [m.name for m in got] == ["A", "C"] and got[0].raw == GOOD_A
    assert amiwire.parse(bytearray(GOOD_A))[0].name == "A"


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="errors"):
        Parser(errors="ignore")
    with pytest.raises(OverflowError):
        Parser(max_line=-1)
    with pytest.raises(TypeError):
        Parser(end_markers="--END COMMAND--")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Parser().feed("text")  # type: ignore[arg-type]


def test_banner_handling() -> None:
    parser = Parser()
    assert parser.banner is None
    assert parser.feed(b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\n") == []
    assert parser.banner == "Asterisk Call Manager/11.0.0"
    assert [m.response for m in parser.feed(b"\r\n")] == ["Success"]
    # Without a banner the first line is a header.
    assert amiwire.parse(b"Response: Success\r\n\r\n")[0].response == "Success"
    no_banner = amiwire.parse(b"Just a line\r\nEvent: X\r\n\r\n", expect_banner=False)
    assert no_banner[0].unparsed_lines == ["Just a line"] and no_banner[0].name == "X"


# ---- encode_action: header injection is refused ----------------------------------------------


def test_encode_action_wire_form() -> None:
    assert amiwire.encode_action("Ping") == b"Action: Ping\r\n\r\n"
    assert amiwire.encode_action("Login", {"Username": "admin", "Secret": "pw"}, action_id="7") == (
        b"Action: Login\r\nActionID: 7\r\nUsername: admin\r\nSecret: pw\r\n\r\n"
    )
    wire = amiwire.encode_action(
        "Originate", [("Channel", "Local/100"), ("Variable", "A=1"), ("Variable", "B=2")], action_id="o-1"
    )
    assert wire == (
        b"Action: Originate\r\nActionID: o-1\r\nChannel: Local/100\r\nVariable: A=1\r\nVariable: B=2\r\n\r\n"
    )
    # What we write, we read back identically.
    (back,) = amiwire.parse(wire)
    assert back.get_all("variable") == ["A=1", "B=2"] and back.action_id == "o-1"
    # An ActionID among the headers is the action's own id.
    assert amiwire.encode_action("Ping", {"ActionID": "mine"}) == b"Action: Ping\r\nActionID: mine\r\n\r\n"
    assert amiwire.encode_action("Ping", {"ActionID": "mine"}, action_id="arg") == (
        b"Action: Ping\r\nActionID: arg\r\n\r\n"
    )
    assert "Zoë 東京".encode() in amiwire.encode_action("UserEvent", {"Name": "Zoë 東京"})


@pytest.mark.parametrize(
    ("name", "headers", "action_id"),
    [
        ("Login", {"Username": "admin\r\nAction: Originate"}, None),
        ("Login", {"Username": "admin\nAction: Originate"}, None),
        ("Login", {"Username": "admin\rx"}, None),
        ("Login", {"Username": "adm\x00in"}, None),
        ("Login", {"User\r\nname": "admin"}, None),
        ("Login", {"User:name": "admin"}, None),
        ("Login", {"": "admin"}, None),
        ("Ping\r\nAction: Originate", None, None),
        ("", None, None),
        ("Ping", None, "id\r\nAction: Originate"),
        ("Ping", None, "x" * 65),
        ("Setvar", {"Value": "v" * 1100}, None),
        ("Setvar", [("Variable", "x")] * 130, None),
    ],
)
def test_encode_action_refuses(name: str, headers: dict[str, str] | None, action_id: str | None) -> None:
    with pytest.raises(LocalProtocolError):
        amiwire.encode_action(name, headers, action_id=action_id)


def test_encode_action_error_never_shows_a_secret() -> None:
    secret = "Sup3r-S3cret-Value"
    for bad in (secret + "\r\nAction: Originate", secret + "\x00", "k" * 1100 + secret):
        with pytest.raises(LocalProtocolError) as info:
            amiwire.encode_action("Login", {"Username": "admin", "Secret": bad})
        assert isinstance(info.value, ValueError)
        assert secret not in str(info.value) and secret not in repr(info.value)
        assert "Secret" in str(info.value)
    with pytest.raises(LocalProtocolError) as info:
        amiwire.encode_action("Login", [("Username", "admin"), ("Key", secret + "\n")])
    assert secret not in str(info.value)


def test_encode_action_needs_string_pairs() -> None:
    with pytest.raises(TypeError):
        amiwire.encode_action("Ping", {"Count": 3})  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)):
        amiwire.encode_action("Ping", ["not a pair"])  # type: ignore[list-item]
