"""Print the global running average and per-partition counts from the main consumers' checkpoints.

Run: ``python -m consumer.stats [--json]``. It reads the stats topic only, so
it works whether zero, one or several main consumers are running.

``--reset`` forgets a group's state: its checkpoints get tombstones and its
committed offsets are deleted, so its next member starts every partition from
the beginning with empty state. It refuses while the group has members, as
the broker lists them (DescribeGroups; Tansu lists none, so stop them first there).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional

from confluent_kafka import KafkaError, KafkaException

from app import settings as flags
from app.settings import env
from domain.average import PartitionStats
from runtime.checkpoints import Checkpoint, CheckpointStore, partition_checkpoints
from runtime.cli import run
from runtime.clients import PRODUCER_ENFORCED, Clients
from runtime.errors import PipelineError
from runtime.logs import setup_logging
from runtime.reading import partitions_of


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m consumer.stats", description=__doc__.split("\n")[0])
    parser.add_argument("--group-id", default=env("MAIN_GROUP_ID", "orders-main"), help="the main consumers' group %(default)s")
    parser.add_argument("--json", action="store_true", help="print one JSON object for tools and tests")
    parser.add_argument("--reset", action="store_true",
                        help="delete the group's checkpoints and committed offsets (refused while it has members)")
    flags.add_connection_args(parser)
    flags.add_stats_topic_arg(parser)
    args = parser.parse_args(argv)
    args.log_level = "WARNING" if args.log_level == "INFO" else args.log_level
    return args


def summarize(checkpoints: dict[str, Checkpoint], group: str, topics: list[str]) -> dict[str, object]:
    """The global figures and, per partition of the main consumer's topics (orders, re-drive), its checkpoint's."""
    partitions: dict[str, dict[str, object]] = {}
    whole = PartitionStats()
    for topic in topics:
        for partition, checkpoint in sorted(partition_checkpoints(checkpoints, group, topic).items()):
            stats = PartitionStats.of(checkpoint.state)
            whole.add(stats)
            partitions[f"{topic}[{partition}]"] = {
                "processed": stats.processed,
                "average": stats.average,
                "retried": stats.retried,
                "dead_lettered": stats.dead_lettered,
                "next_offset": checkpoint.next_offset,
            }
    return {"processed": whole.processed, "average": whole.average, "retried": whole.retried,
            "dead_lettered": whole.dead_lettered, "partitions": partitions}


def reset(clients: Clients, group_id: str, stats_topic: str, checkpoints: dict[str, Checkpoint]) -> int:
    """Tombstones for every checkpoint of the group, then its committed offsets deleted; never while it has members."""
    admin = clients.admin()
    [described] = admin.describe_consumer_groups([group_id], request_timeout=30).values()
    members = described.result().members
    if members:
        hosts = ", ".join(sorted({member.host for member in members}))
        raise PipelineError(f"group {group_id} has {len(members)} active member(s) ({hosts}); stop them first")
    producer = clients.producer({}, PRODUCER_ENFORCED)
    for key in checkpoints:
        producer.produce(stats_topic, key=key.encode(), value=None)
    if producer.flush(30):
        raise PipelineError("the tombstones were not acknowledged; nothing was reset for sure, run it again")
    [deleted] = admin.delete_consumer_groups([group_id], request_timeout=30).values()
    try:
        deleted.result()
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.GROUP_ID_NOT_FOUND:
            raise
    print(f"Reset group {group_id}: {len(checkpoints)} checkpoint(s) removed from {stats_topic}, "
          "committed offsets deleted; its next member starts from the beginning")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    clients = Clients(flags.kafka_settings(args), "orders-stats")
    try:
        partitions_of(clients, [args.stats_topic])  # waits a moment for a new topic to reach every broker
    except PipelineError:
        raise PipelineError(f"the stats topic {args.stats_topic} does not exist (or {clients.status.principal} may not "
                            "Describe it): check --stats-topic; the consumers create it when they first start") from None
    checkpoints = CheckpointStore(clients, args.stats_topic, args.group_id).load()
    if args.reset:
        return reset(clients, args.group_id, args.stats_topic, checkpoints)
    result = summarize(checkpoints, args.group_id, [args.orders_topic, args.redrive_topic])
    if args.json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
        return 0
    average = result["average"]
    print(f"{args.orders_topic} and {args.redrive_topic} (group {args.group_id}): {result['processed']} orders "
          f"processed, running average "
          f"{'n/a' if average is None else f'{average:.4f}'}")
    for partition, figures in result["partitions"].items():  # type: ignore[union-attr]
        avg = figures["average"]
        print(f"  {partition}: processed={figures['processed']} "
              f"average={'n/a' if avg is None else f'{avg:.4f}'} retried={figures['retried']} "
              f"dead-lettered={figures['dead_lettered']} next offset={figures['next_offset']}")
    return 0


if __name__ == "__main__":
    run(main)
