"""One base for every hashed settings class (a run's ``RunConfig``, an evaluation ``EvalSuite``, the
``MechanismSettings``, the ``AuditSettings``): which fields enter the key, a schema number, one hash.

A stored result's file name carries its settings' key, so a key must never move for results already stored: a
field added later enters the key only when set to something other than its default (``LATER``), and a change of
meaning bumps the schema.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, ClassVar


def digest(payload: dict[str, Any], digits: int) -> str:
    """The first ``digits`` hex digits of the sha256 of ``payload`` as sorted-key JSON."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()[:digits]


class Hashed:
    """Mixin for frozen dataclasses: ``identity()`` (the fields that define the result) and ``key()`` (their hash
    with the schema). Subclasses set ``KEY_DIGITS``, ``SCHEMA``, ``KEPT_OUT`` and ``LATER``."""

    #: hex digits of the key
    KEY_DIGITS: ClassVar[int] = 10
    #: schema numbers hashed with the fields (bumped when a change makes stored results stale)
    SCHEMA: ClassVar[dict[str, int]] = {"schema": 1}
    #: fields that do not change the result (where and how fast, not what)
    KEPT_OUT: ClassVar[tuple[str, ...]] = ()
    #: fields added after results were stored, with the default at which they stay out of the key
    LATER: ClassVar[dict[str, Any]] = {}

    def identity(self) -> dict[str, Any]:
        """The fields that define the result: all but ``KEPT_OUT``, and ``LATER`` ones only when set."""
        return {k: v for k, v in dataclasses.asdict(self).items()  # type: ignore[call-overload]
                if k not in self.KEPT_OUT and not (k in self.LATER and v == self.LATER[k])}

    def key_payload(self) -> dict[str, Any]:
        """What ``key`` hashes: ``identity()`` and the schema."""
        return {**self.identity(), **self.SCHEMA}

    def key(self) -> str:
        """Stable hash of ``key_payload()`` (``KEY_DIGITS`` hex digits)."""
        return digest(self.key_payload(), self.KEY_DIGITS)
