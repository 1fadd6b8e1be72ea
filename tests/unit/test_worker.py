"""The worker's transport (src/wallet_api/core/worker.py): what an answer writes in one turn of
the event loop goes out as one write, in order, and nothing held is lost to a close."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest
import uvicorn

from wallet_api.core.worker import PASS_THROUGH, CoalescingHttpToolsProtocol, CoalescingTransport
from wallet_api.devtools.server import free_port


class Recording:
    """A transport's write side, recorded."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def _run(body: Any) -> Recording:
    async def main() -> Recording:
        recording = Recording()
        transport = CoalescingTransport(recording, asyncio.get_running_loop())  # type: ignore[arg-type]
        await body(transport, recording)
        return recording

    return asyncio.run(main())


def test_the_writes_of_one_turn_go_out_as_one_after_it() -> None:
    async def body(transport: CoalescingTransport, recording: Recording) -> None:
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"{}")
        assert recording.writes == []
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert recording.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
        transport.write(b"next")
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    assert _run(body).writes == [b"HTTP/1.1 200 OK\r\n\r\n{}", b"next"]


def test_a_close_sends_what_is_held_first() -> None:
    async def body(transport: CoalescingTransport, recording: Recording) -> None:
        transport.write(b"head")
        transport.write(b"body")
        transport.close()
        assert recording.writes == [b"headbody"]
        assert recording.closed
        await asyncio.sleep(0)

    assert _run(body).writes == [b"headbody"]


def test_a_large_write_goes_out_at_once_after_what_was_held() -> None:
    large = b"x" * PASS_THROUGH

    async def body(transport: CoalescingTransport, recording: Recording) -> None:
        transport.write(b"head")
        transport.write(large)
        assert recording.writes == [b"head", large]
        await asyncio.sleep(0)

    assert _run(body).writes == [b"head", large]


def test_nothing_is_written_to_a_transport_closing_under_it() -> None:
    async def body(transport: CoalescingTransport, recording: Recording) -> None:
        transport.write(b"to a client gone")
        recording.closed = True
        await asyncio.sleep(0)

    assert _run(body).writes == []


def test_the_rest_is_the_wrapped_transports() -> None:
    async def body(transport: CoalescingTransport, recording: Recording) -> None:
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)
        assert not transport.is_closing()

    _run(body)


def test_an_answer_made_while_the_client_closed_its_side_still_goes_out() -> None:
    """A client that sends its request, then closes its sending side (`shutdown(SHUT_WR)`:
    some probes and proxies do) while the answer is being made: the loop reads that end of
    input in the poll after the answer's turn, before the held answer is flushed, and the
    transport then closes itself. The answer goes out first, as Uvicorn's own would."""
    making, closed = threading.Event(), threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        making.set()
        closed.wait(10)  # blocks the loop: the client's end of input arrives meanwhile
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            http=CoalescingHttpToolsProtocol,
            loop="uvloop",
            lifespan="off",
            log_level="warning",
        )
    )
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "the server did not start in 10 s"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
            assert making.wait(10)
            connection.shutdown(socket.SHUT_WR)
            closed.set()
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
    finally:
        closed.set()
        server.should_exit = True
        serving.join(10)
    assert not serving.is_alive(), "the server did not stop in 10 s"
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert answer.endswith(b"\r\n\r\nok"), answer


def test_a_buffer_that_is_not_bytes_goes_out_at_once_and_a_wrong_type_fails_its_writer() -> None:
    class Strict(Recording):
        def write(self, data: bytes) -> None:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError("data: expecting a bytes-like instance")
            super().write(data)

    async def body(transport: CoalescingTransport, recording: Recording) -> None:
        transport._transport = strict = Strict()  # type: ignore[assignment]
        buffer = bytearray(b"body")
        transport.write(b"head")
        transport.write(buffer)
        buffer[:] = b"gone"
        assert strict.writes == [b"head", b"body"]
        with pytest.raises(TypeError):
            transport.write("text")  # type: ignore[arg-type]

    _run(body)
