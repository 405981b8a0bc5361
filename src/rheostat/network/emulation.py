"""Real links for tests and benchmarks: a client network namespace behind a shaped veth pair.

`ShapedLink` makes a network namespace and a veth pair: one end stays on the host (the
server's side, `host_ip`), the other goes into the namespace (the client's side,
`client_ip`). The client's outgoing traffic, its uplink, is shaped on its end with `tc`: a
token bucket (`tbf`) at the link's rate, under a `netem` delay when the link has one (some
kernels lack `sch_netem`: a delay there is refused with that reason).
`follow(trace)` changes the rate every step of a bandwidth trace in a background thread, as
Jellyfish's client does with `tc tbf rate`. Run the client with `command([...])` (`ip netns
exec`). Leaving the `with` block stops the thread and deletes the namespace (which removes
both veth ends); a link left behind by a crashed run is deleted by `cleanup_stale()`.

Needs root (CAP_NET_ADMIN) and iproute2's `ip` and `tc`; `available()` says why not.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from rheostat.network.traces import BandwidthTrace

__all__ = ["LinkError", "ShapedLink", "available", "cleanup_stale"]

PREFIX = "rheostat-"
MIN_RATE_MBPS = 0.05  # tc needs a positive rate; a trace's zero is a link that barely moves


class LinkError(RuntimeError):
    """A namespace, veth or qdisc command failed; the message has the command and its error."""


def _run(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise LinkError(f"{' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def available() -> str | None:
    """None when links can be made here; else why not (for a clear skip message)."""
    if os.geteuid() != 0:
        return "network emulation needs root (ip netns, tc)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"network emulation needs iproute2 ({', '.join(missing)} not found)"
    probe = f"{PREFIX}probe-{secrets.token_hex(3)}"
    try:
        _run("ip", "netns", "add", probe)
    except LinkError as exc:
        return f"cannot create network namespaces here: {exc}"
    _run("ip", "netns", "del", probe)
    return None


def cleanup_stale() -> list[str]:
    """Delete namespaces this module made that are still there (a crashed run); returns them."""
    names = [line.split()[0] for line in _run("ip", "netns", "list").splitlines() if line]
    stale = [n for n in names if n.startswith(PREFIX)]
    for name in stale:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    return stale


def _burst_bytes(rate_mbps: float) -> int:
    """tbf's bucket: 2 ms of traffic at the rate, at least two full packets. A deeper bucket
    lets the start of each upload through at line rate (measured: a 10-ms bucket made a
    150-kB frame at 24 Mbit/s look like 30)."""
    return max(int(rate_mbps * 1e6 / 8 * 0.002), 2 * 1514)


@dataclass
class ShapedLink:
    rate_mbps: float
    delay_ms: float = 0.0
    queue_ms: float = 200.0  # how long a packet may wait in the bucket before it is dropped
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _up: bool = False
    applied: list[float] = field(default_factory=list)  # every rate set, in order

    def __post_init__(self) -> None:
        if self.rate_mbps <= 0 or self.delay_ms < 0 or self.queue_ms <= 0:
            raise ValueError(
                f"link: rate {self.rate_mbps} Mbit/s must be > 0, delay {self.delay_ms} ms "
                f">= 0, queue {self.queue_ms} ms > 0"
            )
        octet = int(self.token, 16)
        self.namespace = f"{PREFIX}{self.token}"
        self.host_if, self.client_if = f"rh{self.token}h", f"rh{self.token}c"
        # a /30 of 10.201.0.0/16 picked from the token (two concurrent links rarely collide)
        base = (octet % 16384) * 4
        self.host_ip = f"10.201.{base // 256}.{base % 256 + 1}"
        self.client_ip = f"10.201.{base // 256}.{base % 256 + 2}"

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> ShapedLink:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        try:
            _run("ip", "netns", "add", self.namespace)
            self._up = True
            _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.client_if)
            _run("ip", "link", "set", self.client_if, "netns", self.namespace)
            _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            inside = ("ip", "netns", "exec", self.namespace)
            _run(*inside, "ip", "addr", "add", f"{self.client_ip}/30", "dev", self.client_if)
            _run(*inside, "ip", "link", "set", self.client_if, "up")
            _run(*inside, "ip", "link", "set", "lo", "up")
            if self.delay_ms > 0:
                try:
                    _run(*inside, "tc", "qdisc", "add", "dev", self.client_if, "root",
                         "handle", "1:", "netem", "delay", f"{self.delay_ms:g}ms")  # fmt: skip
                except LinkError as exc:
                    raise LinkError(f"no delay emulation on this kernel (netem): {exc}") from None
            self._tbf("add", self.rate_mbps)
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._up:
            subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True, check=False)
            subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, check=False)
            self._up = False

    # -- shaping ----------------------------------------------------------------------------
    def _tbf(self, verb: str, rate_mbps: float) -> None:
        rate = max(rate_mbps, MIN_RATE_MBPS)
        where = ["parent", "1:", "handle", "2:"] if self.delay_ms > 0 else ["root", "handle", "1:"]
        _run("ip", "netns", "exec", self.namespace, "tc", "qdisc", verb, "dev", self.client_if,
             *where, "tbf", "rate", f"{rate:.3f}mbit", "burst", str(_burst_bytes(rate)),
             "latency", f"{self.queue_ms:g}ms")  # fmt: skip
        self.rate_mbps = rate
        self.applied.append(rate)

    def set_rate(self, rate_mbps: float) -> None:
        """Change the uplink's rate now."""
        self._tbf("change", rate_mbps)

    def follow(self, trace: BandwidthTrace, offset_s: float = 0.0) -> None:
        """Replay `trace` from `offset_s` on the uplink, one value per step, until `down`."""
        if self._thread is not None:
            raise LinkError("this link already follows a trace")

        def replay() -> None:
            step = 0
            while not self._stop.is_set():
                try:
                    self.set_rate(trace.at(step * trace.step_s, offset_s))
                except LinkError:
                    if self._stop.is_set():
                        return
                    raise
                step += 1
                self._stop.wait(trace.step_s)

        self._thread = threading.Thread(target=replay, name=f"follow-{self.token}", daemon=True)
        self._thread.start()

    def command(self, args: Sequence[str]) -> list[str]:
        """`args` as a command that runs inside the client's namespace."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def qdisc(self) -> str:
        """What `tc qdisc show` says of the client's end (for checks and logs)."""
        return _run("ip", "netns", "exec", self.namespace, "tc", "qdisc", "show", "dev",
                    self.client_if)  # fmt: skip
