"""The entry-point wrapper: a wrong setting ends in one line and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from typing import Callable, Optional

from pipeline.errors import ConfigError


def run(main: Callable[[Optional[list[str]]], int]) -> None:
    try:
        code = main(None)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
