"""`python -m amiwire ...` against the simulator, as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable

from amiwire.testing import Simulator


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "amiwire", *args], capture_output=True, text=True, timeout=timeout)


def test_action_prints_the_response_and_list_items_as_json_lines():
    with Simulator() as sim:
        done = run("action", sim.url, "ShowDialPlan", "Context=test", "Extension=100")
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        assert lines[0]["Response"] == "Success" and lines[0]["EventList"] == "start"
        assert {line["Event"] for line in lines[1:-1]} == {"ListDialplan"}
        assert lines[-1]["Event"] == "ShowDialPlanComplete"
        assert int(lines[-1]["ListItems"]) == len(lines) - 2

        failed = run("action", sim.url, "Getvar")
        assert failed.returncode == 1
        assert json.loads(failed.stdout)["Message"] == "No variable specified"


def test_command_prints_cli_output_exactly():
    with Simulator() as sim:
        done = run("command", sim.url, "core", "show", "version")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Asterisk 22.10.1 built by") and done.stdout.endswith("\n")


def feed_until_exit(proc: subprocess.Popen[str], emit: Callable[[], None]) -> tuple[str, str]:
    """Emits events until `proc` (a command tailing them) exits; its stdout and stderr."""
    try:
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            emit()
            time.sleep(0.1)
        return proc.communicate(timeout=10)
    finally:
        proc.kill()


def test_events_tails_matching_events_as_json_lines():
    with Simulator() as sim:
        proc = subprocess.Popen(
            [sys.executable, "-m", "amiwire", "events", sim.url, "UserEvent", "--where", "UserEvent=Tail*", "--count", "1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def emit() -> None:
            sim.emit_event("UserEvent", headers=[("UserEvent", "Other")])
            sim.emit_event("UserEvent", headers=[("UserEvent", "TailMe"), ("N", "1")])

        out, err = feed_until_exit(proc, emit)
        assert proc.returncode == 0, err
        event = json.loads(out.splitlines()[0])
        assert event["Event"] == "UserEvent" and event["UserEvent"] == "TailMe" and event["N"] == "1"


def test_events_into_a_pipe_that_closes_ends_quietly():
    with Simulator() as sim:
        proc = subprocess.Popen(
            f"'{sys.executable}' -m amiwire events {sim.url} UserEvent | head -n 2",
            shell=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

        def emit() -> None:
            for n in range(20):
                sim.emit_event("UserEvent", headers=[("UserEvent", "Flood"), ("N", str(n))])

        out, err = feed_until_exit(proc, emit)
        assert len(out.splitlines()) == 2
        assert "Traceback" not in err and "BrokenPipe" not in err, err
        deadline = time.monotonic() + 5
        while sim.session_count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sim.session_count == 0, "the connection was closed"


def test_errors_are_one_line_not_a_traceback():
    with Simulator(auth_fail_delay=0.05) as sim:
        refused = run("action", f"tcp://admin:wrong-secret@{sim.host}:{sim.port}", "Ping")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("amiwire: authentication failed") and "Traceback" not in refused.stderr
    assert "wrong-secret" not in refused.stderr
    unreachable = run("command", "tcp://admin:x@127.0.0.1:1", "core", "show", "version")
    assert unreachable.returncode == 1
    assert unreachable.stderr.startswith("amiwire: connection lost") and unreachable.stderr.count("\n") == 1


def test_secret_from_the_environment_stays_out_of_the_url():
    with Simulator() as sim:
        url = f"tcp://admin@{sim.host}:{sim.port}"
        env_run = subprocess.run(
            [sys.executable, "-m", "amiwire", "action", url, "Ping"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**__import__("os").environ, "AMIWIRE_SECRET": "amiwire"},
        )
        assert env_run.returncode == 0, env_run.stderr
        assert json.loads(env_run.stdout)["Ping"] == "Pong"


def test_version_and_help_without_markup_and_with_the_url_forms():
    import amiwire

    version = run("--version")
    assert version.returncode == 0 and version.stdout == f"amiwire {amiwire.__version__}\n"
    for args in (["-h"], ["events", "-h"], ["action", "-h"], ["command", "-h"]):
        shown = run(*args)
        assert shown.returncode == 0
        assert "``" not in shown.stdout and ":class:" not in shown.stdout
        for form in ("tcp://user:secret@host:5038", "tls://user:secret@host:5039", "http://user:secret@host:8088/rawman"):
            assert form in shown.stdout, (args, shown.stdout)


def test_usage_mistakes_are_one_line_not_a_traceback():
    mistakes = {
        ("action", "tcp://h", "Login", "Secret:kwvzjqpx"): "argument Key=Value: expected NAME=VALUE",
        ("events", "tcp://h", "--where", "Context"): "argument --where: expected NAME=VALUE",
        ("simulate", "--port", "99999"): "a port is a number from 0 to 65535, not '99999'",
        ("command", "tcp://admin:x@h:99999", "core", "show", "version"): "the port must be a number from 1 to 65535",
        ("action", "tcp://h?tiemout=5", "Ping"): "unknown option 'tiemout'",
    }
    for args, text in mistakes.items():
        done = run(*args)
        assert done.returncode in (1, 2) and done.stdout == ""
        assert done.stderr.count("\n") == 1 and text in done.stderr, done.stderr
        assert "kwvzjqpx" not in done.stderr


def test_an_unknown_cli_command_shows_asterisks_own_text():
    for style in ("output", "legacy"):  # Asterisk 14+, and 13's Response: Follows
        with Simulator(command_style=style) as sim:
            done = run("command", sim.url, "core", "show", "nonsense")
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith("No such command 'core show nonsense'"), (style, done.stderr)
        assert "Command output follows" not in done.stderr


def test_simulate_serves_http_too():
    import asyncio
    import re

    import amiwire

    with subprocess.Popen(
        [sys.executable, "-m", "amiwire", "simulate", "--port", "0", "--http"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        proc.stdout.readline()
        found = re.match(r"AMI over HTTP on http://127\.0\.0\.1:(\d+)/rawman", proc.stdout.readline())
        assert found, "no HTTP address printed"

        async def ping() -> str:
            url = f"http://admin:amiwire@127.0.0.1:{found.group(1)}/rawman"
            async with amiwire.connect(url, events="off") as ami:
                return (await ami.ping())["Ping"]

        try:
            assert asyncio.run(ping()) == "Pong"
        finally:
            proc.terminate()


def test_ctrl_c_stops_a_simulator_streaming_to_a_client_that_does_not_read():
    import signal
    import socket

    with subprocess.Popen(
        [sys.executable, "-m", "amiwire", "simulate", "--port", "0", "--firehose-count", "100000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            port = int(proc.stdout.readline().rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port)) as client:
                client.sendall(b"Action: Login\r\nUsername: admin\r\nSecret: amiwire\r\n\r\n")
                time.sleep(0.5)  # the stream fills the socket buffers; the client never reads
                proc.send_signal(signal.SIGINT)
                # Before, the process waited for the stream to end, which it never did.
                assert proc.wait(timeout=10) == 0
        finally:
            proc.kill()
