from confluent_kafka import Message

from domain.average import PartitionStats
from runtime.checkpoints import Checkpoint, checkpoint_key, partition_checkpoints, target_name
from runtime.copies import CopiedBefore, CopyLedger
from runtime.offsets import OffsetTracker

SOURCE = ("orders", 0)
RETRY0, DLQ0 = ("orders_retry", 0), ("orders_dlq", 0)


def test_checkpoint_round_trip_keeps_the_sum_exact():
    stats = PartitionStats(processed=3, total=0.1 + 0.2 + 55.123456789, retried=2, dead_lettered=1)
    checkpoint = Checkpoint(42, {target_name(*RETRY0): 7}, stats.state())
    decoded = Checkpoint.decode(checkpoint.encode())
    assert decoded == checkpoint and PartitionStats.of(decoded.state) == stats


def test_the_state_is_stored_beside_the_offsets_as_it_always_was():
    payload = b'{"next_offset":5,"scan_from":{"orders_retry:0":3},"processed":2,"sum":30.5,"retried":1,"dead_lettered":0}'
    checkpoint = Checkpoint.decode(payload)
    assert checkpoint == Checkpoint(5, {"orders_retry:0": 3}, {"processed": 2, "sum": 30.5, "retried": 1, "dead_lettered": 0})
    assert PartitionStats.of(checkpoint.state) == PartitionStats(2, 30.5, 1, 0)


def test_foreign_or_broken_checkpoints_are_ignored():
    for payload in (None, b"", b"junk", b"[]", b'{"next_offset": -1}', b'{"next_offset": "x"}', b'{"sum": 1}'):
        assert Checkpoint.decode(payload) is None
    assert PartitionStats.of(Checkpoint.decode(b'{"next_offset": 5, "future_field": 1}').state) == PartitionStats()


def test_checkpoint_key_names_group_topic_and_partition():
    assert checkpoint_key("orders-main", "orders", 2) == "orders-main/orders/2"


def test_scan_starts_after_the_last_copy_when_everything_is_applied():
    ledger = CopyLedger()
    ledger.copied(SOURCE, 10, RETRY0, 100)
    ledger.copied(SOURCE, 11, DLQ0, 7)
    assert ledger.scan_from(SOURCE, 12, {RETRY0: 50, DLQ0: 0}) == {RETRY0: 101, DLQ0: 8}


def test_scan_covers_copies_of_sources_not_yet_applied():
    ledger = CopyLedger()
    ledger.copied(SOURCE, 10, RETRY0, 100)
    ledger.copied(SOURCE, 15, RETRY0, 104)  # fired out of order, beyond the position
    ledger.copied(SOURCE, 11, RETRY0, 105)
    assert ledger.scan_from(SOURCE, 12, {RETRY0: 0}) == {RETRY0: 104}
    assert ledger.scan_from(SOURCE, 16, {RETRY0: 0}) == {RETRY0: 106}


def test_base_bounds_targets_this_instance_never_wrote():
    ledger = CopyLedger()
    assert ledger.scan_from(SOURCE, 0, {RETRY0: 33}) == {RETRY0: 33}


def test_a_copy_with_unknown_offset_lies_after_the_last_known():
    ledger = CopyLedger()
    ledger.copied(SOURCE, 1, RETRY0, 9)
    ledger.copied(SOURCE, 2, RETRY0, None)
    assert ledger.scan_from(SOURCE, 2, {}) == {RETRY0: 10}


def test_partition_checkpoints_pick_one_group_and_topic_and_ignore_foreign_keys():
    known = {
        "orders-main/orders/0": Checkpoint(1), "orders-main/orders/2": Checkpoint(3),
        "orders-main/orders_other/1": Checkpoint(5), "orders-retry/orders/0": Checkpoint(7),
        "junk": Checkpoint(9), "orders-main/orders/x": Checkpoint(11),
    }
    assert partition_checkpoints(known, "orders-main", "orders") == {0: Checkpoint(1), 2: Checkpoint(3)}


def test_records_copied_before_are_done_and_the_position_covers_them_whatever_the_order():
    """A skipped record marked done before the handler sees the earlier records of its batch: the commit
    position still covers it once the earlier copy is acknowledged, so its count is never applied twice."""
    before, tracker = CopiedBefore(), OffsetTracker()
    tracker.start(SOURCE, 5)
    before.add(SOURCE, {7: ("orders_dlq", 0, 3)})
    records = [Message(topic="orders", partition=0, offset=offset) for offset in (5, 6, 7)]
    kept, done = before.split(records)
    assert [m.offset() for m in kept] == [5, 6] and done == [(SOURCE, 7, ("orders_dlq", 0, 3))]
    tracker.track(SOURCE, 7)  # what the runtime does for it first
    tracker.complete(SOURCE, 7)
    tracker.track(SOURCE, 6)  # the handler routes 6, the last record it sees
    tracker.consumed(SOURCE, 6)
    assert tracker.position(SOURCE) == 6
    tracker.complete(SOURCE, 6)
    assert tracker.position(SOURCE) == 8
    assert before.split(records) == (records, [])  # each is skipped once
