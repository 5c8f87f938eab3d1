"""Apache Kafka's jars from Maven Central (``devbroker/pom.xml``), and a Java to run them on.

Resolved by Maven once into a cache folder named by the pom's digest, then
reused; a missing Java or Maven is one line that names the package to install.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from devbroker.base import BrokerError, log

POM = Path(__file__).with_name("pom.xml")
MIN_JAVA = 17


def kafka_version() -> str:
    """The Apache Kafka version pinned in devbroker/pom.xml."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ElementTree.parse(POM).find("m:properties/m:kafka.version", namespace)
    if version is None or not version.text:
        raise BrokerError(f"{POM} names no kafka.version")
    return version.text.strip()


def cache_root() -> Path:
    """Where resolved jars are kept between runs: $KAFKA_ORDERS_CACHE, else ~/.cache/kafka-orders."""
    explicit = os.environ.get("KAFKA_ORDERS_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kafka-orders"


def java_command() -> str:
    """The ``java`` to run, checked to be Java 17 or newer; a one-line error saying what to install otherwise."""
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise BrokerError(f"Java {MIN_JAVA}+ is needed to run Apache Kafka: apt-get install openjdk-17-jre-headless")
    result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    found = re.search(r'version "(\d+)', result.stderr)
    if not found or int(found.group(1)) < MIN_JAVA:
        raise BrokerError(f"Apache Kafka 4 needs Java {MIN_JAVA}+, {java} is {result.stderr.splitlines()[:1]}")
    return java


def resolve_jars() -> Path:
    """The folder of the broker's jars, resolved by Maven on first use and reused after that."""
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:12]
    jars = cache_root() / f"kafka-{kafka_version()}-{digest}"
    if (jars / ".complete").exists():
        return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"Apache Maven is needed once, to fetch Apache Kafka {kafka_version()} from Maven Central: apt-get install maven"
        )
    jars.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=jars.name + ".partial-", dir=jars.parent))
    log.info("Fetching Apache Kafka %s with Maven into %s (once)", kafka_version(), jars)
    result = subprocess.run(
        [mvn, "-B", "-q", "-f", str(POM), "dependency:copy-dependencies",
         "-DincludeScope=runtime", f"-DoutputDirectory={partial}"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900,
    )
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        detail = " | ".join(line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line)[:600]
        raise BrokerError(f"Maven could not fetch Apache Kafka {kafka_version()}: {detail or 'exit code ' + str(result.returncode)}")
    (partial / ".complete").touch()
    try:
        partial.rename(jars)
    except OSError:  # another process finished first: keep its copy
        shutil.rmtree(partial, ignore_errors=True)
    return jars
