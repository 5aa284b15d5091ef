"""``record=``: the transcript masks every credential header in what is sent and received."""

from __future__ import annotations

import asyncio
import json

import amiwire
from amiwire.testing import Simulator


async def test_echoed_credentials_are_masked_in_both_directions(tmp_path):
    path = tmp_path / "session.jsonl"
    with Simulator() as sim:
        secret = sim.secret
        async with amiwire.connect(sim.url, record=str(path), timeout=5) as ami:
            stream = ami.events("UserEvent")
            # The simulator, like Asterisk, sends a UserEvent's headers back to every session.
            await ami.action("UserEvent", UserEvent="Leak", Password="pw-sent", Md5Cred="md5-sent")
            echoed = await asyncio.wait_for(anext(stream), 5)
            assert echoed["Password"] == "pw-sent", "the data itself is untouched"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    sent = "".join(r.get("data", "") for r in records if r["dir"] == "send")
    received = "".join(r.get("data", "") for r in records if r["dir"] == "recv")
    for leaked in ("pw-sent", "md5-sent", secret):
        assert leaked not in sent and leaked not in received, leaked
    assert "Password: ********\r\nMd5Cred: ********\r\n" in sent
    assert "Event: UserEvent\r\n" in received and "Password: ********\r\n" in received
