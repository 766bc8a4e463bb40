"""The gateway's TCP listener (the non-root default) queues a burst of new connections.

tailscale serve keeps only 2 idle connections to the gateway (Go's default
MaxIdleConnsPerHost; docs/benchmarks.md, "What limits the tailnet path beyond the gateway"), so
under concurrent calls it opens new ones in bursts. While the gateway's event loop is busy they
wait in the kernel's accept queue; a connection past the listener's backlog has its SYN dropped
and retries 1 s later (then 3 s, ...). The TCP listener had a backlog of 128, the unix socket 2048.

Driven as the burst arrives: many connections to a listener made by serving.tcp_socket that
nobody accepts yet, then the kernel's own count of queued connections (ss: Recv-Q of the
listening socket), then every queued connection accepted.
"""

from __future__ import annotations

import socket
import subprocess
import time

from mcp_tailnet_sidecar import serving

from .conftest import free_port

BURST = 400  # over the old backlog of 128, well under the new one


def _queued(port: int) -> int:
    """Connections waiting in the accept queue of the listener on 127.0.0.2:port."""
    out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines() if f"127.0.0.2:{port}" in line]
    assert len(rows) == 1, out
    return int(rows[0][1])


def test_tcp_listener_queues_a_burst_of_connections():
    port = free_port("127.0.0.2")
    listener = serving.tcp_socket("127.0.0.2", port)
    clients: list[socket.socket] = []
    try:
        for _ in range(BURST):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            c.connect_ex(("127.0.0.2", port))
            clients.append(c)
        queued = 0
        for _ in range(50):  # bounded: 5 s at most; loopback handshakes take microseconds
            queued = _queued(port)
            if queued >= BURST:
                break
            time.sleep(0.1)
        assert queued >= BURST, (f"{queued} of {BURST} new connections queued: the rest had their SYNs "
                                 "dropped and wait for a retransmit (1 s, then 3 s)")
        listener.setblocking(True)
        listener.settimeout(5)
        for _ in range(BURST):
            conn, _ = listener.accept()
            conn.close()
    finally:
        for c in clients:
            c.close()
        listener.close()
