"""A blocking twin of :class:`amiwire.Client` for scripts and notebooks.

It runs a private asyncio loop on a daemon thread and hands each call to it. It never calls
``asyncio.run`` or ``run_until_complete`` on the caller's thread, so it works where a loop is
already running (Jupyter), where those would fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import CancelledError, Future
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from ._core import LiveBridge, LiveCall, LiveChannel, LiveMap, LiveSnapshot, Message
from ._schema import Action, HeaderValue, ListAction
from .client import BATCH, Client, EventStream, HeaderFilter, Overflow, connect
from .events import OriginateResponse
from .exceptions import ClientClosed

__all__ = ["BlockingClient", "BlockingEventStream", "connect_blocking"]

T = TypeVar("T")
_M = TypeVar("_M", bound=Message)
P = ParamSpec("P")


def _same_options_as(
    async_twin: Callable[P, object],
) -> Callable[[Callable[..., BlockingClient]], Callable[P, BlockingClient]]:
    """Gives the decorated function the signature of ``async_twin`` for type checkers and
    ``help()``, so that both accept exactly the same arguments without spelling them twice."""

    def typed(fn: Callable[..., BlockingClient]) -> Callable[P, BlockingClient]:
        _borrow_signature(fn, async_twin)
        return fn

    return typed


def _blocks_like(
    async_method: Callable[Concatenate[Client, P], Awaitable[T]],
) -> Callable[[Callable[..., T]], Callable[Concatenate[BlockingClient, P], T]]:
    """Types the decorated method with the parameters of the :class:`Client` method it runs,
    so that a keyword added, renamed or refused there is the same here, with no copy to drift."""

    def typed(fn: Callable[..., T]) -> Callable[Concatenate[BlockingClient, P], T]:
        _borrow_signature(fn, async_method)
        return fn

    return typed


def _borrow_signature(fn: Callable[..., object], source: Callable[..., object]) -> None:
    """``help(fn)`` shows ``source``'s parameters with ``fn``'s own return type."""
    returns = inspect.signature(fn).return_annotation
    fn.__signature__ = inspect.signature(source).replace(return_annotation=returns)  # type: ignore[attr-defined]


class _LoopThread:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.stopped = False
        self.thread = threading.Thread(target=self.loop.run_forever, name="amiwire-blocking", daemon=True)
        self.thread.start()

    def submit(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> Future[T]:
        """Calls ``fn(*args, **kwargs)`` on the loop thread (where the client's futures live:
        an action method needs the running loop) and awaits what it returns there."""
        if os.getpid() != self.pid:
            # The loop thread does not exist in a forked child: waiting on it would hang.
            raise ClientClosed("client used after fork(): connect again in the child")
        if self.stopped:
            raise ClientClosed("the client is closed")

        async def call() -> T:
            return await fn(*args, **kwargs)

        coroutine = call()
        try:
            return asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        except RuntimeError:  # closed by another thread since the check above
            coroutine.close()
            raise ClientClosed("the client is closed") from None

    def run(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Runs ``fn(*args, **kwargs)`` on the loop thread and waits for what it returns."""
        return _result(self.submit(fn, *args, **kwargs))

    def stop(self) -> None:
        """Ends every task still on the loop (a stream's pending wait, say), then the loop.
        Idempotent. Tasks are cancelled and awaited first so that none is destroyed pending."""
        if self.stopped or os.getpid() != self.pid:
            return
        self.stopped = True

        async def cancel_the_rest() -> None:
            tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_the_rest(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


def _result(future: Future[T], timeout: float | None = None) -> T:
    """``future.result(timeout)``, with a call cut short by ``close()`` as ClientClosed."""
    try:
        return future.result(timeout)
    except CancelledError:
        raise ClientClosed("the client was closed") from None


class BlockingEventStream:
    """A plain iterator over an :class:`~amiwire.client.EventStream`."""

    def __init__(self, runner: _LoopThread, stream: EventStream[Message]) -> None:
        self._runner = runner
        self._stream = stream
        self._batch: list[Message] = []
        self._index = 0
        # A wait for events that outlived a timed-out next_batch(): the next call picks up
        # its batch, so a timeout never loses what arrived after it.
        self._waiting: Future[list[Message]] | None = None

    def __iter__(self) -> Iterator[Message]:
        return self

    def __next__(self) -> Message:
        if self._index >= len(self._batch):
            try:
                self._batch = self._take(BATCH, None)
            except StopAsyncIteration:
                raise StopIteration from None
            self._index = 0
        event = self._batch[self._index]
        self._index += 1
        return event

    def next_batch(self, max: int = BATCH, timeout: float | None = None) -> list[Message]:
        """Every queued event (up to ``max``), waiting up to ``timeout`` seconds for one; an
        empty list if none came in time (the next call gets whatever arrives later). Raises
        StopIteration once the stream has ended."""
        try:
            return self._take(max, timeout)
        except StopAsyncIteration:
            raise StopIteration from None

    def _take(self, max: int, timeout: float | None) -> list[Message]:
        if self._waiting is None:
            self._waiting = self._runner.submit(self._stream.next_batch, max)
        try:
            batch = _result(self._waiting, timeout)
        except TimeoutError:
            return []
        except BaseException:
            self._waiting = None
            raise
        self._waiting = None
        return batch

    def close(self) -> None:
        """Stops the stream; queued events are discarded."""
        self._stream.close()
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            waiting.cancel()  # a wait left by a timed-out next_batch(): nothing will end it now

    def __enter__(self) -> BlockingEventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dropped(self) -> int:
        """Events lost because this stream's queue was full."""
        return self._stream.dropped

    @property
    def gaps(self) -> int:
        """Reconnects this stream lived through."""
        return self._stream.gaps

    def __repr__(self) -> str:
        return f"<amiwire.BlockingEventStream {self._stream._summary()}>"


class BlockingClient:
    """The same methods as :class:`~amiwire.Client`, blocking. Create with
    :func:`connect_blocking`; close with ``close()`` or a ``with`` block. ``close()`` may be
    called any number of times; any other call after it raises :class:`~amiwire.ClientClosed`."""

    def __init__(self, runner: _LoopThread, client: Client) -> None:
        self._runner = runner
        self._client = client

    @_blocks_like(Client.action)
    def action(self, *args: Any, **kwargs: Any) -> Message:
        """See :meth:`amiwire.Client.action`."""
        return self._runner.run(self._client.action, *args, **kwargs)

    # Overloaded like Client.action_list, whose overloads a ParamSpec cannot carry.
    @overload
    def action_list(
        self,
        name: ListAction[_M],
        /,
        headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] = (),
        *,
        timeout: float | None = None,
        list_complete: str | None = None,
        check: bool = True,
        **kwargs: HeaderValue,
    ) -> list[_M]: ...
    @overload
    def action_list(
        self,
        name: str | Action,
        /,
        headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] = (),
        *,
        timeout: float | None = None,
        list_complete: str | None = None,
        check: bool = True,
        **kwargs: HeaderValue,
    ) -> list[Message]: ...
    def action_list(
        self,
        name: str | Action,
        /,
        headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] = (),
        **kwargs: Any,
    ) -> list[Any]:
        """See :meth:`amiwire.Client.action_list`."""
        return self._runner.run(self._client.action_list, name, headers, **kwargs)

    def ping(self, *, timeout: float | None = None) -> Message:
        """See :meth:`amiwire.Client.ping`."""
        return self._runner.run(self._client.ping, timeout=timeout)

    def command(self, command: str, *, timeout: float | None = None) -> str:
        """See :meth:`amiwire.Client.command`."""
        return self._runner.run(self._client.command, command, timeout=timeout)

    @_blocks_like(Client.originate)
    def originate(self, *args: Any, **kwargs: Any) -> OriginateResponse:
        """See :meth:`amiwire.Client.originate`."""
        return self._runner.run(self._client.originate, *args, **kwargs)

    def set_event_mask(self, mask: str, *, timeout: float | None = None) -> Message:
        """See :meth:`amiwire.Client.set_event_mask`."""
        return self._runner.run(self._client.set_event_mask, mask, timeout=timeout)

    def add_filter(
        self, filter: str | None = None, *, match_criteria: str | None = None, timeout: float | None = None
    ) -> Message:
        """See :meth:`amiwire.Client.add_filter`."""
        return self._runner.run(
            self._client.add_filter, filter, match_criteria=match_criteria, timeout=timeout
        )

    def events(
        self,
        *patterns: str,
        maxsize: int | None = None,
        overflow: Overflow = "drop_oldest",
        max_bytes: int | None = None,
        **header_filters: HeaderFilter,
    ) -> BlockingEventStream:
        """See :meth:`amiwire.Client.events`; iterate it with ``for`` or ``next_batch()``."""

        async def make() -> EventStream[Message]:
            return self._client.events(
                *patterns, maxsize=maxsize, overflow=overflow, max_bytes=max_bytes, **header_filters
            )

        return BlockingEventStream(self._runner, self._runner.run(make))

    def close(self) -> None:
        """Logs off and closes the connection; calling it again does nothing."""
        if self._runner.stopped:
            return
        try:
            _result(self._runner.submit(self._client.close), 10)
        finally:
            self._runner.stop()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        """See :meth:`amiwire.Client.stats`."""
        return self._client.stats()

    # The live state is read without the loop thread: a snapshot is taken in Rust, at once.

    def live_snapshot(self) -> LiveSnapshot:
        """See :meth:`amiwire.Live.snapshot` (``connect_blocking(..., live=True)``)."""
        return self._client.live.snapshot()

    @property
    def channels(self) -> LiveMap[LiveChannel]:
        """See :attr:`amiwire.Client.channels`."""
        return self._client.channels

    @property
    def bridges(self) -> LiveMap[LiveBridge]:
        """See :attr:`amiwire.Client.bridges`."""
        return self._client.bridges

    @property
    def calls(self) -> LiveMap[LiveCall]:
        """See :attr:`amiwire.Client.calls`."""
        return self._client.calls

    @property
    def state(self) -> str:
        """``connecting``, ``connected``, ``reconnecting`` or ``closed``."""
        return self._client.state

    @property
    def banner(self) -> str | None:
        """The server's banner."""
        return self._client.banner

    @property
    def ami_version(self) -> str | None:
        """The AMI version from the banner."""
        return self._client.ami_version

    @property
    def asterisk_version(self) -> str | None:
        """``AsteriskVersion`` from CoreSettings (None if the user may not read it)."""
        return self._client.asterisk_version

    def __repr__(self) -> str:
        return f"<amiwire.BlockingClient {self.state} {self.banner or ''}>"


_borrow_signature(BlockingClient.action_list, Client.action_list)


@_same_options_as(connect)
def connect_blocking(url: str | None = None, **options: Any) -> BlockingClient:
    """Like :func:`amiwire.connect` (the same arguments), but returns a
    :class:`BlockingClient` once logged in."""
    pending = connect(url, **options)  # a mistyped keyword or URL fails here, before a thread starts
    runner = _LoopThread()

    async def open_client() -> Client:
        return await pending

    try:
        client = runner.run(open_client)
    except BaseException:
        runner.stop()
        raise
    return BlockingClient(runner, client)
