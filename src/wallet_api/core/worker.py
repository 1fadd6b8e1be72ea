"""The Gunicorn worker the service runs in: Uvicorn's (uvloop, httptools), with each
answer sent to its socket in one write.

Uvicorn writes an answer's status line and headers when the application starts it, and its
body when the application sends it: two `send()` system calls an answer, and for a client
on the same host two wake-ups of its reader, each one paid on the machine's cores. Here the
writes an answer makes in one turn of the event loop are joined and sent together when the
loop runs its next callbacks (`CoalescingTransport`). Measured (docs/PERFORMANCE.md): a
`GET` a fifth faster, with up to a tenth less of the service's CPU; a write, within the
noise.

This module is imported by Gunicorn's master (`worker_class` in gunicorn.conf.py): it
imports Uvicorn and nothing of the service."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, ClassVar, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

#: A write this large goes out at once (what was held before it first): joining it with
#: the headers would copy more than the system call saved costs. So does anything but
#: `bytes` (a buffer its writer may change after; a wrong type fails in the writer's call).
PASS_THROUGH = 64 * 1024


class CoalescingTransport:
    """A transport whose writes made in one turn of the event loop reach its socket as one.

    The first write of a turn is held and a flush is scheduled (`call_soon`: it runs in
    the loop's next turn, after its poll for I/O); later writes of the turn join it.
    Everything else is the wrapped transport's. Closing flushes first, so nothing written
    is dropped by a close (the protocol flushes too before the transport closes itself at
    the client's end of input); `abort()` drops what is held, as it drops the transport's
    own buffer."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if type(data) is not bytes or len(data) >= PASS_THROUGH:
            self.flush()
            self._transport.write(data)
        elif held is None:
            self._held = [data]
            self._loop.call_soon(self.flush)
        else:
            held.append(data)

    def flush(self) -> None:
        """Send what is held, unless the transport is closing (its peer gone, or aborted)."""
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def writelines(self, chunks: Iterable[bytes]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """Uvicorn's HTTP/1.1 protocol (httptools) writing through a `CoalescingTransport`.

    Not over TLS (Gunicorn's `--certfile`; the service expects TLS to end in front of it,
    docs/SECURITY.md): uvloop's TLS transport can close on the client's end of input
    without telling the protocol, which would drop what is held."""

    coalescing: CoalescingTransport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if transport.get_extra_info("sslcontext") is not None:
            super().connection_made(transport)
            return
        self.coalescing = CoalescingTransport(transport, self.loop)
        super().connection_made(cast(asyncio.Transport, self.coalescing))

    def eof_received(self) -> None:
        # The client has closed its side (it sends no more, it may still read), and the
        # transport closes itself once this returns, past the wrapper: what an answer
        # wrote in the turn before goes out first, as it would have without the wrapper.
        if self.coalescing is not None:
            self.coalescing.flush()
        super().eof_received()


class Worker(UvicornWorker):  # type: ignore[misc]
    """`uvicorn_worker.UvicornWorker` with the protocol above; its other settings as they are
    (uvloop's event loop)."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        **UvicornWorker.CONFIG_KWARGS,
        "http": CoalescingHttpToolsProtocol,
    }
