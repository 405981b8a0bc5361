"""Labelled feedback on served answers: an accuracy monitor per family, drift detection, and
retraining from the feedback when drift is found.

A client that wants to give feedback sends its inference request with an OIP `id`; the
server remembers the answer (which variant and version gave which class for each row, and
for tensor inputs the rows themselves) for the last `capacity` such requests. Later,
`POST /rheostat/feedback {"id": ..., "labels": [...]}` says what the right classes were.

Per family, the monitor keeps the last `window` labelled rows: whether each was right, and
the accuracy the variant that answered it claims. Drift is declared when, over at least
`min_samples` rows, measured accuracy falls short of claimed accuracy by more than
`tolerance`. The window holds only rows answered by the versions served now, so a swap to a
retrained version starts a fresh window.

Everything here is plain data and takes no clock: the API layer feeds it, and the
`Retrainer` acts on it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rheostat.errors import InvalidRequestError, NotFoundError

__all__ = ["Answer", "FeedbackBook", "Retrainer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    family: str
    variant: str  # `family.variant`
    version: int
    classes: tuple[int, ...]  # per row, the arg-max class answered
    claimed_accuracy: float
    rows: tuple[np.ndarray, ...] | None  # the inputs (copies), kept only to retrain on
    num_classes: int = 0  # labels must be below it (0: unchecked)


@dataclass
class _Window:
    outcomes: deque[tuple[bool, float, str]]  # (right, claimed accuracy, variant@version)
    labelled_x: deque[np.ndarray]
    labelled_y: deque[int]
    total: int = 0
    labelled_total: int = 0  # labelled input rows ever received (the deques keep the last)
    drift_since: int | None = None  # `total` when drift was declared


@dataclass
class FeedbackBook:
    capacity: int = 4096  # answers remembered for feedback
    window: int = 200  # labelled rows per family the monitor judges
    min_samples: int = 50
    tolerance: float = 0.05
    keep_rows: int = 2000  # labelled input rows per family kept for retraining
    keep_inputs_for: set[str] = field(default_factory=set)  # families retrained on feedback
    answers: OrderedDict[str, Answer] = field(default_factory=OrderedDict)
    windows: dict[str, _Window] = field(default_factory=dict)
    on_drift: list[Callable[[str, dict[str, Any]], None]] = field(default_factory=list)
    """Told (family, status) on every feedback while the family's accuracy has drifted."""

    def remember(self, request_id: str, answer: Answer) -> None:
        self.answers[request_id] = answer
        self.answers.move_to_end(request_id)
        while len(self.answers) > self.capacity:
            self.answers.popitem(last=False)

    def feedback(
        self, request_id: object, labels: object, served: dict[str, int]
    ) -> dict[str, Any]:
        """Record the true classes of a remembered answer; returns the family's status.

        `served` maps `family.variant` to the version served now: rows answered by older
        versions are not judged (the monitor is about what serves now). Raises
        InvalidRequestError (400) or NotFoundError (404) naming the problem.
        """
        if not isinstance(request_id, str) or not request_id:
            raise InvalidRequestError(f"feedback: id {request_id!r} must be a non-empty string")
        answer = self.answers.get(request_id)
        if answer is None:
            raise NotFoundError(
                f"feedback: no recent answer has id {request_id!r} (the server remembers the "
                f"last {self.capacity} requests sent with an id)"
            )
        top = answer.num_classes or 2**63
        if (
            not isinstance(labels, list)
            or len(labels) != len(answer.classes)
            or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v < top for v in labels
            )
        ):
            classes = f" in 0..{top - 1}" if answer.num_classes else ""
            raise InvalidRequestError(
                f"feedback for {request_id!r}: labels {labels!r} must be a list of "
                f"{len(answer.classes)} class indices{classes} (one per input row)"
            )
        del self.answers[request_id]
        window = self.windows.setdefault(
            answer.family,
            _Window(deque(maxlen=self.window), deque(maxlen=self.keep_rows),
                    deque(maxlen=self.keep_rows)),
        )  # fmt: skip
        current = served.get(answer.variant) == answer.version
        for index, (label, given) in enumerate(zip(labels, answer.classes, strict=True)):
            if current:
                tag = f"{answer.variant}@{answer.version}"
                window.outcomes.append((label == given, answer.claimed_accuracy, tag))
                window.total += 1
            if answer.rows is not None:
                window.labelled_x.append(answer.rows[index])
                window.labelled_y.append(label)
                window.labelled_total += 1
        status = self.status(answer.family, served)
        if status["drift"]:
            if window.drift_since is None:
                window.drift_since = window.total
                log.warning("accuracy drift in %s: %s", answer.family, status)
            for listener in self.on_drift:  # told on every feedback while drift lasts
                listener(answer.family, status)
        return status

    def status(self, family: str, served: dict[str, int]) -> dict[str, Any]:
        window = self.windows.get(family)
        live = [
            o for o in (window.outcomes if window else ())
            if served.get(o[2].partition("@")[0]) == int(o[2].partition("@")[2])
        ]  # fmt: skip
        n = len(live)
        measured = sum(o[0] for o in live) / n if n else None
        claimed = sum(o[1] for o in live) / n if n else None
        drift = (
            n >= self.min_samples
            and measured is not None
            and claimed is not None
            and measured < claimed - self.tolerance
        )
        return {
            "family": family,
            "samples": n,
            "measured_accuracy": None if measured is None else round(measured, 4),
            "claimed_accuracy": None if claimed is None else round(claimed, 4),
            "drift": drift,
            "labelled_rows": len(window.labelled_y) if window else 0,
            "labelled_total": window.labelled_total if window else 0,
            "min_samples": self.min_samples,
            "tolerance": self.tolerance,
        }

    def served_again(self, family: str) -> None:
        """A family's versions changed: judge drift afresh."""
        window = self.windows.get(family)
        if window is not None:
            window.drift_since = None

    def labelled(self, family: str) -> tuple[np.ndarray, np.ndarray]:
        """The labelled input rows kept for `family` (x [n, ...], y [n])."""
        window = self.windows.get(family)
        if window is None or not window.labelled_y:
            return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
        return (
            np.stack(list(window.labelled_x)).astype(np.float32),
            np.array(window.labelled_y, dtype=np.int64),
        )


