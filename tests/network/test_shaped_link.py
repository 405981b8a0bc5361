"""A real shaped link: a client namespace behind a veth pair whose uplink `tc` holds to a
rate; uploads through it take the time the rate says, the rate follows a trace, and nothing
is left behind. Needs root; skipped with the reason where links cannot be made."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from rheostat.network.emulation import ShapedLink, available, cleanup_stale
from rheostat.network.traces import BandwidthTrace

WHY = available()
pytestmark = [pytest.mark.integration, pytest.mark.skipif(WHY is not None, reason=WHY or "")]

CLIENT = """
import socket, sys, time
data = b"x" * int(sys.argv[3])
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
start = time.perf_counter()
sock.sendall(data)
sock.shutdown(socket.SHUT_WR)
sock.recv(16)  # the server's acknowledgement of the last byte
print(time.perf_counter() - start)
"""


@pytest.fixture()
def sink() -> Iterator[tuple[socket.socket, list[int]]]:
    """A TCP server on all host addresses that reads an upload and acknowledges it."""
    server = socket.socket()
    server.bind(("0.0.0.0", 0))
    server.listen(8)
    received: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                total = 0
                while chunk := conn.recv(65536):
                    total += len(chunk)
                received.append(total)
                conn.sendall(b"ok")

    threading.Thread(target=serve, daemon=True).start()
    yield server, received
    server.close()


def upload_mbps(link: ShapedLink, port: int, nbytes: int) -> float:
    done = subprocess.run(
        link.command([sys.executable, "-c", CLIENT, link.host_ip, str(port), str(nbytes)]),
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return nbytes * 8 / float(done.stdout) / 1e6


def test_uploads_take_the_time_the_shaped_rate_says(sink: tuple[socket.socket, list[int]]) -> None:
    server, received = sink
    port = server.getsockname()[1]
    with ShapedLink(rate_mbps=8.0) as link:
        slow = upload_mbps(link, port, 1_000_000)
        link.set_rate(32.0)
        fast = upload_mbps(link, port, 2_000_000)
        assert "rate 32Mbit" in link.qdisc()
    print(f"measured {slow:.1f} Mbit/s at 8, {fast:.1f} at 32")
    assert 5.0 < slow < 8.8 and 20.0 < fast < 35.0
    assert received == [1_000_000, 2_000_000]
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert link.namespace not in names
    links = subprocess.run(["ip", "link", "show"], capture_output=True, text=True).stdout
    assert link.host_if not in links


def test_the_rate_follows_a_trace_each_second() -> None:
    trace = BandwidthTrace("steps", (4.0, 12.0, 0.0), 0.3)
    with ShapedLink(rate_mbps=1.0) as link:
        link.follow(trace, offset_s=0.3)
        time.sleep(1.0)
    assert link.applied[:5] == pytest.approx([1.0, 12.0, 0.05, 4.0, 12.0])  # 0 -> the floor


def test_a_bad_link_is_refused_and_stale_ones_are_cleaned() -> None:
    with pytest.raises(ValueError, match="rate 0 Mbit/s must be > 0"):
        ShapedLink(rate_mbps=0)
    link = ShapedLink(rate_mbps=5.0)
    link.up()  # as if a crashed run left it
    assert link.namespace in cleanup_stale()
    link.down()
