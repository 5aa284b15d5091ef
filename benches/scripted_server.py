"""The AMI servers the client benchmarks run in a process of their own, by mode:

    python benches/scripted_server.py flood SECONDS
    python benches/scripted_server.py paced CAPTURE REPEATS RATE

Both print their port, accept one client, send a banner and answer every action with a
success (list actions with an empty list, Ping with its Pong). ``flood`` writes one event
without pause for SECONDS once the login's CoreSettings arrived, and at Logoff prints when
each Ping arrived (``ActionID time``). ``paced`` sends the events of the capture file
REPEATS times at RATE events a second, in whole messages every millisecond, once a UserEvent
arrived.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable

LISTS = {b"CoreShowChannels": b"CoreShowChannelsComplete", b"BridgeList": b"BridgeListComplete"}


def serve(conn: socket.socket, lock: threading.Lock, on_action: Callable[[bytes, bytes], None]) -> None:
    """Hands each action's name and ActionID to `on_action` as it arrives, then answers it
    (under `lock`, so that a reply never splits what another thread writes); returns at
    Logoff or EOF."""
    buf = b""
    while True:
        data = conn.recv(65536)
        if not data:
            return
        buf += data
        while b"\r\n\r\n" in buf:
            block, buf = buf.split(b"\r\n\r\n", 1)
            lines = dict(line.split(b": ", 1) for line in block.split(b"\r\n") if b": " in line)
            action, aid = lines.get(b"Action", b""), lines.get(b"ActionID", b"")
            on_action(action, aid)
            reply = b"Response: Success\r\nActionID: " + aid + b"\r\n"
            if action == b"Ping":
                reply += b"Ping: Pong\r\n"
            if action in LISTS:
                reply += (
                    b"EventList: start\r\n\r\nEvent: " + LISTS[action] + b"\r\nActionID: " + aid
                    + b"\r\nEventList: Complete\r\nListItems: 0\r\n"
                )
            with lock:
                conn.sendall(reply + b"\r\n")
            if action == b"Logoff":
                return


def flood(conn: socket.socket, lock: threading.Lock, seconds: float) -> None:
    event = (
        b"Event: Newexten\r\nPrivilege: dialplan,all\r\nChannel: PJSIP/100-00000001\r\n"
        b"Context: default\r\nExtension: 600\r\nApplication: Wait\r\nAppData: 10\r\n\r\n"
    )
    chunk = event * 8000
    arrivals: list[tuple[str, float]] = []

    def write() -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            with lock:
                conn.sendall(chunk)

    def on_action(action: bytes, aid: bytes) -> None:
        if action == b"Ping":
            arrivals.append((aid.decode(), time.monotonic()))
        if action == b"CoreSettings":
            threading.Thread(target=write, daemon=True).start()

    serve(conn, lock, on_action)
    for aid, at in arrivals:
        print(aid, at, flush=True)


def paced(conn: socket.socket, lock: threading.Lock, capture: str, repeats: int, rate: float) -> None:
    with open(capture, "rb") as f:
        raw = f.read()
    messages = [m + b"\r\n\r\n" for m in raw.split(b"\r\n\r\n") if m.startswith(b"Event:")]

    def write() -> None:
        per_ms = max(1, int(rate / 1000))
        start = time.monotonic()
        sent = 0
        for _ in range(repeats):
            for at in range(0, len(messages), per_ms):
                with lock:
                    conn.sendall(b"".join(messages[at : at + per_ms]))
                sent += per_ms
                ahead = start + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)

    def on_action(action: bytes, aid: bytes) -> None:
        if action == b"UserEvent":
            threading.Thread(target=write, daemon=True).start()

    serve(conn, lock, on_action)


def main() -> None:
    mode, *args = sys.argv[1:]
    server = socket.create_server(("127.0.0.1", 0))
    print(server.getsockname()[1], flush=True)
    conn, _ = server.accept()
    conn.sendall(b"Asterisk Call Manager/11.0.0\r\n")
    lock = threading.Lock()
    if mode == "flood":
        flood(conn, lock, float(args[0]))
    else:
        paced(conn, lock, args[0], int(args[1]), float(args[2]))


if __name__ == "__main__":
    main()
