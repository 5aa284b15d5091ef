"""URLs and connect() arguments: every mistake an amiwire error, named, with no credentials."""

from __future__ import annotations

import pytest

import amiwire
from amiwire.client import parse_url
from amiwire.testing import Simulator

# Credentials whose pieces would be recognisable in an error message.
USER, SECRET = "zorrok", "kwvz/jqpx"


@pytest.mark.parametrize(
    "url",
    [
        f"tcp://{USER}:{SECRET}@h:5038",  # '/' unencoded: the secret's tail becomes the path
        f"tcp://{USER}:kwvz?jqpx@h:5038",
        f"tcp://{USER}:kwvz#jqpx@h:5038",
        f"http://{USER}:{SECRET}@h:8088/rawman",
        f"tcp://{USER}:kwvzjqpx@h:99999",
        f"tcp://{USER}:kwvzjqpx@h:port",
        f"tcp://{USER}:kwvzjqpx@[::1",
        f"{USER}:kwvzjqpx@h:5038",
        f"ssh://{USER}:kwvzjqpx@h",
        f"tcp://{USER}:kwvzjqpx@h/path",
        f"http://{USER}:kwvzjqpx@h:8088/nope",
        f"tcp://{USER}:kwvzjqpx@h?timeout=soon",
    ],
)
def test_url_mistakes_are_one_line_amiwire_errors_without_credentials(url: str):
    with pytest.raises(amiwire.AMIError) as info:
        parse_url(url)
    assert isinstance(info.value, ValueError)  # what code written for the old errors catches
    text = str(info.value)
    assert "\n" not in text and text.startswith("bad AMI URL: ")
    for piece in (USER, "kwvz", "jqpx"):
        assert piece not in text, text


def test_the_cli_reports_a_bad_url_in_one_line():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "amiwire", "command", f"tcp://{USER}:{SECRET}@h:5038", "core", "show", "version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "kwvz" not in done.stderr and "jqpx" not in done.stderr


def test_unknown_query_options_are_refused_by_name():
    with pytest.raises(amiwire.LocalProtocolError, match="unknown option 'tiemout'"):
        parse_url("tcp://a:b@h?tiemout=5")
    with pytest.raises(amiwire.LocalProtocolError, match="unknown option 'secret'"):
        parse_url("tcp://h?secret=x")


def test_query_options_are_converted():
    assert parse_url("tcp://h?insecure&reconnect=off&list_limit=7&keepalive=2.5&auth=md5") == {
        "host": "h",
        "port": 5038,
        "tls": False,
        "insecure": True,
        "reconnect": False,
        "list_limit": 7,
        "keepalive": 2.5,
        "auth": "md5",
    }


@pytest.mark.parametrize("secret", ["p#ss", "a/b", "wh?t", "x@y", "c:d", "100%", "sp ace", "ü/#?@:%"])
def test_simulator_url_encodes_credentials_and_parse_url_decodes_them(secret: str):
    user = "ops@" + secret
    with Simulator(users=[(user, secret, "all", "all")]) as sim:
        assert parse_url(sim.url)["username"] == user
        assert parse_url(sim.url)["secret"] == secret
        with amiwire.connect_blocking(sim.url, reconnect=False) as ami:
            assert ami.ping()["Ping"] == "Pong"


def test_simulator_http_url_encodes_credentials():
    with Simulator(users=[("ops", "a/b#c", "all", "all")], http=True) as sim:
        opts = parse_url(sim.http_url("rawman"))
        assert opts["secret"] == "a/b#c" and opts["http_endpoint"] == "rawman"


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("timeout", float("nan")),
        ("timeout", -1.0),
        ("connect_timeout", float("inf")),
        ("keepalive", -5.0),
        ("reconnect_initial", float("nan")),
        ("reconnect_max", -0.1),
        ("port", -1),
        ("port", 70000),
        ("reconnect_attempts", -1),
        ("list_limit", 0),
    ],
)
def test_out_of_range_numbers_are_refused_by_name(keyword: str, value: float):
    with pytest.raises(amiwire.LocalProtocolError, match=f"^{keyword} must be"):
        amiwire.connect("tcp://h", **{keyword: value})


def test_out_of_range_numbers_in_a_url_are_refused_by_name():
    with pytest.raises(amiwire.LocalProtocolError, match="^timeout must be"):
        amiwire.connect("tcp://h?timeout=nan")
    with pytest.raises(amiwire.LocalProtocolError, match="^http_timeout must be"):
        amiwire.connect("http://h/rawman?http_timeout=-3")


async def test_a_negative_maxsize_is_refused_by_name():
    async with Simulator() as sim, amiwire.connect(sim.url) as ami:
        with pytest.raises(amiwire.LocalProtocolError, match="maxsize must be"):
            ami.events("Hangup", maxsize=-1)
        with pytest.raises(amiwire.LocalProtocolError, match="maxsize must be"):
            ami.events("Hangup", maxsize=0)


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("port", -1), ("port", 70000), ("time_scale", -1.0), ("auth_fail_delay", float("nan")), ("firehose_count", -5)],
)
def test_the_simulator_refuses_out_of_range_numbers_by_name(keyword: str, value: float):
    with pytest.raises(ValueError, match=f"^{keyword} must be"):
        Simulator(**{keyword: value})


def test_the_live_state_can_be_asked_for_in_the_url():
    assert parse_url("tcp://a:b@h?live")["live"] is True
    assert parse_url("tcp://a:b@h?live=1&live_variables=yes")["live_variables"] is True
    assert parse_url("tcp://a:b@h?live=0")["live"] is False
