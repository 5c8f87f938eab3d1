"""A secured dev cluster: SASL/SCRAM users, an authoriser that denies what no ACL allows, least-privilege ACLs.

What a production cluster looks like to this project's scripts: every client
authenticates (SCRAM-SHA-512), and the application's user may do only what
``APP_ACLS`` grants (the list docs/security.md gives as the request to send
to a cluster's admins). The admin is a super user; it creates the topics,
since the application may not.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import (
    AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient, ResourcePatternType, ResourceType,
)

MECHANISM = "SCRAM-SHA-512"
APP_PREFIX = "orders"
# (resource type, operations) on every resource whose name starts with APP_PREFIX; nothing on the cluster.
APP_ACLS = (
    (ResourceType.TOPIC, (AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS)),
    (ResourceType.GROUP, (AclOperation.READ, AclOperation.DESCRIBE)),
    (ResourceType.TRANSACTIONAL_ID, (AclOperation.WRITE, AclOperation.DESCRIBE)),
)


@dataclass(frozen=True)
class ScramUsers:
    """The admin (a super user) and the application's user, with passwords drawn anew for each cluster."""

    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    app_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    admin: str = "admin"
    app: str = "orders-app"

    def format_arguments(self) -> list[str]:
        """``kafka-storage format`` arguments that create both users with the cluster's metadata."""
        return [argument for user, password in ((self.admin, self.admin_password), (self.app, self.app_password))
                for argument in ("--add-scram", f"{MECHANISM}=[name={user},password={password}]")]

    def client_properties(self, bootstrap_servers: str, user: str, password: str) -> str:
        """A librdkafka properties file (``--config``) for ``user``."""
        return (f"bootstrap.servers={bootstrap_servers}\nsecurity.protocol=SASL_PLAINTEXT\n"
                f"sasl.mechanisms={MECHANISM}\nsasl.username={user}\nsasl.password={password}\n")

    def admin_config(self, bootstrap_servers: str) -> dict[str, str]:
        return {"bootstrap.servers": bootstrap_servers, "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanisms": MECHANISM, "sasl.username": self.admin, "sasl.password": self.admin_password}

    def write_properties(self, directory: Path, bootstrap_servers: str) -> tuple[Path, Path]:
        """``admin.properties`` and ``client.properties`` (the application's), readable by their owner only."""
        paths = []
        for name, user, password in (("admin", self.admin, self.admin_password),
                                     ("client", self.app, self.app_password)):
            path = directory / f"{name}.properties"
            path.write_text(self.client_properties(bootstrap_servers, user, password), encoding="utf-8")
            path.chmod(0o600)
            paths.append(path)
        return paths[0], paths[1]


def app_acl_bindings(user: str) -> list[AclBinding]:
    return [
        AclBinding(resource, APP_PREFIX, ResourcePatternType.PREFIXED, f"User:{user}", "*", operation,
                   AclPermissionType.ALLOW)
        for resource, operations in APP_ACLS for operation in operations
    ]


def grant(admin: AdminClient, bindings: list[AclBinding], timeout_s: float = 30.0) -> None:
    for future in admin.create_acls(bindings, request_timeout=timeout_s).values():
        future.result()


def revoke(admin: AdminClient, bindings: list[AclBinding], timeout_s: float = 30.0) -> None:
    filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                                b.permission_type) for b in bindings]
    for future in admin.delete_acls(filters, request_timeout=timeout_s).values():
        future.result()
