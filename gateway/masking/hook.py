"""The masking hook: results of masked sessions reach the client with identifiers masked.

Runs right after the policy hook (it reads the policy decision) and before the journal (so the
statement entry says which masking rules apply). A session is masked when a masking rule
applies to it, and a statement is masked too when a ``phi: masked`` rule allowed it. For those
statements the hook: refuses calls of functions off the allow-list (built-in IMMUTABLE/STABLE
functions and the rules' ``functions``; a function can read a masked table the gateway never
sees) and statements whose operators or casts run user functions off that list, refuses writes
in statements that read masked relations (the values would be copied in clear), and hands the
relay a :class:`~gateway.masking.filter.MaskingFilter` that rewrites each result's rows. Every
other statement gets no filter and stays on the relay's fast path.

The catalog it decides on (``catalog.py``) is forgotten on the policy's change signals
(``PolicyHook.on_catalog_change``) and read by the next masked statement; while the session's
own DDL is in flight or not committed (``PolicyHook.catalog_unsettled``) that catalog cannot
show it, so the session's statements that read are refused.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from policies.detectors import Detector
from policies.masking import MaskProfile
from policies.model import Decision
from policies.statement import Statement as ParsedStatement
from policies.views import CATALOG_CHANGING, EARLIER_IN_QUERY, READS_NOTHING

from ..errors import PolicyDenied
from ..journal.hook import POLICY_TAG
from ..policy.hook import DECISION_TAG, PolicyHook
from ..proxy.hooks import (
    MUST_AWAIT,
    Hook,
    MustAwait,
    Phase,
    SessionInfo,
    SessionSummary,
    Statement,
    Verdict,
)
from ..settings.config import DatabaseSettings, Settings
from .catalog import Catalog, MaskingCatalog
from .columns import ColumnMap
from .copy import copy_plan
from .filter import MaskingFilter
from .keys import HashKey, random_key

log = logging.getLogger("phigate.masking")

READ_ONLY = frozenset({"select", "transaction", "session", "utility", "copy_out"})


@dataclass(slots=True)
class _State:
    info: SessionInfo
    profile: MaskProfile | None
    forced: MaskProfile | None = None  # for statements a `phi: masked` rule allowed
    maps: dict[int, ColumnMap] = field(default_factory=dict)  # id(profile) → map
    detectors: dict[int, Detector | None] = field(default_factory=dict)


class MaskingHook(Hook):
    def __init__(self, settings: Settings, policy: PolicyHook) -> None:
        self._settings = settings
        self._policy = policy
        # Keyed hashes are stable while the key is: equal values hash equally across
        # sessions (and, with masking.hash_key_file, restarts), so joins and GROUP BY on
        # hashed columns still match. Without a key file: one random key per process.
        self._process_key = random_key()
        self._master = self._configured_key(settings)
        self._keys: dict[str, bytes] = {}  # database → its derived key (gateway/masking/keys)
        self._catalog = MaskingCatalog(settings.limits.max_message_size)
        # forgotten whenever the policy's catalog may have changed; read by the next statement
        policy.on_catalog_change(self._catalog.changed)
        self._sessions: dict[str, _State] = {}

    def _configured_key(self, settings: Settings) -> HashKey:
        masking = settings.masking
        if masking is not None and masking.hash_key is not None:
            return masking.hash_key
        return self._process_key

    def _key_for(self, database: str) -> bytes:
        """The hash key of a database's domain (its own unless hash_domains joins it)."""
        key = self._keys.get(database)
        if key is None:
            masking = self._settings.masking
            domain = masking.domain(database) if masking is not None else database
            key = self._keys[database] = self._master.for_domain(domain)
        return key

    def config_loaded(self, settings: Settings) -> None:
        master = self._configured_key(settings)
        if not hmac.compare_digest(master.secret, self._master.secret):
            log.info("masking hash key changed: hashed values get new pseudonyms",
                     extra={"key": master.source})
        self._master, self._keys = master, {}  # rotation: the next statement uses it
        self._settings = settings
        for state in self._sessions.values():  # the policy hook already loaded the files
            state.profile = self._profile(state.info)
            state.forced = None
            state.maps.clear()
            state.detectors.clear()

    async def session_started(self, session: SessionInfo) -> None:
        self._sessions[session.session_id] = _State(session, self._profile(session))

    def session_ended(self, session: SessionInfo, summary: SessionSummary) -> None:
        self._sessions.pop(session.session_id, None)

    def _profile(self, info: SessionInfo, *, forced: bool = False) -> MaskProfile | None:
        return self._policy.engine.mask_profile(info.identity, info.groups, info.database,
                                                forced=forced)

    def before_statement_now(self, statement: Statement) -> Verdict | None | MustAwait:
        """Nothing to do for a session that is not masked and a statement no ``phi: masked``
        rule allowed (nearly all of them): the relay's fast path, without an await."""
        decided = self._decided(statement)
        if decided is None or (decided[0].profile is None and not decided[1].masked):
            return None
        return MUST_AWAIT  # the column map may have to be read from the catalog

    def _decided(self, statement: Statement) -> tuple[_State, Decision] | None:
        """The session and the policy's decision of a statement that runs; else None."""
        if statement.phase is Phase.PARSE or statement.verdict.refusal is not None:
            return None
        decision = statement.tags.get(DECISION_TAG)
        state = self._sessions.get(statement.session.session_id)
        if state is None or not isinstance(decision, Decision):
            return None
        return state, decision

    async def before_statement(self, statement: Statement) -> Verdict | None:
        decided = self._decided(statement)
        if decided is None:
            return None
        state, decision = decided
        profile = state.profile
        if profile is None and decision.masked:
            state.forced = state.forced or self._profile(state.info, forced=True)
            profile = state.forced
        if profile is None:
            return None  # not a masked session: the relay's fast path
        _refuse_unsettled(self._policy.catalog_unsettled(state.info.session_id), decision)
        db = self._settings.database_for(state.info.database)
        if db is None:
            raise PolicyDenied("phigate: no upstream for this database")
        dbname = db.dbname or state.info.database
        column_map = await self._column_map(state, profile, db, dbname)
        self._check_functions(decision, column_map, profile)
        names = column_map.names_for(decision.tables)
        if names and not READ_ONLY.issuperset(decision.classes):
            raise PolicyDenied(
                "phigate: this session sees masked values; statements that read masked "
                f"tables may not also write ({', '.join(sorted(decision.classes))})",
                hint="read and write in separate statements, without copying masked columns")
        copy = (copy_plan(statement.sql, column_map, decision.tables)
                if "copy_out" in decision.classes else None)
        self._journal(statement, profile)
        return Verdict(result_filter=MaskingFilter(
            column_map, statement.sql, masked_names=names,
            detector=self._detector(state, profile), key=self._key_for(state.info.database),
            copy=copy, unlisted=functools.partial(self._catalog.unlisted, db, dbname,
                                                  column_map.catalog)))

    async def _column_map(self, state: _State, profile: MaskProfile, db: DatabaseSettings,
                          dbname: str) -> ColumnMap:
        """The session's map on the catalog in force (rebuilt when it was read again)."""
        column_map = state.maps.get(id(profile))
        if column_map is not None and column_map.catalog is self._catalog.current(db, dbname):
            return column_map
        try:
            catalog = await self._catalog.get(db, dbname)
        except Exception as e:  # fail closed: without the catalog nothing is shown
            log.error("could not read the catalog for masking: %s", e)
            raise PolicyDenied("phigate: masking cannot read the catalog; statement "
                               "refused") from e
        column_map = state.maps[id(profile)] = ColumnMap(catalog, profile)
        return column_map

    def _detector(self, state: _State, profile: MaskProfile) -> Detector | None:
        if id(profile) not in state.detectors:
            state.detectors[id(profile)] = Detector(
                profile.detect, profile.mrn_pattern) if profile.detect else None
        return state.detectors[id(profile)]

    @staticmethod
    def _check_functions(decision: Decision, column_map: ColumnMap,
                         profile: MaskProfile) -> None:
        catalog = column_map.catalog
        parts = decision.parts or (decision,)  # parts hold the resolved statements
        statements = [s for p in parts for s in p.statements]
        names = dict.fromkeys(f for s in statements for f in s.functions)
        for name in names:
            schema, _, bare = name.rpartition(".")
            if name in profile.functions or (schema in ("", "pg_catalog")
                                             and bare in catalog.functions):
                continue
            raise PolicyDenied(
                f"phigate: function {name}() is not on the masked sessions' allow-list; "
                "refused (a function can read masked tables the gateway cannot see)",
                hint="ask for it to be added to the masking rule's functions")
        for what, function in _hidden_calls(catalog, statements):
            if function not in profile.functions and (
                    function.rpartition(".")[2] not in profile.functions):
                raise PolicyDenied(
                    f"phigate: {what} runs function {function}(), which is not on the masked "
                    "sessions' allow-list; refused (a function can read masked tables the "
                    "gateway cannot see)",
                    hint="ask for it to be added to the masking rule's functions")

    @staticmethod
    def _journal(statement: Statement, profile: MaskProfile) -> None:
        fields = statement.tags.get(POLICY_TAG)
        if isinstance(fields, dict):  # shared with cached decisions: never mutate it
            statement.tags[POLICY_TAG] = {**fields, "masking": list(profile.rules) or
                                          ["phi-masked"]}


