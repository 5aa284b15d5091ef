"""Shared helpers: the read-only captures in ``<repo>/../shared/fixtures``."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
AST22 = FIXTURES / "asterisk-22"
AST13 = FIXTURES / "asterisk-13"
LOAD_CAPTURE = AST22 / "event-stream-load.raw"


def tcp_fixtures(directory: Path) -> list[Path]:
    paths = sorted(directory.glob("tcp-*.jsonl"))
    assert paths, f"no fixtures in {directory} (is ../shared beside the repository?)"
    return paths


def recv_chunks(path: Path) -> dict[int, list[bytes]]:
    """Per connection, the recv() chunks as read: the real read boundaries."""
    conns: dict[int, list[bytes]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        if record["dir"] != "recv":
            continue
        chunks = conns.setdefault(record["conn"], [])
        if "data_b64" in record:
            chunks.append(base64.b64decode(record["data_b64"]))
        elif "data" in record:
            chunks.append(record["data"].encode("utf-8"))
    return conns


@pytest.fixture(scope="session")
def load_capture() -> bytes:
    return LOAD_CAPTURE.read_bytes()
