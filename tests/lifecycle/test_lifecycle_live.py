"""The lifecycle end to end, through the CLI and the HTTP API of a real server: the digits
sensor drifts, `rheostat retrain` fine-tunes and registers new versions, the server swaps
them in under load with no request failed, and accuracy on the drifted data comes back;
then labelled feedback finds the drift by itself and retrains (`--on-drift retrain`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import ROOT, Server, start_server, stop_server
from rheostat.lifecycle.digits import drifted_digits_split

pytestmark = [pytest.mark.integration, pytest.mark.slow]

X_NEW, Y_NEW, X_TEST, Y_TEST = drifted_digits_split()


def body(rows: np.ndarray, request_id: str | None = None) -> dict:
    data: dict = {"inputs": [{"name": "input", "shape": list(rows.shape), "datatype": "FP32",
                              "data": rows.reshape(-1).tolist()}]}  # fmt: skip
    if request_id is not None:
        data["id"] = request_id
    return data


def served_accuracy(url: str, x: np.ndarray, y: np.ndarray, model: str = "digits") -> float:
    """Top-1 accuracy of what the server answers for (x, y), 60 rows per request."""
    right = 0
    with httpx.Client(base_url=url, timeout=30) as http:
        for start in range(0, len(x), 60):
            r = http.post(f"/v2/models/{model}/infer", json=body(x[start : start + 60]))
            assert r.status_code == 200, r.text
            scores = np.array(r.json()["outputs"][0]["data"]).reshape(-1, 10)
            right += int(np.sum(scores.argmax(axis=1) == y[start : start + 60]))
    return right / len(y)


def rheostat(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rheostat", *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)  # fmt: skip


@pytest.fixture()
def digits(default_repository: Path, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(default_repository / "digits", repo / "digits")
    return repo


@pytest.fixture()
def server(digits: Path) -> Iterator[Server]:
    srv = start_server(digits, "--device", "cpu:0")
    yield srv
    stop_server(srv)


class Load:
    """Three clients sending drifted digits one by one until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.answers: list[tuple[int, str, str]] = []  # (status, variant, version)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(3)]

    def _client(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                row = X_TEST[rng.integers(len(X_TEST))][None]
                r = http.post("/v2/models/digits/infer", json=body(row))
                ok = r.status_code == 200
                params = r.json().get("parameters", {}) if ok else {}
                self.answers.append((r.status_code, params.get("variant", ""),
                                     r.json().get("model_version", "") if ok else ""))  # fmt: skip

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_retrain_register_and_swap_under_load_recovers_accuracy_on_drifted_data(
    server: Server, digits: Path, tmp_path: Path
) -> None:
    data = tmp_path / "drifted.npz"
    made = rheostat("sample-data", "digits-drifted", "--output", str(data))
    assert made.returncode == 0, made.stderr
    before = served_accuracy(server.url, X_TEST, Y_TEST)
    clean_x, clean_y = np.load(data)["x_test"], np.load(data)["y_test"]
    assert np.array_equal(clean_y, Y_TEST) and np.allclose(clean_x, X_TEST)
    with Load(server.url) as load:
        time.sleep(1.0)
        started = time.monotonic()
        done = rheostat("retrain", "--model-repository", str(digits), "--family", "digits",
                        "--data", str(data), "--server", server.url)  # fmt: skip
        took = time.monotonic() - started
        time.sleep(1.0)
    assert done.returncode == 0, done.stderr
    failures = [a for a in load.answers if a[0] != 200]
    assert failures == [] and len(load.answers) > 100, failures[:5]
    after = served_accuracy(server.url, X_TEST, Y_TEST)
    print(
        f"drifted accuracy served: {before:.3f} before, {after:.3f} after retraining; "
        f"retrain took {took:.1f} s; {len(load.answers)} requests under load, "
        f"{len(failures)} failed"
    )
    assert before < 0.5 and after > 0.9, (before, after)
    assert {v for _, _, v in load.answers[-20:]} == {"2"}  # the new versions answer now
    index = httpx.post(f"{server.url}/v2/repository/index").json()
    versions = {e["name"]: e["version"] for e in index}
    assert versions["digits.cnn_large"] == "2" and versions["digits.cascade"] == "2"

    back = rheostat("rollback", "--model-repository", str(digits), "--family", "digits",
                    "--variant", "cnn_large", "--server", server.url)  # fmt: skip
    assert back.returncode == 0, back.stderr
    assert "version 2 retired, 1 served" in back.stderr
    r = httpx.post(f"{server.url}/v2/models/digits.cnn_large/infer", json=body(X_TEST[:1]))
    assert r.status_code == 200 and r.json()["model_version"] == "1"


def test_lifecycle_commands_refuse_bad_input_in_one_line(digits: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    np.savez(junk, x=np.zeros((10, 3), np.float32), y=np.zeros(10, np.int64))
    cases = [
        (("retrain", "--family", "digits", "--data", str(tmp_path / "none.npz")), "none.npz"),
        (("retrain", "--family", "digits", "--data", str(junk)), "x [n, 64]"),
        (("rollback", "--family", "digits", "--variant", "cnn_large"), "only version 1"),
        (("rollback", "--family", "digits", "--variant", "nope"), "no such variant"),
        (("sample-data", "faces", "--output", str(junk)), "unknown data set 'faces'"),
    ]
    for args, message in cases:
        done = rheostat(*args, "--model-repository", str(digits)) if args[0] != "sample-data" \
            else rheostat(*args)  # fmt: skip
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_feedback_detects_drift_and_the_server_retrains_itself(digits: Path) -> None:
    srv = start_server(digits, "--device", "cpu:0", "--on-drift", "retrain")
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            bad = http.post("/rheostat/feedback", content=b"{not json")
            assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]
            unknown = http.post("/rheostat/feedback", json={"id": "never", "labels": [1]})
            assert unknown.status_code == 404 and "'never'" in unknown.json()["error"]
            for start in range(0, 400, 10):  # a deployment labels what it was answered
                rows, labels = X_NEW[start : start + 10], Y_NEW[start : start + 10]
                r = http.post("/v2/models/digits/infer", json=body(rows, f"req-{start}"))
                assert r.status_code == 200, r.text
                given = http.post("/rheostat/feedback",
                                  json={"id": f"req-{start}", "labels": labels.tolist()})  # fmt: skip
                assert given.status_code == 200, given.text
            status = http.get("/rheostat/feedback").json()
            assert status["families"]["digits"]["drift"] or status["retraining"], status
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                history = http.get("/rheostat/feedback").json()["retraining"]
                if history and history[-1]["state"] != "running":
                    break
                time.sleep(0.5)
        assert history and history[-1]["state"] == "swapped in", history
        assert history[-1]["rows"] >= 300
        after = served_accuracy(srv.url, X_TEST, Y_TEST)
        print(f"drifted accuracy after retraining on feedback: {after:.3f}")
        assert after > 0.85
    finally:
        stop_server(srv)


def test_an_optimized_int8_copy_is_registered_and_served(server: Server, digits: Path) -> None:
    done = rheostat("optimize", "--model-repository", str(digits), "--family", "digits",
                    "--variant", "cnn_large", "--min-speedup", "0", "--server", server.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert '"registered": true' in done.stdout and '"int8_accuracy"' in done.stdout
    r = httpx.post(f"{server.url}/v2/models/digits.cnn_large_int8/infer", json=body(X_TEST[:4]))
    assert r.status_code == 200, r.text
    assert r.json()["parameters"]["accuracy"] > 0.97
    again = rheostat("optimize", "--model-repository", str(digits), "--family", "digits",
                     "--variant", "cnn_large", "--min-speedup", "0")  # fmt: skip
    assert again.returncode == 2 and "exists already" in again.stderr
    faces = rheostat("optimize", "--model-repository", str(digits), "--family", "digits",
                     "--variant", "cascade")  # fmt: skip
    assert faces.returncode == 2 and "variant 'cascade': expected one of" in faces.stderr
