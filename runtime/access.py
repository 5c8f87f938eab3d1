"""Refusals that waiting cannot fix: failed authentication and missing ACLs, named with what to grant.

librdkafka reports a failed login through the error callback (``_AUTHENTICATION``:
"SASL authentication error: ..."), and a missing ACL as the broker's
``*_AUTHORIZATION_FAILED`` wherever the request was refused: a fetch, a
delivery report, a commit, a transaction. Neither fixes itself by retrying,
unlike a broker that is down or a leader that moves, so each becomes one
:class:`AccessDenied` line and the script stops.
"""

from __future__ import annotations

import re
from typing import Optional

from confluent_kafka import KafkaError

from runtime.errors import PipelineError

AUTHENTICATION = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED,
                            KafkaError.UNSUPPORTED_SASL_MECHANISM, KafkaError._SSL})
RESOURCE_OF = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "Topic",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "Group",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "Cluster",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "TransactionalId",
}
_QUOTED_TOPIC = re.compile(r'"([^"]+)" \[\d+\]')


class AccessDenied(PipelineError):
    """The cluster refused who we are or what we asked for; the script stops instead of retrying."""


def is_refusal(error: KafkaError) -> bool:
    return error.code() in AUTHENTICATION or error.code() in RESOURCE_OF


def principal_of(properties: dict[str, str]) -> str:
    user = properties.get("sasl.username")
    return f"User:{user}" if user else "this client's principal"


def denied(error: KafkaError, principal: str, operation: str = "", name: str = "") -> AccessDenied:
    """The one line for a refusal: who, what was refused, and what to change or grant."""
    if error.code() in AUTHENTICATION:
        return AccessDenied(
            f"authentication failed for {principal} ({error.str()}): check security.protocol, sasl.mechanisms, "
            "sasl.username, sasl.password and ssl.* in the --config file"
        )
    resource = RESOURCE_OF.get(error.code(), "resource")
    target = f"{resource} {name or _topic_in(error.str()) or ''}".strip()
    if operation:
        return AccessDenied(f"{principal} may not {operation} {target} ({error.str()}): ask the cluster's admins to "
                            f"grant {operation} on {target} (docs/security.md lists every ACL the scripts need)")
    return AccessDenied(f"{principal} was refused access to {target} ({error.str()}): ask the cluster's admins for "
                        "the ACLs docs/security.md lists")


def _topic_in(text: str) -> Optional[str]:
    """The topic a librdkafka message names as ``"topic" [partition]``, if any."""
    found = _QUOTED_TOPIC.search(text)
    return found.group(1) if found else None
