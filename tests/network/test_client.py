"""`rheostat.client` against a real server: tensors and JPEG frames, sync and asyncio, the
upload told apart from the rest by the server's own times, and, through a shaped link, a
bandwidth estimate that follows the link's rate."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import Server, family_repository, start_server, stop_server
from rheostat.client import AsyncEdgeClient, EdgeClient, RequestFailed
from rheostat.lifecycle.digits import load_digits_split
from rheostat.network.emulation import ShapedLink, available

pytestmark = pytest.mark.integration

_, _, X_TEST, Y_TEST = load_digits_split()


@pytest.fixture(scope="module")
def digits(default_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    repo = family_repository(default_repository, tmp_path_factory.mktemp("r"), "digits")
    srv = start_server(repo, "--device", "cpu:0")
    yield srv
    stop_server(srv)


def test_tensors_go_out_and_the_upload_is_measured(digits: Server) -> None:
    with EdgeClient(digits.url, "digits", slo_ms=100, fps=5, client_id="cam-1") as client:
        assert client.bandwidth_mbps is None
        for _ in range(3):
            result = client.infer_tensor(X_TEST[:64])
        scores = result.outputs["logits"]
        assert scores.shape == (64, 10) and np.mean(scores.argmax(1) == Y_TEST[:64]) > 0.9
        params = result.parameters
        assert 0 <= params["receive_ms"] <= params["server_ms"] <= result.end_to_end_s * 1e3
        assert 0 < result.upload_s <= result.end_to_end_s and result.body_bytes > 64 * 64 * 4
        assert client.bandwidth_mbps is not None and client.bandwidth_mbps > 1  # loopback
        # the server's deadline is what is left of 100 ms after the expected upload
        assert 1.0 <= params["slo_ms"] < 100.0
        with (
            EdgeClient(digits.url, "faces") as bad,
            pytest.raises(RequestFailed, match="unknown model 'faces'") as info,
        ):
            bad.infer_tensor(X_TEST[:1])
        assert info.value.status == 404


def test_the_asyncio_client_does_the_same(digits: Server) -> None:
    async def run() -> list[int]:
        async with AsyncEdgeClient(digits.url, "digits", slo_ms=100) as client:
            results = await asyncio.gather(*(client.infer_tensor(X_TEST[i : i + 16])
                                             for i in range(0, 64, 16)))  # fmt: skip
            assert client.bandwidth_mbps is not None
            return [int(r.outputs["logits"].argmax(1)[0]) for r in results]

    assert asyncio.run(run()) == [int(Y_TEST[i]) for i in range(0, 64, 16)]


CLIENT = """
import sys
from rheostat.client import EdgeClient
frame = open(sys.argv[2], "rb").read()
with EdgeClient(sys.argv[1], "efficientnet_lite", slo_ms=2000, fps=2) as client:
    for _ in range(int(sys.argv[3])):
        result = client.infer_image(frame)
    print(client.bandwidth_mbps, result.parameters["variant"])
"""


@pytest.mark.slow
@pytest.mark.skipif(available() is not None, reason=available() or "")
def test_the_estimate_follows_a_shaped_link(default_repository: Path, tmp_path: Path) -> None:
    from PIL import Image
    from skimage import data

    frame = tmp_path / "frame.jpg"
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, "JPEG", quality=95)
    frame.write_bytes(buffer.getvalue())
    repo = family_repository(default_repository, tmp_path / "repo", "efficientnet_lite")
    srv = start_server(repo, "--device", "cpu:0", "--http-address", "0.0.0.0")
    try:
        with ShapedLink(rate_mbps=6.0) as link:
            url = f"http://{link.host_ip}:{srv.url.rsplit(':', 1)[1]}"

            def estimate(frames: int) -> float:
                done = subprocess.run(
                    link.command([sys.executable, "-c", CLIENT, url, str(frame), str(frames)]),
                    capture_output=True, text=True, timeout=120,
                )  # fmt: skip
                assert done.returncode == 0, done.stderr
                mbps, variant = done.stdout.split()
                assert variant.startswith("efficientnet_lite.")
                return float(mbps)

            slow = estimate(8)
            link.set_rate(24.0)
            fast = estimate(8)
        print(f"{len(buffer.getvalue())} B frames: estimated {slow:.1f} Mbit/s at 6, "
              f"{fast:.1f} at 24")  # fmt: skip
        assert 3.5 < slow < 7.0 and 14.0 < fast < 27.0
    finally:
        stop_server(srv)
