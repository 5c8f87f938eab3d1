import random

import pytest

from domain.backoff import BackoffPolicy
from domain.headers import LAST_FAILURE, RETRY_DUE
from domain.retry import ForwardedCounts, RetrySchedule, due_time_ms


def test_plain_schedule_is_1_2_4_capped():
    policy = BackoffPolicy(base_s=1, factor=2, cap_s=4, jitter=0)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 10)] == [1, 2, 4, 4, 4]
    assert policy.delay_s(10_000) == 4  # no overflow for absurd counts


def test_jitter_never_shortens_and_is_bounded():
    policy = BackoffPolicy(base_s=1, factor=2, cap_s=4, jitter=0.2, rng=random.Random(1))
    for failures in range(1, 6):
        plain = policy.plain_delay_s(failures)
        delays = [policy.delay_s(failures) for _ in range(500)]
        assert min(delays) >= plain
        assert max(delays) <= plain * 1.2
        assert max(delays) > min(delays)


@pytest.mark.parametrize("kwargs", [{"base_s": -1}, {"factor": 0.5}, {"jitter": 2}, {"cap_s": -1}])
def test_policy_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)


POLICY = BackoffPolicy(base_s=1, factor=2, cap_s=4, jitter=0)


def test_due_time_honours_the_stamp():
    assert due_time_ms([(RETRY_DUE, b"5000")], 1000, now_ms=1000, retry_count=1, policy=POLICY) == 5000


def test_due_time_caps_a_far_stamp():
    assert due_time_ms([(RETRY_DUE, b"999999999999")], 0, now_ms=1000, retry_count=1, policy=POLICY) == 1000 + 4001


def test_a_stamp_from_a_clock_running_behind_waits_for_the_record_time_plus_the_backoff():
    written_ms = 100_000  # the broker's clock; the stamping host's clock ran 9 s behind
    assert due_time_ms([(RETRY_DUE, b"92000")], written_ms, now_ms=100_050, retry_count=1, policy=POLICY) == 101_000
    assert due_time_ms([(RETRY_DUE, b"92000")], written_ms, now_ms=100_050, retry_count=3, policy=POLICY) == 104_000


def test_due_time_without_stamp_uses_last_failure_or_timestamp():
    assert due_time_ms([(LAST_FAILURE, b"2000")], 1000, now_ms=2500, retry_count=2, policy=POLICY) == 2000 + 2001
    assert due_time_ms([(RETRY_DUE, b"junk")], 1000, now_ms=1500, retry_count=1, policy=POLICY) == 1000 + 1001
    assert due_time_ms(None, None, now_ms=1500, retry_count=1, policy=POLICY) == 1500 + 1001


def test_schedule_fires_earliest_first_across_partitions_and_never_early():
    schedule: RetrySchedule[str] = RetrySchedule()
    schedule.push(4000, ("t", 0), "late")
    schedule.push(1000, ("t", 0), "early")  # behind a later one in the same partition: no head-of-line wait
    schedule.push(2000, ("t", 1), "middle")
    assert schedule.next_due_ms() == 1000
    assert schedule.pop_due(999) == []
    assert schedule.pop_due(2000) == [(1000, "early"), (2000, "middle")]
    assert schedule.waiting(("t", 0)) == 1 and schedule.waiting(("t", 1)) == 0
    schedule.forget([("t", 0)])
    assert len(schedule) == 0 and schedule.next_due_ms() is None


def test_forwarded_counts_survive_a_checkpoint_and_start_at_zero_without_one():
    counts = ForwardedCounts.of(None)
    for to_dlq in (False, False, True):
        counts.count(to_dlq)
    assert counts.state() == {"redriven": 2, "dead_lettered": 1}
    assert ForwardedCounts.of(counts.state()) == counts
