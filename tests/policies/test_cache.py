"""The classification cache: a fingerprint is not a safe key; the exact text is."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pglast import parser

from policies.cache import MAX_CACHED_TEXT, ClassificationCache
from policies.classify import classify
from policies.engine import Engine
from policies.loader import load_policy
from tests.policies.conftest import MakeCtx

EVERYONE_SELECTS = "rules:\n  - name: readers\n    allow: [select, session]\n"


@pytest.mark.parametrize(("safe", "unsafe"), [
    ("SELECT set_config('search_path', 'public', false)",
     "SELECT set_config('role', 'postgres', false)"),
    ("SELECT set_config('application_name', 'x', false)",
     "SELECT set_config('session_authorization', 'postgres', false)"),
])
def test_fingerprint_twins_do_not_share_a_cached_allow(ctx: MakeCtx, safe: str,
                                                       unsafe: str) -> None:
    # The hazard is real: libpg_query's fingerprint ignores the constants.
    assert parser.fingerprint(safe) == parser.fingerprint(unsafe)
    for first, second in ((safe, unsafe), (unsafe, safe)):
        engine = Engine([load_policy(EVERYONE_SELECTS, "p.yaml")])
        decisions = {sql: engine.decide(ctx("anyone"), sql) for sql in (first, second)}
        assert decisions[safe].allowed
        assert not decisions[unsafe].allowed and decisions[unsafe].rules == ("dangerous",)
        assert len(engine.cache) == 2


def test_limit_constants_are_not_shared(ctx: MakeCtx, engine: Engine) -> None:
    small, big = "SELECT * FROM patients LIMIT 10", "SELECT * FROM patients LIMIT 100000"
    assert parser.fingerprint(small) == parser.fingerprint(big)
    assert engine.decide(ctx(), small).allowed
    assert not engine.decide(ctx(), big).allowed


def test_lru_bounds_and_counts() -> None:
    calls: list[str] = []

    def counting(sql: str):  # type: ignore[no-untyped-def]
        calls.append(sql)
        return classify(sql)

    cache = ClassificationCache(2, classifier=counting)
    # Quoted constants keep the shape level out of it: this is the exact-text LRU.
    for sql in ("SELECT '1'", "SELECT '2'", "SELECT '1'", "SELECT '3'", "SELECT '2'"):
        cache.get(sql)
    # SELECT '2' was evicted (least recently used when SELECT '3' came in)
    assert calls == ["SELECT '1'", "SELECT '2'", "SELECT '3'", "SELECT '2'"]
    assert (cache.hits, cache.misses, len(cache)) == (1, 4, 2)
    assert "SELECT '1'" not in cache and "SELECT '3'" in cache
    cache.clear()
    assert len(cache) == 0


def test_large_texts_and_zero_capacity_are_not_kept() -> None:
    cache = ClassificationCache(10)
    big = "SELECT 1 /*" + "x" * MAX_CACHED_TEXT + "*/"
    assert cache.get(big).ok and len(cache) == 0
    off = ClassificationCache(0)
    off.get("SELECT 1")
    assert len(off) == 0
    with pytest.raises(ValueError):
        ClassificationCache(-1)


def test_a_cache_can_be_shared_across_reloads(ctx: MakeCtx, clinic_policy) -> None:  # type: ignore[no-untyped-def]
    cache = ClassificationCache()
    Engine([clinic_policy], cache=cache).decide(ctx(), "SELECT * FROM patients WHERE id = 1")
    stricter = Engine([load_policy("rules: []\n", "none.yaml")], cache=cache)
    assert not stricter.decide(ctx(), "SELECT * FROM patients WHERE id = 1").allowed
    assert cache.hits == 1


def test_shape_key_masks_only_numbers_compared_in_predicates() -> None:
    from policies.cache import shape_key

    assert shape_key("SELECT * FROM t WHERE id=7") == "SELECT * FROM t WHERE id=?"
    assert shape_key("SELECT * FROM t") is None  # nothing to mask: the exact level suffices
    assert shape_key("SELECT * FROM t WHERE id = 5") == shape_key("SELECT * FROM t WHERE id = 9")
    # LIMIT values, even hidden behind comments or parentheses, keep their own key.
    assert shape_key("SELECT * FROM t WHERE a = 1 LIMIT 10") != shape_key(
        "SELECT * FROM t WHERE a = 1 LIMIT 10000")
    assert shape_key("SELECT * FROM t WHERE a = 1 LIMIT (10)") != shape_key(
        "SELECT * FROM t WHERE a = 1 LIMIT (10000)")
    assert shape_key("SELECT * FROM t LIMIT /**/ 10") is None
    # Strings (a reason, a role name) are never shaped.
    assert shape_key("SET phigate.reason = 'INC = 5'") is None
    assert shape_key("SELECT set_config('role', 'x', false)") is None


# The shape key's definition as first written (a look-behind and subn's template): the faster
# form must mask exactly the same numbers, keeping everything else verbatim.
_REFERENCE = re.compile(r"(?<=[=<>])(\s*)[+-]?\d+(?:\.\d+)?(?![\w.$])")


def _reference_shape_key(sql: str) -> str | None:
    if re.search(r"['\"$\\]|--|/\*", sql):
        return None
    masked, count = _REFERENCE.subn(r"\1?", sql)
    return masked if count else None


@given(st.text(alphabet="=<>!  \t\n+-.0123456789eaZ_$;()?'\"", max_size=24))
def test_shape_key_masks_what_the_reference_definition_masks(sql: str) -> None:
    from policies.cache import shape_key

    assert shape_key(sql) == _reference_shape_key(sql)


@pytest.mark.parametrize("sql", [
    "SELECT abalance FROM pgbench_accounts WHERE aid = 40321;",
    "SELECT 1 WHERE a<=5 AND b>=-6 AND c<>7.5 AND d = 8x AND e =9.f AND f=1=2",
    "SELECT * FROM t WHERE a = 1 LIMIT 10", "SELECT x.1", "SELECT '=5'",
])
def test_shape_key_agrees_with_the_reference_on_statements(sql: str) -> None:
    from policies.cache import shape_key

    assert shape_key(sql) == _reference_shape_key(sql)


def test_shape_hits_share_a_classification_but_never_across_limits() -> None:
    cache = ClassificationCache()
    bounded = cache.get("SELECT * FROM patients WHERE id > 1 LIMIT 10")
    assert cache.get("SELECT * FROM patients WHERE id > 2 LIMIT 10") is bounded
    unbounded = cache.get("SELECT * FROM patients WHERE id > 2 LIMIT 100000")
    assert unbounded is not bounded
