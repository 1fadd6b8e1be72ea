"""The worker the service runs in sends each answer in one write (src/wallet_api/core/worker.py):
its status line, headers and body reach the client as one TCP segment, for the fast paths,
FastAPI's routes and the problems alike. Counted by the client's kernel (`TCP_INFO`'s
`tcpi_data_segs_in`), not timed: Uvicorn on its own sends two."""

from __future__ import annotations

import json
import socket
import struct
from urllib.parse import urlsplit

import httpx
import pytest

from wallet_api.devtools.server import ServiceProcess

#: `struct tcp_info`'s `tcpi_data_segs_in` (Linux 4.6 and later): the data segments received.
DATA_SEGS_IN = 152


def _answer_and_segments(service: ServiceProcess, request: bytes) -> tuple[bytes, int]:
    """`request` sent on a new connection; the whole answer (by its Content-Length) and the
    number of data segments the connection received for it."""
    address = urlsplit(service.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += connection.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        while len(body) < length:
            body += connection.recv(65536)
        info = connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    (segments,) = struct.unpack_from("I", info, DATA_SEGS_IN)
    return answer, segments


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="TCP_INFO is Linux's")
@pytest.mark.parametrize(
    ("request_line", "body", "status"),
    [
        pytest.param("GET /health/live", b"", b"200", id="a FastAPI route"),
        pytest.param("GET /api/v1/wallets/{wallet}", b"", b"200", id="the fast path's read"),
        pytest.param(
            "POST /api/v1/wallets/{wallet}/operation",
            b'{"operation": "DEPOSIT", "amount": 1}',
            b"200",
            id="the fast path's write",
        ),
        pytest.param("GET /api/v1/wallets/not-a-uuid", b"", b"422", id="a problem"),
    ],
)
def test_an_answer_reaches_the_client_in_one_segment(
    service: ServiceProcess, wallet: str, request_line: str, body: bytes, status: bytes
) -> None:
    request = (
        f"{request_line.format(wallet=wallet)} HTTP/1.1\r\nHost: test\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    answer, segments = _answer_and_segments(service, request)
    assert answer.split(b" ", 2)[1] == status, answer
    assert segments == 1, f"the answer came in {segments} segments"


def test_a_large_answer_arrives_whole(service: ServiceProcess, client: httpx.Client) -> None:
    """An answer larger than what the worker joins (the OpenAPI document) goes out as
    Uvicorn writes it, whole and in order."""
    document = client.get("/openapi.json")
    assert document.status_code == 200
    assert len(document.content) > 64 * 1024
    assert document.json()["openapi"].startswith("3.")


def test_an_answer_before_the_connection_closes_arrives_whole(service: ServiceProcess) -> None:
    """`Connection: close`: Uvicorn closes the connection right after the answer's body,
    in the same turn of the event loop; the answer goes out before the close."""
    address = urlsplit(service.base_url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer
    assert b"connection: close" in head.lower()
    assert json.loads(body)  # the whole body
