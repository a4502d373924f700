"""The one rule for user-visible text (posts, messages, group names, profile fields).

Every service checks such a field with a :class:`TextRule`; the rules, documented once
(README, "Rules every service applies"):

- **Length** is counted in characters (Unicode code points), at most ``max_chars``.
- **Required** fields must contain something other than whitespace (``<PREFIX>_EMPTY``).
- **Control characters are refused** (``<PREFIX>_INVALID_CHARACTERS``): every character of
  Unicode category Cc -- C0 (U+0000..U+001F: NUL, ESC, ...), DEL (U+007F) and C1
  (U+0080..U+009F, including the 8-bit CSI U+009B) -- except, in multi-line fields only,
  tab, line feed and carriage return. Single-line fields (names) also refuse the Unicode
  line and paragraph separators (U+2028, U+2029).
- The text is stored as given (no trimming or normalization).

The reasons are ``<PREFIX>_EMPTY``, ``<PREFIX>_TOO_LONG`` and
``<PREFIX>_INVALID_CHARACTERS``, with a per-field prefix (``POST``, ``MESSAGE``, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from feedchat_runtime.errors import InvalidArgument

# Category Cc is exactly U+0000..U+001F and U+007F..U+009F.
_MULTI_LINE_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # keeps \t \n \r
_SINGLE_LINE_BAD = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class TextRule:
    """How one user-visible text field is checked; ``check`` returns the text or raises."""

    field: str
    max_chars: int
    prefix: str
    multiline: bool = False
    required: bool = True

    def check(self, value: str) -> str:
        if self.required and not value.strip():
            raise InvalidArgument.field(
                self.field, "must not be empty", reason=f"{self.prefix}_EMPTY"
            )
        if len(value) > self.max_chars:
            raise InvalidArgument.field(
                self.field,
                f"must be at most {self.max_chars} characters (got {len(value)})",
                reason=f"{self.prefix}_TOO_LONG",
            )
        bad = (_MULTI_LINE_BAD if self.multiline else _SINGLE_LINE_BAD).search(value)
        if bad is not None:
            allowed = " other than tab and newline" if self.multiline else ""
            raise InvalidArgument.field(
                self.field,
                f"must not contain control characters{allowed} "
                f"(U+{ord(bad.group()):04X} at {bad.start()})",
                reason=f"{self.prefix}_INVALID_CHARACTERS",
            )
        return value
