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
