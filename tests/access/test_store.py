"""The access store's rules: no self-approval, approvers only, quorum, revocation, expiry."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.access.store import AccessError, AccessStore
from policies.approval import Approval

TWO = Approval(frozenset({"sre"}), 3600.0, min_approvals=2)
SRE = frozenset({"sre"})


@pytest.fixture
def store(tmp_path: Path) -> AccessStore:
    return AccessStore(tmp_path / "access.sqlite3")


def test_quorum_self_approval_and_events(store: AccessStore) -> None:
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    request = store.request("break-glass", "bob", "INC-1", 600.0, now=1000.0)
    with pytest.raises(AccessError, match="your own request"):
        store.approve(request.id, "bob", SRE, TWO, 1001.0)
    with pytest.raises(AccessError, match="not an approver"):
        store.approve(request.id, "alice", frozenset({"clinicians"}), TWO, 1001.0)
    assert store.approve(request.id, "carol", SRE, TWO, 1002.0).state == "pending"
    with pytest.raises(AccessError, match="already approved"):
        store.approve(request.id, "carol", SRE, TWO, 1003.0)
    granted = store.approve(request.id, "dave", SRE, TWO, 1004.0)
    assert granted.state == "approved" and granted.expires_at == 1604.0
    assert [g.id for g in store.active_grants(1603.0)] == [request.id]
    assert store.active_grants(1604.0) == []
    assert store.expire_due(1604.0) == 1
    kinds = [e.kind for e in store.events_after(0)]
    assert kinds == ["request", "approval", "approval", "grant", "expiry"]
    with pytest.raises(AccessError, match="expired, nothing to revoke"):
        store.revoke(request.id, "carol", True, "", 1700.0)


def test_deny_and_revoke(store: AccessStore) -> None:
    one = Approval(frozenset({"sre"}))
    denied = store.request("break-glass", "bob", "INC-2", 600.0, now=0.0)
    with pytest.raises(AccessError, match="not an approver"):
        store.deny(denied.id, "bob", SRE, one, "no", 1.0)  # not even an sre denies their own
    assert store.deny(denied.id, "carol", SRE, one, "not an incident", 1.0).state == "denied"
    with pytest.raises(AccessError, match="not pending"):
        store.approve(denied.id, "carol", SRE, one, 2.0)
    granted = store.request("break-glass", "bob", "INC-3", 600.0, now=0.0)
    store.approve(granted.id, "carol", SRE, one, 1.0)
    with pytest.raises(AccessError, match="only the requester or an approver"):
        store.revoke(granted.id, "mallory", False, "", 2.0)
    assert store.revoke(granted.id, "bob", False, "done", 2.0).state == "revoked"
    with pytest.raises(AccessError, match="no access request"):
        store.get("nope")