def _refuse_unsettled(why: str | None, decision: Decision) -> None:
    """While the session's DDL is in flight or not committed (``why``), or after DDL earlier
    in the query string, the catalog masking read (committed state, on a connection of its
    own) may not say what the session's relations and functions are: only statements that
    read no rows run."""
    statements = [s for p in decision.parts or (decision,) for s in p.statements]
    if why is None:
        earlier = [s for s in statements[:-1] if not CATALOG_CHANGING.isdisjoint(s.classes)]
        why = EARLIER_IN_QUERY if earlier else None
    if why is None or all(READS_NOTHING.issuperset(s.classes) for s in statements):
        return
    raise PolicyDenied(
        "phigate: this session's results are masked, and the catalog masking reads does not "
        f"show its DDL yet ({why}); statements that read are refused until it is committed",
        hint="COMMIT (or ROLLBACK) the DDL, then read")


def _hidden_calls(catalog: Catalog, statements: list[ParsedStatement]
                  ) -> Iterator[tuple[str, str]]:
    """(what runs it, "schema.function") for every user function the statements' operators
    and casts run: operators by name and casts by target type (the operand types are not
    resolved, so every overload counts), implicit and assignment casts always."""
    for stmt in statements:
        for operator in stmt.operators:
            for function in sorted(catalog.operators.get(operator, ())):
                yield f"operator {operator}", function
        for target in stmt.casts:
            found = catalog.casts.get(target) or catalog.casts.get(target.rpartition(".")[2])
            for function in sorted(found or ()):
                yield f"a cast to {target}", function
    for function, target in sorted(catalog.implicit.items()):
        yield f"the implicit cast to {target}", function
