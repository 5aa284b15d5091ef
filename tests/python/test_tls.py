"""AMI over TLS against the simulator's generated certificate (valid for localhost and
127.0.0.1): verified with a CA file, refused clearly without it, or explicitly insecure."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

import amiwire
from amiwire.client import parse_url
from amiwire.testing import Simulator

FAST = {"timeout": 2.0, "connect_timeout": 2.0, "keepalive": None, "reconnect_initial": 0.05, "reconnect_max": 0.2}


@pytest.fixture(scope="module")
def tls_sim():
    with Simulator(tls=True) as sim:
        yield sim


@pytest.fixture
def ca_file(tls_sim, tmp_path: Path) -> str:
    path = tmp_path / "sim-ca.pem"
    path.write_text(tls_sim.tls_cert_pem)
    return str(path)


def test_simulator_advertises_a_tls_url(tls_sim):
    assert tls_sim.tls_cert_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert tls_sim.url == f"tls://{tls_sim.username}:{tls_sim.secret}@{tls_sim.host}:{tls_sim.port}"


@pytest.mark.parametrize("server_name", ["localhost", None])
async def test_verified_connection_with_ca_file(tls_sim, ca_file, server_name):
    # None: the name checked is the URL's host, 127.0.0.1, which the certificate also covers.
    async with amiwire.connect(tls_sim.url, ca_file=ca_file, server_name=server_name, **FAST) as ami:
        assert ami.state == "connected"
        assert (await ami.ping(timeout=1))["Ping"] == "Pong"
        assert ami.banner == "Asterisk Call Manager/11.0.0"
        reply = await ami.action("Setvar", Variable="TLS_UTF8", Value="東京 ✓")
        assert reply["Response"] == "Success"
        assert (await ami.action("Getvar", Variable="TLS_UTF8"))["Value"] == "東京 ✓"


async def test_wrong_server_name_is_refused(tls_sim, ca_file):
    with pytest.raises(amiwire.ConnectionLost, match="(?i)tls|certificate"):
        await amiwire.connect(tls_sim.url, ca_file=ca_file, server_name="pbx.example.com", **FAST)


async def test_untrusted_certificate_fails_clearly_and_fast(tls_sim):
    started = time.monotonic()
    with pytest.raises(amiwire.ConnectionLost, match="(?i)tls|certificate") as caught:
        await amiwire.connect(tls_sim.url, **FAST)
    assert time.monotonic() - started < FAST["connect_timeout"]
    assert tls_sim.secret not in str(caught.value)


async def test_insecure_skips_verification(tls_sim):
    async with amiwire.connect(f"{tls_sim.url}?insecure=1", **FAST) as ami:
        assert (await ami.ping(timeout=1))["Ping"] == "Pong"
    async with amiwire.connect(tls_sim.url, insecure=True, **FAST) as ami:
        assert ami.state == "connected"


async def test_plain_tcp_to_a_tls_port_does_not_hang(tls_sim):
    # The TLS server waits for a ClientHello, we wait for a banner: connect_timeout ends it,
    # however long the action deadline that bounds the login.
    quick = {**FAST, "timeout": 10.0, "connect_timeout": 0.5}
    started = time.monotonic()
    with pytest.raises(amiwire.ConnectionLost, match="no AMI banner .* tls://"):
        await amiwire.connect(host=tls_sim.host, port=tls_sim.port, username="admin", secret="x", tls=False, **quick)
    assert time.monotonic() - started < 0.5 + 0.5


async def test_tls_to_a_plain_port_says_so():
    with Simulator() as plain:
        with pytest.raises(amiwire.ConnectionLost, match="plain text: a plain AMI port needs tcp://"):
            await amiwire.connect(f"tls://admin:amiwire@{plain.host}:{plain.port}", insecure=True, **FAST)


def test_tls_url_parsing():
    assert parse_url("tls://ops:s%40cret@pbx.example.com") == {
        "host": "pbx.example.com",
        "port": 5039,
        "tls": True,
        "username": "ops",
        "secret": "s@cret",
    }
    opts = parse_url("tls://ops:pw@10.0.0.5:6039?insecure=yes&server_name=pbx.lan&ca_file=/etc/ca.pem&timeout=2.5")
    assert opts == {
        "host": "10.0.0.5",
        "port": 6039,
        "tls": True,
        "username": "ops",
        "secret": "pw",
        "insecure": True,
        "server_name": "pbx.lan",
        "ca_file": "/etc/ca.pem",
        "timeout": 2.5,
    }
    assert parse_url("tcp://h")["tls"] is False
    with pytest.raises(amiwire.LocalProtocolError, match="scheme"):
        parse_url("ssl://h")


# A certificate made the way most people make one for Asterisk: `openssl req -x509`, which
# marks it CA:TRUE. WebPKI alone refuses it as a server's own certificate (CaUsedAsEndEntity).
OPENSSL = shutil.which("openssl")


@pytest.fixture(scope="module")
def openssl_sim(tmp_path_factory):
    if OPENSSL is None:
        pytest.skip("the openssl command is not installed")
    out = tmp_path_factory.mktemp("openssl")
    cert, key = out / "asterisk.pem", out / "asterisk.key"
    subprocess.run(
        [OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=pbx.lab",
         "-addext", "subjectAltName=DNS:pbx.lab,DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    text = subprocess.run([OPENSSL, "x509", "-in", str(cert), "-noout", "-text"], check=True, capture_output=True)
    assert b"CA:TRUE" in text.stdout, "the test needs the CA:TRUE certificate openssl makes"
    with Simulator(tls_cert=cert.read_text(), tls_key=key.read_text()) as sim:
        yield sim, str(cert)


@pytest.mark.parametrize("server_name", [None, "pbx.lab"])
async def test_a_ca_true_certificate_given_as_ca_file_is_trusted(openssl_sim, server_name):
    sim, cert = openssl_sim
    async with amiwire.connect(sim.url, ca_file=cert, server_name=server_name, **FAST) as ami:
        assert (await ami.ping(timeout=1))["Ping"] == "Pong"


async def test_a_pinned_certificate_still_needs_the_right_name(openssl_sim):
    sim, cert = openssl_sim
    with pytest.raises(amiwire.ConnectionLost) as caught:
        await amiwire.connect(sim.url, ca_file=cert, server_name="pbx.example.com", **FAST)
    text = str(caught.value)
    assert "not valid for pbx.example.com" in text and "server_name" in text, text
    assert "(it names pbx.lab, localhost, 127.0.0.1)" in text, "the names the certificate carries are listed"
    assert "\n" not in text


async def test_a_ca_true_certificate_not_given_says_to_pass_it_as_ca_file(openssl_sim, ca_file):
    sim, _ = openssl_sim
    # No CA file, and a CA file holding another certificate (the generated simulator's).
    for extra in ({}, {"ca_file": ca_file}):
        with pytest.raises(amiwire.ConnectionLost) as caught:
            await amiwire.connect(sim.url, **extra, **FAST)
        text = str(caught.value)
        assert "ca_file" in text and "openssl req -x509" in text, text
        assert "OtherError" not in text and "\n" not in text
        assert sim.secret not in text


async def test_an_untrusted_certificate_says_what_to_do(tls_sim):
    # The simulator's generated certificate is an ordinary end-entity one: UnknownIssuer.
    with pytest.raises(amiwire.ConnectionLost) as caught:
        await amiwire.connect(tls_sim.url, **FAST)
    text = str(caught.value)
    assert "not signed by a CA this client trusts" in text and "ca_file" in text, text
    assert "\n" not in text
