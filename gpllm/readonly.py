"""Frozen records that keep read-only views of their fields, and still pickle.

Several records wrap their provenance in a ``MappingProxyType`` (so it cannot
be edited behind the record's back), which ``pickle`` refuses. Pickling them
by their constructor arguments instead also re-runs their checks on the way
in, so a record that crosses a process boundary is exactly as valid as one
built here.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType


class PicklesThroughInit:
    """Mixin for frozen dataclasses: pickle as ``type(self)(*init_fields)``."""

    def __reduce__(self):
        values = []
        for f in dataclasses.fields(self):
            if f.init:
                value = getattr(self, f.name)
                values.append(dict(value) if isinstance(value, MappingProxyType) else value)
        return type(self), tuple(values)
