"""Every copy names the record it was made from, so a crash never makes a copy twice.

The next owner of a source partition reads the targets for copies naming
offsets after its checkpoint (:mod:`runtime.copies`) and skips them. Values
are UTF-8 decimal strings, like every header of this project.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

HeaderValue = Union[bytes, str, None]
Headers = list[tuple[str, bytes]]
Source = tuple[str, int, int]  # topic, partition, offset

SOURCE_TOPIC = "orders.source.topic"
SOURCE_PARTITION = "orders.source.partition"
SOURCE_OFFSET = "orders.source.offset"
_NAMES = frozenset({SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET})
_MAX_INT_TEXT = 19  # digits


def with_source(headers: Optional[Sequence[tuple[str, HeaderValue]]], source: Source) -> Headers:
    """``headers`` (values as bytes) with the source coordinates replaced by ``source``."""
    kept = [(key, value if isinstance(value, bytes) else (value or "").encode("utf-8", "replace"))
            for key, value in (headers or ()) if key not in _NAMES]
    return kept + source_headers(source)


def source_headers(source: Source) -> Headers:
    """The three headers that name ``source``."""
    topic, partition, offset = source
    return [(SOURCE_TOPIC, topic.encode()), (SOURCE_PARTITION, b"%d" % partition), (SOURCE_OFFSET, b"%d" % offset)]


def source_of(headers: Optional[Sequence[tuple[str, HeaderValue]]]) -> Optional[Source]:
    """The (topic, partition, offset) a copy was made from, if its headers name one well-formed; never raises."""
    found: dict[str, HeaderValue] = {}
    for key, value in headers or ():
        if key in _NAMES:
            found[key] = value  # the last one wins, as everywhere
    topic, partition, offset = (_text(found.get(name)) for name in (SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET))
    partition, offset = (text.strip() if text else text for text in (partition, offset))
    if not topic or not _is_count(partition) or not _is_count(offset):
        return None
    return topic, int(partition), int(offset)  # type: ignore[arg-type]


def _text(value: HeaderValue) -> Optional[str]:
    if value is None or isinstance(value, str):
        return value
    return bytes(value).decode("utf-8", "replace")


def _is_count(text: Optional[str]) -> bool:
    return text is not None and 0 < len(text) <= _MAX_INT_TEXT and text.isascii() and text.isdigit()
