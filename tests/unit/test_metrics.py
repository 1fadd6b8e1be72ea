"""The process id Prometheus's multiprocess values file their samples under
(`wallet_api.core.metrics.process_id`): read from memory, and a forked process's own."""

from __future__ import annotations

import os

from wallet_api.core.metrics import process_id


def test_the_process_id_is_this_process_and_a_forked_childs_its_own() -> None:
    assert process_id() == os.getpid()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(writer, f"{process_id()} {os.getpid()}".encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as answer:
        reported, actual = answer.read().split()
    os.waitpid(child, 0)
    assert reported == actual
    assert int(actual) != os.getpid()
    assert process_id() == os.getpid()
