"""Property tests: any text classifies without raising, and the engine never errors or allows
what it cannot parse."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from policies.classify import classify
from policies.context import RequestContext
from policies.engine import Engine
from tests.policies.corpus import CORPUS

NOW = dt.datetime(2024, 6, 4, 14, 0, tzinfo=dt.UTC)
FRAGMENTS = st.sampled_from(
    [e.sql for e in CORPUS[:80]] + ["'", '"', "$$", "--", "/*", "*/", ";", "(", ")", "\\", "E'",
                                    "U&'", "WITH", "SELECT", "FROM", "patients", " "])
SQLISH = st.lists(FRAGMENTS, max_size=8).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), SQLISH))
def test_classify_never_raises(sql: str) -> None:
    result = classify(sql)
    assert (result.error is None) or (result.statements == ())


@settings(max_examples=200, deadline=None)
@given(SQLISH)
def test_engine_never_errors(clinic_policy, sql: str) -> None:  # type: ignore[no-untyped-def]
    engine = Engine([clinic_policy])
    for user, groups in (("alice", {"clinicians"}), ("bob", {"engineers"})):
        d = engine.decide(RequestContext(user, "clinic", NOW, frozenset(groups)), sql)
        assert "engine-error" not in d.rules
        if classify(sql).error is not None:
            assert not d.allowed
