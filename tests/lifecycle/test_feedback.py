"""The accuracy monitor: drift from labelled feedback, and its errors (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from rheostat.errors import InvalidRequestError, NotFoundError
from rheostat.lifecycle.feedback import Answer, FeedbackBook

SERVED = {"digits.cnn_large": 1}


def answer(cls: int, version: int = 1) -> Answer:
    return Answer(
        "digits", "digits.cnn_large", version, (cls,), 0.99, (np.full(64, cls, np.float32),)
    )


def give(book: FeedbackBook, n: int, right: bool, start: int = 0, version: int = 1) -> dict:
    status: dict = {}
    for i in range(start, start + n):
        book.remember(f"r{i}", answer(3, version))
        status = book.feedback(f"r{i}", [3 if right else 4], {"digits.cnn_large": version})
    return status


def test_accuracy_that_holds_is_not_drift() -> None:
    book = FeedbackBook(min_samples=20, tolerance=0.05)
    status = give(book, 40, right=True)
    assert status["samples"] == 40 and status["measured_accuracy"] == 1.0
    assert not status["drift"]


def test_a_fall_in_accuracy_is_drift_once_there_are_enough_samples() -> None:
    book = FeedbackBook(min_samples=20, tolerance=0.05)
    told: list[str] = []
    book.on_drift.append(lambda family, status: told.append(family))
    assert not give(book, 19, right=False)["drift"]  # too few to judge
    status = give(book, 1, right=False, start=19)
    assert status["drift"] and status["measured_accuracy"] == 0.0
    assert status["claimed_accuracy"] == 0.99 and told == ["digits"]
    x, y = book.labelled("digits")
    assert x.shape == (20, 64) and set(y.tolist()) == {4}


def test_rows_answered_by_a_replaced_version_are_not_judged() -> None:
    book = FeedbackBook(min_samples=20)
    give(book, 30, right=False)
    book.remember("late", answer(3, version=1))
    status = book.feedback("late", [3], {"digits.cnn_large": 2})  # version 2 serves now
    assert status["samples"] == 0 and not status["drift"]
    assert book.status("digits", {"digits.cnn_large": 2})["labelled_rows"] == 31


def test_bad_feedback_is_refused_and_changes_nothing() -> None:
    book = FeedbackBook(capacity=2)
    with pytest.raises(NotFoundError, match="'nope'"):
        book.feedback("nope", [1], SERVED)
    book.remember("a", answer(3))
    with pytest.raises(InvalidRequestError, match="list of 1 class"):
        book.feedback("a", [1, 2], SERVED)
    with pytest.raises(InvalidRequestError, match="list of 1 class"):
        book.feedback("a", ["3"], SERVED)
    with pytest.raises(InvalidRequestError, match="non-empty string"):
        book.feedback(7, [3], SERVED)
    assert book.feedback("a", [3], SERVED)["samples"] == 1  # still remembered after errors
    for name in ("b", "c", "d"):
        book.remember(name, answer(3))
    with pytest.raises(NotFoundError, match="last 2"):
        book.feedback("b", [3], SERVED)  # forgotten: only the last two are kept


def test_labels_outside_the_models_classes_are_refused() -> None:
    book = FeedbackBook()
    book.remember("a", Answer("digits", "digits.cnn_large", 1, (3,), 0.99, None, num_classes=10))
    with pytest.raises(InvalidRequestError, match=r"in 0\.\.9"):
        book.feedback("a", [10], SERVED)
    assert book.feedback("a", [9], SERVED)["samples"] == 1


def test_retraining_waits_for_rows_and_does_not_repeat_on_the_same_ones(tmp_path) -> None:
    import asyncio

    from rheostat.lifecycle.feedback import Retrainer

    started: list[int] = []

    class Recording(Retrainer):
        async def _retrain(self, family: str, status: dict) -> None:
            started.append(status["labelled_total"])
            self._running.pop(family, None)

    async def scenario() -> None:
        async def reload(family: str) -> None:
            return None

        book = FeedbackBook(min_samples=20)
        Recording(book, tmp_path, reload, min_rows=100)
        assert book.keep_inputs_for == {"digits"}
        give(book, 99, right=False)  # drift, but too few rows to retrain on
        await asyncio.sleep(0)
        assert started == []
        give(book, 1, right=False, start=99)
        await asyncio.sleep(0)
        assert started == [100]
        give(book, 49, right=False, start=100)  # drift goes on: wait for 50 new rows
        await asyncio.sleep(0)
        assert started == [100]
        give(book, 1, right=False, start=149)
        await asyncio.sleep(0)
        assert started == [100, 150]

    asyncio.run(scenario())
