"""A blocking twin of :class:`amiwire.Client` for scripts and notebooks.

It runs a private asyncio loop on a daemon thread and hands each call to it. It never calls
``asyncio.run`` or ``run_until_complete`` on the caller's thread, so it works where a loop is
already running (Jupyter), where those would fail.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future
from typing import Any, TypeVar

from ._core import Message
from .exceptions import ClientClosed
from .client import BATCH, Client, EventStream, HeaderValue, Overflow, connect

__all__ = ["BlockingClient", "BlockingEventStream", "connect_blocking"]

T = TypeVar("T")


class _LoopThread:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="amiwire-blocking", daemon=True)
        self.thread.start()

    def run(self, fn: Callable[..., Awaitable[T]], /, *args: Any, _wait: float | None = None, **kwargs: Any) -> T:
        """Calls ``fn(*args, **kwargs)`` on the loop thread (where the client's futures live)
        and waits for what it returns, at most ``_wait`` seconds."""
        if os.getpid() != self.pid:
            # The loop thread does not exist in a forked child: waiting on it would hang.
            raise ClientClosed("client used after fork(): connect again in the child")

        async def call() -> T:
            return await fn(*args, **kwargs)

        future: Future[T] = asyncio.run_coroutine_threadsafe(call(), self.loop)
        return future.result(_wait)

    def stop(self) -> None:
        if os.getpid() != self.pid:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


class BlockingEventStream:
    """A plain iterator over an :class:`~amiwire.client.EventStream`."""

    def __init__(self, runner: _LoopThread, stream: EventStream[Message]) -> None:
        self._runner = runner
        self._stream = stream
        self._batch: list[Message] = []
        self._index = 0

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        if self._index >= len(self._batch):
            try:
                self._batch = self._runner.run(self._stream.next_batch)
            except StopAsyncIteration:
                raise StopIteration from None
            self._index = 0
        event = self._batch[self._index]
        self._index += 1
        return event

    def next_batch(self, max: int = BATCH, timeout: float | None = None) -> list[Message]:
        """Every queued event (up to ``max``), waiting up to ``timeout`` seconds for one."""
        return self._runner.run(self._stream.next_batch, max, _wait=timeout)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> BlockingEventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dropped(self) -> int:
        return self._stream.dropped

    @property
    def gaps(self) -> int:
        return self._stream.gaps

    def __repr__(self) -> str:
        return f"<amiwire.BlockingEventStream {self._stream._summary()}>"


class BlockingClient:
    """The same methods as :class:`~amiwire.Client`, blocking. Create with
    :func:`connect_blocking`; close with ``close()`` or a ``with`` block."""

    def __init__(self, runner: _LoopThread, client: Client) -> None:
        self._runner = runner
        self._client = client

    def action(
        self,
        name: str,
        /,
        headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] = (),
        **kwargs: Any,
    ) -> Message:
        return self._runner.run(self._client.action, name, headers, **kwargs)

    def action_list(
        self,
        name: str,
        /,
        headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] = (),
        **kwargs: Any,
    ) -> list[Message]:
        return self._runner.run(self._client.action_list, name, headers, **kwargs)

    def ping(self, *, timeout: float | None = None) -> Message:
        return self._runner.run(self._client.ping, timeout=timeout)

    def command(self, command: str, *, timeout: float | None = None) -> str:
        return self._runner.run(self._client.command, command, timeout=timeout)

    def originate(self, channel: str, **kwargs: Any) -> Message:
        return self._runner.run(self._client.originate, channel, **kwargs)

    def set_event_mask(self, mask: str, *, timeout: float | None = None) -> Message:
        return self._runner.run(self._client.set_event_mask, mask, timeout=timeout)

    def add_filter(self, filter: str | None = None, **kwargs: Any) -> Message:
        return self._runner.run(self._client.add_filter, filter, **kwargs)

    def events(self, *patterns: str, maxsize: int = 10_000, overflow: Overflow = "drop_oldest", **filters: Any) -> BlockingEventStream:
        async def make() -> EventStream[Message]:
            return self._client.events(*patterns, maxsize=maxsize, overflow=overflow, **filters)

        return BlockingEventStream(self._runner, self._runner.run(make))

    def close(self) -> None:
        try:
            self._runner.run(self._client.close, _wait=10)
        finally:
            self._runner.stop()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        return self._client.stats()

    @property
    def state(self) -> str:
        return self._client.state

    @property
    def banner(self) -> str | None:
        return self._client.banner

    @property
    def ami_version(self) -> str | None:
        return self._client.ami_version

    @property
    def asterisk_version(self) -> str | None:
        return self._client.asterisk_version

    def __repr__(self) -> str:
        return f"<amiwire.BlockingClient {self.state} {self.banner or ''}>"


def connect_blocking(url: str | None = None, **options: Any) -> BlockingClient:
    """Like :func:`amiwire.connect`, but returns a :class:`BlockingClient` once logged in."""
    runner = _LoopThread()

    async def open_client() -> Client:
        return await connect(url, **options)

    try:
        client = runner.run(open_client)
    except BaseException:
        runner.stop()
        raise
    return BlockingClient(runner, client)