class Retrainer:
    """On drift, once `min_rows` labelled rows are in, retrain the family from its labelled
    feedback in a child process (`rheostat retrain`), which registers new versions; then
    swap them in live.

    One retraining per family at a time, and none again until the swapped-in versions have
    drifted in turn; `history` records each attempt.
    """

    def __init__(
        self,
        book: FeedbackBook,
        repository: Path,
        reload: Callable[[str], Awaitable[None]],
        *,
        families: Sequence[str] = ("digits",),
        min_rows: int = 300,
        timeout_s: float = 900.0,
    ) -> None:
        self.book = book
        self.repository = repository
        self.reload = reload
        self.families = set(families)
        self.min_rows = min_rows
        self.timeout_s = timeout_s
        self.history: list[dict[str, Any]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._tried_at: dict[str, int] = {}  # family -> labelled rows ever, at its last attempt
        book.keep_inputs_for |= self.families
        book.on_drift.append(self._drift)

    def _drift(self, family: str, status: dict[str, Any]) -> None:
        if family not in self.families or family in self._running:
            return
        if status["labelled_rows"] < self.min_rows:
            return  # too few rows to retrain on yet
        total = status["labelled_total"]
        if family in self._tried_at and total < self._tried_at[family] + self.min_rows // 2:
            return  # too few new rows since the last attempt (a failure, or noise after one)
        self._tried_at[family] = total
        log.warning("retraining %s from %d feedback rows", family, status["labelled_rows"])
        task = asyncio.get_running_loop().create_task(self._retrain(family, status))
        self._running[family] = task

    async def _retrain(self, family: str, status: dict[str, Any]) -> None:
        entry: dict[str, Any] = {"family": family, "trigger": status, "state": "running"}
        self.history.append(entry)
        try:
            x, y = self.book.labelled(family)
            entry["rows"] = len(y)
            with tempfile.TemporaryDirectory(prefix="rheostat-retrain-") as folder:
                data = Path(folder) / "feedback.npz"
                np.savez(data, x=x, y=y)
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "rheostat", "retrain",
                    "--model-repository", str(self.repository), "--family", family,
                    "--data", str(data),
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                try:
                    output, _ = await asyncio.wait_for(process.communicate(), self.timeout_s)
                except TimeoutError:
                    process.kill()
                    await process.wait()
                    entry["state"] = f"failed: no result in {self.timeout_s:.0f} s"
                    return
            entry["output"] = output.decode(errors="replace")[-2000:]
            if process.returncode != 0:
                entry["state"] = f"failed (exit status {process.returncode})"
                log.error("retraining %s failed:\n%s", family, entry["output"])
                return
            await self.reload(family)
            self.book.served_again(family)
            entry["state"] = "swapped in"
        except Exception as exc:
            entry["state"] = f"failed: {exc}"
            log.exception("retraining %s failed", family)
        finally:
            self._running.pop(family, None)
