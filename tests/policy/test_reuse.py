"""The reuse cache itself (gateway/policy/reuse.py): what a kept decision is checked against,
when it expires, and how the per-session tables stay bounded.

Entries are made from real decisions (the policy hook of tests/policy/test_fast_path.py,
deciding with its own catalogs); each check moves one thing the entry was made on.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

from gateway.policy import reuse
from gateway.policy.catalog import VolatilityRef
from gateway.policy.hook import PolicyHook
from gateway.policy.reuse import Reuse, made_on, remember, reusable

from .test_fast_path import READ, decide, settings, start

MINUTE_START = 1_796_299_200.0  # a whole minute (2026-12-03 12:00:00 UTC)


def _entry(tmp_path: Path) -> tuple[Reuse, VolatilityRef]:
    hook = PolicyHook(settings(tmp_path))
    info, state = start(hook)
    decide(hook, info)
    return state.reuse[READ], state.volatility


def _check(entry: Reuse, volatility: VolatilityRef, **moved: object) -> bool:
    now: dict[str, object] = {"seconds": entry.expires - 1, "generation": entry.generation,
                              "reason": entry.reason, "views": entry.views,
                              "volatility": volatility}
    now.update(moved)
    return reusable(entry, **now)  # type: ignore[arg-type]  # the keywords reusable takes


def test_an_entry_holds_while_nothing_moved(tmp_path: Path) -> None:
    entry, volatility = _entry(tmp_path)
    assert _check(entry, volatility)


@pytest.mark.parametrize("moved", ["generation", "reason", "views", "current", "functions"])
def test_any_moved_input_makes_it_unusable(tmp_path: Path, moved: str) -> None:
    entry, volatility = _entry(tmp_path)
    if moved == "generation":
        assert not _check(entry, volatility, generation=entry.generation + 1)
    elif moved == "reason":
        assert not _check(entry, volatility, reason="INC-1")
    elif moved == "views":  # equal but replaced (DDL): compared by identity
        assert not _check(entry, volatility, views=dict(entry.views))
    else:
        replaced = VolatilityRef()
        replaced.current, replaced.functions = volatility.current, volatility.functions
        if moved == "current":  # equal copies, as a catalog read again after DDL gives
            replaced.current = copy.copy(volatility.current)
        else:
            replaced.functions = copy.copy(volatility.functions)
        assert not _check(entry, volatility=replaced)


def test_it_expires_at_the_end_of_its_minute(tmp_path: Path) -> None:
    entry, volatility = _entry(tmp_path)
    kept = made_on(entry.classification, entry.decided, entry.read_only,
                   seconds=MINUTE_START + 59.9, generation=0, reason=None, views=entry.views,
                   volatility=volatility)
    assert kept.expires == MINUTE_START + 60
    assert _check(kept, volatility, seconds=MINUTE_START + 59.99)
    assert not _check(kept, volatility, seconds=MINUTE_START + 60)
    assert made_on(entry.classification, entry.decided, entry.read_only,
                   seconds=MINUTE_START, generation=0, reason=None, views=entry.views,
                   volatility=volatility).expires == MINUTE_START + 60


def test_remember_keeps_a_text_and_its_shape_and_stays_bounded(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    entry, _ = _entry(tmp_path)
    texts: dict[str, Reuse] = {}
    shapes: dict[int, Reuse] = {}
    remember(texts, shapes, READ, entry)
    assert texts[READ] is entry and shapes[id(entry.classification)] is entry
    monkeypatch.setattr(reuse, "MAX_REUSE", 3)
    for n in range(2):
        remember(texts, shapes, f"{READ} -- {n}", dataclasses.replace(entry))
    assert len(texts) == 3
    remember(texts, shapes, "SELECT 1", entry)  # full: both tables start over
    assert list(texts) == ["SELECT 1"] and len(shapes) == 1
