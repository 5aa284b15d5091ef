"""amiwire.testing.Simulator and the ``simulate`` CLI, driven with plain sockets."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time

import pytest

from amiwire.testing import Simulator, ami_simulator  # noqa: F401  (the fixture)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


class RawClient:
    """Blocking AMI client: sends action text, returns messages as dicts (first value wins)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.buf = b""
        while not self.buf.startswith(BANNER):
            self._fill()
        self.buf = self.buf[len(BANNER) :]

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        self.buf += data

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def next(self) -> dict[str, str]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        out: dict[str, str] = {}
        for line in raw.decode().split("\r\n"):
            key, _, value = line.partition(": ")
            out.setdefault(key, value)
        return out

    def reply(self, action_id: str) -> dict[str, str]:
        while True:
            m = self.next()
            if "Response" in m and m.get("ActionID") == action_id:
                return m

    def login(self, user: str, secret: str, events: str = "off") -> dict[str, str]:
        self.send(
            f"Action: Login\r\nActionID: l\r\nUsername: {user}\r\nSecret: {secret}\r\n"
            f"Events: {events}\r\n\r\n"
        )
        return self.reply("l")

    def close(self) -> None:
        self.sock.close()


def test_sync_context_manager_exposes_where_and_who() -> None:
    with Simulator() as sim:
        assert sim.host == "127.0.0.1"
        assert sim.port > 0
        assert sim.users["admin"] == "amiwire"
        assert sim.users["reader"] == "readonly"
        assert sim.url == f"tcp://admin:amiwire@127.0.0.1:{sim.port}"
        c = RawClient(sim.host, sim.port)
        assert c.login("admin", "amiwire")["Message"] == "Authentication accepted"
        c.send("Action: Ping\r\nActionID: p\r\n\r\n")
        assert c.reply("p")["Ping"] == "Pong"
        assert sim.session_count == 1
        c.close()
    assert not sim.running
    with pytest.raises(RuntimeError):
        _ = sim.port
    sim.close()  # idempotent


async def test_async_context_manager_and_emit_event() -> None:
    async with Simulator(users=[("ops", "pw", "all", "all")]) as sim:
        assert sim.url == f"tcp://ops:pw@127.0.0.1:{sim.port}"
        reader, writer = await asyncio.open_connection(sim.host, sim.port)
        assert await reader.readuntil(b"\r\n") == BANNER
        writer.write(
            b"Action: Login\r\nActionID: l\r\nUsername: ops\r\nSecret: pw\r\nEvents: user\r\n\r\n"
        )
        reply = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"Authentication accepted" in reply
        # Wait until the session is registered for events, then broadcast one.
        for _ in range(100):
            if sim.session_count:
                break
            await asyncio.sleep(0.01)
        sim.emit_event("UserEvent", {"UserEvent": "Hello", "X": "1"})
        event = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert event == (
            b"Event: UserEvent\r\nPrivilege: user,all\r\nUserEvent: Hello\r\nX: 1\r\n\r\n"
        )
        writer.close()
        await writer.wait_closed()


def test_fixture_gives_a_running_simulator(ami_simulator: Simulator) -> None:  # noqa: F811
    c = RawClient(ami_simulator.host, ami_simulator.port)
    started = time.monotonic()
    assert c.login("admin", "wrong")["Message"] == "Authentication failed"
    assert time.monotonic() - started < 0.9, "the fixture uses a short auth_fail_delay"
    c.close()


