"""Fixtures for the policy tests: the shipped example policy and a context builder."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from policies.context import RequestContext
from policies.engine import Engine
from policies.loader import load_policy
from policies.model import Policy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
NEW_YORK = ZoneInfo("America/New_York")
TUESDAY_10AM = dt.datetime(2024, 6, 4, 10, 0, tzinfo=NEW_YORK)
GROUPS = {"alice": {"clinicians"}, "bob": {"engineers"}, "oncall": set(), "mallory": set()}

MakeCtx = Callable[..., RequestContext]


@pytest.fixture(scope="session")
def clinic_policy() -> Policy:
    path = EXAMPLES / "clinic.yaml"
    return load_policy(path.read_text(encoding="utf-8"), str(path))


@pytest.fixture()
def engine(clinic_policy: Policy) -> Engine:
    return Engine([clinic_policy])


@pytest.fixture()
def ctx() -> MakeCtx:
    def make(user: str = "alice", **overrides: Any) -> RequestContext:
        values: dict[str, Any] = {
            "identity": user, "database": "clinic", "now": TUESDAY_10AM,
            "groups": frozenset(GROUPS.get(user, set())),
        }
        values.update(overrides)
        if isinstance(values["groups"], set):
            values["groups"] = frozenset(values["groups"])
        return RequestContext(**values)
    return make
