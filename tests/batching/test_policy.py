"""Exact decisions of the batch policies (pure functions; no clock, no I/O)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rheostat.batching import (
    AimdPolicy,
    BatchDecision,
    DeadlineAwarePolicy,
    FixedSizePolicy,
    MaxDelayPolicy,
    QueuedRequest,
    make_policy,
)
from rheostat.profiling import LatencyProfile
from rheostat.repository import BatchPolicyName, DynamicBatching

# 10 ms + 2 ms per extra item: T(1)=0.010, T(2)=0.012, T(4)=0.016, T(8)=0.024
PROFILE = LatencyProfile({1: 0.010, 2: 0.012, 4: 0.016, 8: 0.024})


def q(*pairs: tuple[float, float]) -> list[QueuedRequest]:
    return [QueuedRequest(arrival_s=a, deadline_s=d) for a, d in pairs]


class TestDeadlineAware:
    policy = DeadlineAwarePolicy()

    def test_empty_queue_waits_for_arrivals(self) -> None:
        assert self.policy.next_batch([], PROFILE, 0.0, 8) == BatchDecision(0, None, ())

    def test_waits_for_next_request_while_it_could_still_join(self) -> None:
        # head deadline 0.100; q=1 fits; the 2nd could join until 0.100 - T(2) = 0.088
        decision = self.policy.next_batch(q((0.0, 0.100)), PROFILE, 0.0, 8)
        assert decision == BatchDecision(0, pytest.approx(0.088), ())

    def test_releases_when_waiting_longer_would_make_head_late(self) -> None:
        latest = 0.100 - PROFILE.latency_s(2)
        decision = self.policy.next_batch(q((0.0, 0.100)), PROFILE, latest, 8)
        assert decision == BatchDecision(1, None, ())

    def test_releases_full_batch_at_once(self) -> None:
        queue = q(*[(0.0, 1.0)] * 8)
        assert self.policy.next_batch(queue, PROFILE, 0.0, 8) == BatchDecision(8, None, ())

    def test_largest_batch_that_meets_every_deadline(self) -> None:
        # deadlines: T(2)=0.012 fits 0.013, T(3)=0.014 does not
        queue = q((0.0, 0.013), (0.0, 0.013), (0.0, 0.5), (0.0, 0.5))
        assert self.policy.next_batch(queue, PROFILE, 0.0, 8) == BatchDecision(2, None, ())

    def test_drops_requests_that_cannot_make_it_alone(self) -> None:
        queue = q((0.0, 0.005), (0.0, 0.200), (0.0, 0.009))
        decision = self.policy.next_batch(queue, PROFILE, 0.0, 8)
        assert decision.drop == (0, 2)
        assert decision.batch_size == 0
        assert decision.wait_until_s == pytest.approx(0.200 - 0.012)

    def test_wait_is_capped_after_the_oldest_arrival(self) -> None:
        policy = DeadlineAwarePolicy(max_wait_s=0.004)
        queue = q((0.001, 1.0), (0.002, 1.0))
        assert policy.next_batch(queue, PROFILE, 0.002, 8) == BatchDecision(
            0, pytest.approx(0.005), ()
        )
        assert policy.next_batch(queue, PROFILE, 0.005, 8) == BatchDecision(2, None, ())

    def test_no_wait_when_the_next_arrival_is_not_expected_in_time(self) -> None:
        policy = DeadlineAwarePolicy(max_wait_s=0.004)
        queue = q((0.001, 1.0))
        assert policy.next_batch(queue, PROFILE, 0.001, 8, 0.010) == BatchDecision(1, None, ())
        assert policy.next_batch(queue, PROFILE, 0.001, 8, 0.002) == BatchDecision(
            0, pytest.approx(0.005), ()
        )

    def test_margin_is_kept_before_the_deadline(self) -> None:
        policy = DeadlineAwarePolicy(margin_s=0.003)
        # T(2)=0.012 + 0.003 > 0.013: only one goes; alone it needs 0.013 <= 0.013
        queue = q((0.0, 0.013), (0.0, 0.013))
        assert policy.next_batch(queue, PROFILE, 0.0, 8) == BatchDecision(1, None, ())


class TestMaxDelay:
    def test_waits_from_the_oldest_request(self) -> None:
        policy = MaxDelayPolicy(max_queue_delay_s=0.005)
        queue = q((0.001, 1.0), (0.003, 1.0))
        assert policy.next_batch(queue, PROFILE, 0.004, 8) == BatchDecision(
            0, pytest.approx(0.006), ()
        )
        assert policy.next_batch(queue, PROFILE, 0.006, 8) == BatchDecision(2, None, ())

    def test_preferred_size_goes_at_once(self) -> None:
        policy = MaxDelayPolicy(max_queue_delay_s=1.0, preferred_batch_sizes=(2, 4))
        queue = q(*[(0.0, 5.0)] * 3)
        assert policy.next_batch(queue, PROFILE, 0.0, 8) == BatchDecision(2, None, ())

    def test_full_batch_goes_at_once(self) -> None:
        policy = MaxDelayPolicy(max_queue_delay_s=1.0)
        queue = q(*[(0.0, 5.0)] * 10)
        assert policy.next_batch(queue, PROFILE, 0.0, 8) == BatchDecision(8, None, ())


class TestFixedSize:
    def test_releases_exactly_size(self) -> None:
        policy = FixedSizePolicy(4)
        queue = q(*[(0.0, 5.0)] * 6)
        assert policy.next_batch(queue, PROFILE, 0.0, 8) == BatchDecision(4, None, ())

    def test_partial_batch_only_when_head_would_be_late(self) -> None:
        policy = FixedSizePolicy(4)
        queue = q((0.0, 0.100), (0.0, 0.100))
        assert policy.next_batch(queue, PROFILE, 0.0, 8) == BatchDecision(
            0, pytest.approx(0.088), ()
        )
        latest = 0.100 - PROFILE.latency_s(2)
        assert policy.next_batch(queue, PROFILE, latest, 8) == BatchDecision(2, None, ())

    def test_rejects_nonpositive_size(self) -> None:
        with pytest.raises(ValueError, match="0 must be >= 1"):
            FixedSizePolicy(0)


def test_registry_builds_each_named_policy() -> None:
    cfg = DynamicBatching(BatchPolicyName.MAX_DELAY, 2000, (4,))
    assert make_policy(cfg, 8) == MaxDelayPolicy(0.002, (4,))
    assert make_policy(DynamicBatching(BatchPolicyName.FIXED, 0, (2, 4)), 8) == FixedSizePolicy(4)
    assert make_policy(DynamicBatching(), 8) == DeadlineAwarePolicy(float("inf"), 0.001, True)
    capped = DynamicBatching(
        BatchPolicyName.DEADLINE_AWARE, 5000, latency_margin_microseconds=0, shed_for_goodput=False
    )
    assert make_policy(capped, 8) == DeadlineAwarePolicy(0.005, 0.0)
    assert make_policy(DynamicBatching(BatchPolicyName.AIMD), 8) == AimdPolicy()


class TestGoodputShedding:
    """Under a backlog the head is near its deadline: batch 1 would be all that fits."""

    LAT = LatencyProfile({1: 0.010, 8: 0.020})  # batch 8 serves 400/s, batch 1 100/s

    def backlog(self) -> list[QueuedRequest]:
        # three requests 10.5 ms from their deadline (only a batch of 1 fits them), then
        # sixteen with 35 ms left
        return [QueuedRequest(0.0, 0.0105)] * 3 + [QueuedRequest(0.0, 0.035)] * 16

    def test_published_rule_runs_the_head_alone(self) -> None:
        decision = DeadlineAwarePolicy().next_batch(self.backlog(), self.LAT, 0.0, 8)
        assert decision == BatchDecision(1, None, ())

    def test_goodput_rule_skips_the_head_when_that_serves_more(self) -> None:
        # the head alone, then 8 by 30 ms, then 8 by 50 ms: 1 + 6 on time; skipping the
        # three heads: 8 by 20 ms on time, then 8 by 40 ms late: 8 on time
        policy = DeadlineAwarePolicy(shed_for_goodput=True)
        decision = policy.next_batch(self.backlog(), self.LAT, 0.0, 8)
        assert decision == BatchDecision(8, None, (0, 1, 2))

    def test_a_head_that_costs_nothing_is_kept(self) -> None:
        # two heads, eight with 50 ms: the head alone, then 8 by 30 ms (one head late),
        # then 1 by 40 ms: 9 on time, against 8 when both heads are skipped
        policy = DeadlineAwarePolicy(shed_for_goodput=True)
        queue = [QueuedRequest(0.0, 0.0105)] * 2 + [QueuedRequest(0.0, 0.050)] * 8
        assert policy.next_batch(queue, self.LAT, 0.0, 8) == BatchDecision(1, None, ())


def test_aimd_grows_by_one_and_backs_off_by_ten_percent() -> None:
    policy = AimdPolicy()
    queue = [QueuedRequest(0.0, 1.0)] * 20
    assert policy.next_batch(queue, LatencyProfile({1: 0.01}), 0.0, 16).batch_size == 1
    for _ in range(11):
        policy.feedback(policy.cap, late=False, max_batch_size=16)
    assert policy.cap == 12
    policy.feedback(12, late=True, max_batch_size=16)
    assert policy.cap == 10  # int(12 * 0.9)
    for _ in range(10):
        policy.feedback(policy.cap, late=False, max_batch_size=16)
    assert policy.cap == 16  # capped at the family's max batch size
    assert policy.next_batch(queue, LatencyProfile({1: 0.01}), 0.0, 16).batch_size == 16


queues = st.lists(
    st.tuples(st.floats(0, 1), st.floats(0, 2)).map(lambda p: QueuedRequest(p[0], p[0] + p[1])),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(queue=queues, now=st.floats(0, 2), max_b=st.integers(1, 8))
def test_deadline_aware_never_releases_a_late_batch(
    queue: list[QueuedRequest], now: float, max_b: int
) -> None:
    decision = DeadlineAwarePolicy().next_batch(queue, PROFILE, now, max_b)
    live = [r for i, r in enumerate(queue) if i not in set(decision.drop)]
    assert decision.batch_size <= min(max_b, len(live))
    if decision.batch_size:
        batch = live[: decision.batch_size]
        assert now + PROFILE.latency_s(decision.batch_size) <= min(r.deadline_s for r in batch)
    elif live:
        assert decision.wait_until_s is not None and decision.wait_until_s > now
    dropped = [queue[i] for i in decision.drop]
    assert all(now + PROFILE.latency_s(1) > r.deadline_s for r in dropped)