def test_the_simulator_outside_pytest_does_not_import_pytest() -> None:
    code = (
        "import sys\n"
        "from amiwire.testing import Simulator\n"
        "with Simulator() as sim: pass\n"
        "import amiwire.testing as t\n"
        "print('pytest' in sys.modules, hasattr(t, 'ami_simulator'), t.__all__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False False ['Simulator', 'SimulatorOptions']", done.stderr


def test_faults_and_calls_are_configurable() -> None:
    with Simulator(faults=["ignore_pings"], time_scale=0.05) as sim:
        c = RawClient(sim.host, sim.port)
        c.login("admin", "amiwire", events="call")
        c.send(
            "Action: Ping\r\nActionID: p\r\n\r\n"
            "Action: Originate\r\nActionID: o\r\nChannel: Local/100@test\r\n"
            "Application: Wait\r\nData: 1\r\nAsync: true\r\n\r\n"
        )
        first = c.reply("o")
        assert first["Message"] == "Originate successfully queued"
        while True:
            m = c.next()
            if m.get("Event") == "OriginateResponse":
                break
        assert m["ActionID"] == "o"
        assert m["Reason"] == "4"
        c.close()


def test_load_mode_keeps_calls_going_and_counts_them_across_a_forced_disconnect() -> None:
    with Simulator(load_calls=20, call_duration=1.0, time_scale=0.2) as sim:
        deadline = time.monotonic() + 10
        while sim.load_calls_ended < 20:
            assert time.monotonic() < deadline, (sim.load_calls_started, sim.load_calls_ended)
            started, ended = sim.load_calls_started, sim.load_calls_ended
            assert started - ended <= 20
            time.sleep(0.05)
        assert sim.channel_count > 0
        c = RawClient(sim.host, sim.port)
        c.login("admin", "amiwire", events="off")
        c.send("Action: BridgeList\r\nActionID: b\r\n\r\n")
        assert c.reply("b")["Response"] == "Success"
        sim.disconnect_all()
        with pytest.raises(ConnectionError):
            while True:
                c.next()
        c.close()
    with Simulator() as sim:
        assert (sim.load_calls_started, sim.load_calls_ended) == (0, 0)
    with pytest.raises(ValueError, match="call_duration"):
        Simulator(load_calls=1, call_duration=-1).start()


def test_bad_options_raise_value_error() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        Simulator(faults=["nope"]).start()
    with pytest.raises(ValueError, match="command_style"):
        Simulator(command_style="weird").start()
    with pytest.raises(ValueError, match="tls_cert and tls_key"):
        Simulator(tls_cert="x").start()


def test_tls_simulator_reports_its_certificate() -> None:
    with Simulator(tls=True) as sim:
        pem = sim.tls_cert_pem
        assert pem is not None and pem.startswith("-----BEGIN CERTIFICATE-----")
        assert sim.url.startswith("tls://admin:amiwire@127.0.0.1:")


def test_cli_simulate_prints_address_and_users_and_stops_on_sigterm() -> None:
    code = (
        "import argparse, sys\n"
        "from amiwire import _cli_sim\n"
        "p = argparse.ArgumentParser(prog='amiwire')\n"
        "sub = p.add_subparsers()\n"
        "_cli_sim.add_parser(sub)\n"
        "args = p.parse_args(['simulate', '--port', '0'])\n"
        "sys.exit(args.func(args))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        m = re.match(r"AMI simulator listening on tcp://127\.0\.0\.1:(\d+)$", first.strip())
        assert m, first
        users = [proc.stdout.readline().strip() for _ in range(3)]
        assert users[0] == "user 'admin' secret 'amiwire'"
        c = RawClient("127.0.0.1", int(m.group(1)))
        assert c.login("reader", "readonly")["Message"] == "Authentication accepted"
        c.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"


def test_option_plumbing_firehose_legacy_dialplan_replay() -> None:
    with Simulator(firehose_count=10, firehose_repeats=2, command_style="legacy") as sim:
        c = RawClient(sim.host, sim.port)
        c.login("admin", "amiwire")
        names = {c.next()["Event"] for _ in range(20)}
        assert names == {"Newexten", "VarSet"}
        c.send("Action: Command\r\nActionID: v\r\nCommand: core show version\r\n\r\n")
        while b"--END COMMAND--\r\n\r\n" not in c.buf:
            c._fill()
        assert c.buf.startswith(b"Response: Follows\r\nPrivilege: Command\r\nActionID: v\r\n")
        c.close()
    plan = "[lab]\nexten => 7,1,Answer()\n same => n,Hangup()\n"
    with Simulator(dialplan=plan) as sim:
        c = RawClient(sim.host, sim.port)
        c.login("admin", "amiwire")
        c.send("Action: ShowDialPlan\r\nActionID: d\r\n\r\n")
        assert c.reply("d")["EventList"] == "start"
        c.close()
    with Simulator(replay=str(FIXTURES / "asterisk-22" / "tcp-login-logoff.jsonl")) as sim:
        c = RawClient(sim.host, sim.port)
        c.send("Action: Login\r\nActionID: login-1\r\nUsername: admin\r\nSecret: amiwire\r\n\r\n")
        assert c.reply("login-1")["Message"] == "Authentication accepted"
        c.close()


def test_a_client_that_stops_reading_costs_bounded_memory_and_the_drops_are_counted() -> None:
    emitted = 300_000  # about three times what 4 MB socket buffers and the queue hold
    with Simulator() as sim:
        client = RawClient(sim.host, sim.port)
        assert client.login("admin", "amiwire", events="on")["Response"] == "Success"
        while client.next().get("Event") != "SuccessfulAuth":
            pass
        for n in range(emitted):  # the client reads nothing meanwhile
            sim.emit_event("Tick", {"N": str(n)})
        dropped = sim.events_dropped
        assert dropped > 0
        # Everything not counted as dropped arrives, in order; the queue keeps the oldest.
        client.sock.settimeout(1.0)
        data = client.buf
        try:
            while chunk := client.sock.recv(1 << 20):
                data += chunk
        except TimeoutError:
            pass
        numbers = [int(n) for n in re.findall(rb"Event: Tick\r\nPrivilege: user,all\r\nN: (\d+)\r\n", data)]
        assert len(numbers) + dropped == emitted
        assert numbers == sorted(numbers) and numbers[0] == 0
        assert sim.events_dropped == dropped
        client.close()


def test_simulator_options_name_every_keyword_of_the_core_simulator() -> None:
    import inspect

    from amiwire import _core
    from amiwire.testing import SimulatorOptions

    assert set(SimulatorOptions.__annotations__) == set(inspect.signature(_core.Simulator).parameters)
