"""The entry-point wrapper: errors end in one readable line and an exit code, never a traceback wall."""

from __future__ import annotations

import sys
from typing import Callable, Optional

from confluent_kafka import KafkaException

from runtime.errors import ConfigError, PipelineError


def run(main: Callable[[Optional[list[str]]], int]) -> None:
    """Run ``main``: exit 2 for a wrong setting, 1 for a Kafka or pipeline failure, 130 on Ctrl+C."""
    try:
        code = main(None)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KafkaException as exc:
        print(f"error: Kafka: {exc.args[0].str() if exc.args else exc}", file=sys.stderr)
        code = 1
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
