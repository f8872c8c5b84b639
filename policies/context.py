"""The facts about a request that a decision depends on, besides the SQL itself.

The gateway builds one ``RequestContext`` per statement (cheaply: it is a frozen value that
shares the session's mappings) and passes it to ``Engine.decide``. Nothing here reads a clock or
the network: ``now`` and ``phi_rows_last_hour`` are supplied by the caller.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from policies.statement import Statement

if TYPE_CHECKING:
    from policies.functions import FunctionCatalog

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_EMPTY: Any = MappingProxyType({})  # shared, read-only default for the mappings below


def _empty() -> Any:
    return _EMPTY


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who asks, where from, when, and the session state a statement may refer to.

    ``view_dependencies`` maps a view, materialized view or partition — as "schema.name" and as
    bare "name" — to the relations it reads (``policies.views.build_view_dependencies``).
    ``prepared`` maps SQL-level prepared statement names to their classification (the
    ``SessionEffect.statement`` of the PREPARE); ``cursors`` does the same for DECLAREd cursors.
    ``functions`` is the database's :class:`~policies.functions.FunctionCatalog` (what user
    functions' bodies read). ``reason`` is the session's ``phigate.reason`` (None when not
    set). ``grants`` names the
    ``requires_approval`` rules the person holds an active, approved access grant for.
    """

    identity: str
    database: str
    now: dt.datetime
    groups: frozenset[str] = frozenset()
    client_ip: str | IpAddress | None = None
    reason: str | None = None
    phi_rows_last_hour: int = 0
    phi_bytes_last_hour: int = 0
    row_widths: Mapping[str, int] = field(default_factory=_empty)  # policies.sizes
    view_dependencies: Mapping[str, Collection[str]] = field(default_factory=_empty)
    # bare name -> schemas holding a relation of that name (policies.views.relation_homes);
    # empty when not known (an offline preview): a bare name is then the PHI table's
    relation_homes: Mapping[str, frozenset[str]] = field(default_factory=_empty)
    # User functions (policies.functions); None: not known at all (an offline preview), so
    # function bodies are not followed.
    functions: FunctionCatalog | None = None
    prepared: Mapping[str, Statement] = field(default_factory=_empty)
    cursors: Mapping[str, Statement] = field(default_factory=_empty)
    grants: frozenset[str] = frozenset()  # rules the person holds an approved grant for

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError("RequestContext.now must be a timezone-aware datetime")
