"""An executor address that answers but is not a Dask scheduler fails within seconds, naming it."""

from __future__ import annotations

import socket
import threading

import pytest

from gpllm.errors import InputError

pytest.importorskip("distributed")
from gpllm.evaluate.runner.dask_executor import DaskExecutor  # noqa: E402


@pytest.fixture(
    params=[b"", b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 400 Bad Request\r\n\r\n"], ids=["silent", "ssh", "http"]
)
def impostor(request):
    """A loopback server that accepts connections and then says ``request.param`` (or nothing)."""
    server = socket.create_server(("127.0.0.1", 0))
    held = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(request.param)
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    server.close()
    for conn in held:
        conn.close()


def test_a_server_that_is_not_a_scheduler_is_refused_naming_it(impostor):
    # Before, the Client waited on the silent one past any timeout and read the others' bytes
    # as a message length of exabytes (MemoryError); the probe waits ``timeout`` at most.
    with pytest.raises(InputError, match=rf"{impostor} is not a Dask scheduler: "):
        DaskExecutor.connect(impostor, timeout=2.0)
