"""A database's shared catalog: reads coalesce, each ask gets a read that starts after it, and
a failed read after a change fails closed (the end-to-end behaviour is in
tests/e2e/test_view_catalog_e2e.py; here the source is a scripted stand-in for the upstream,
so the orderings that are hard to provoke there are exact)."""

from __future__ import annotations

import asyncio
from typing import cast

from gateway.policy.catalog import CatalogUnavailable, Snapshot
from gateway.policy.database_catalog import UNREADABLE, CatalogSource, DatabaseCatalog
from policies.statement import TableRef
from policies.views import Unsettled


class ScriptedSource:
    """Answers each snapshot read with the next scripted result, when released."""

    label = "clinic/clinic"

    def __init__(self, *results: Snapshot | CatalogUnavailable) -> None:
        self.results = list(results)
        self.started = 0
        self.release = asyncio.Event()
        self.release.set()
        self.followed: list[tuple[str, bool]] = []  # (fingerprint, changed)
        self.told = 0  # what the listeners (the masking catalog) would have been told

    async def snapshot(self) -> Snapshot:
        self.started += 1
        await self.release.wait()
        result = self.results.pop(0)
        if isinstance(result, CatalogUnavailable):
            raise result
        return result

    def follow(self, fingerprint: str, changed: bool) -> None:
        self.followed.append((fingerprint, changed))
        if changed:
            self.tell()

    def tell(self) -> None:
        self.told += 1

    async def functions_read(self) -> None:
        return None


def snapshot(fingerprint: str, *relations: str) -> Snapshot:
    return Snapshot(fingerprint, {name: frozenset() for name in relations},
                    frozenset(relations), {name: frozenset({"public"}) for name in relations})


def catalog(source: ScriptedSource) -> DatabaseCatalog:
    return DatabaseCatalog(cast(CatalogSource, source))


async def test_an_ask_during_a_read_gets_a_read_that_starts_after_it() -> None:
    source = ScriptedSource(snapshot("1"), snapshot("2", "v"), snapshot("3"))
    shared = catalog(source)
    await shared.load()
    source.release.clear()
    first = shared.refresh()
    await asyncio.sleep(0)
    assert source.started == 2
    assert shared.refresh() is first  # coalesced into the same task ...
    source.release.set()
    await shared.settled()
    assert source.started == 3  # ... which read once more, after the second ask
    assert shared.fingerprint == "3" and shared.refreshing is None
    assert source.followed == [("1", False), ("2", True), ("3", True)]  # widths forgotten


async def test_a_failed_read_after_a_change_fails_closed_and_is_retried() -> None:
    source = ScriptedSource(snapshot("1", "departments"),
                            CatalogUnavailable("phigate: lock timeout"), snapshot("2", "v"))
    shared = catalog(source)
    await shared.load()
    before = shared.views
    shared.joined()
    shared.refresh()
    await shared.settled()
    assert isinstance(shared.views, Unsettled) and shared.views.why == UNREADABLE
    assert shared.views.views is before
    await asyncio.sleep(1.2)  # the retry's timer (RETRY_S, 1 s) fires first: loop order
    await shared.settled()
    assert not isinstance(shared.views, Unsettled) and "v" in shared.views
    shared.left()


async def test_a_failed_lookup_leaves_the_catalog_in_force() -> None:
    source = ScriptedSource(snapshot("1", "departments"),
                            CatalogUnavailable("phigate: lock timeout"),
                            snapshot("1", "departments"), snapshot("1", "departments"))
    shared = catalog(source)
    await shared.load()
    views = shared.views
    missing = shared.unlisted([TableRef("typo"), TableRef("departments")])
    assert missing == ["typo"] and shared.unseen(missing) == ["typo"]
    try:
        await shared.look_for(missing)
    except CatalogUnavailable:
        pass
    else:
        raise AssertionError("the lookup must fail")
    assert shared.views is views  # not unsettled: nothing is known to have changed
    await shared.load()  # a new session reads again first
    await shared.look_for(missing)  # not there: remembered until the next read
    assert shared.unseen(missing) == []


async def test_every_read_is_followed_and_a_change_forgets_the_row_widths() -> None:
    """The function reads compare the fingerprint's parts themselves (function_reads.py)."""
    source = ScriptedSource(*(snapshot("1", "departments") for _ in range(3)))
    shared = catalog(source)
    await shared.load()
    await shared.look_for(["typo"])  # a lookup changed nothing
    shared.refresh()  # DDL through the gateway ended its transaction
    await shared.settled()
    assert source.followed == [("1", False), ("1", False), ("1", True)]


async def test_listeners_are_told_of_a_change_before_its_read_even_when_it_fails() -> None:
    source = ScriptedSource(snapshot("1", "departments"),
                            CatalogUnavailable("phigate: lock timeout"),
                            snapshot("1", "departments"), snapshot("1", "departments"),
                            snapshot("2", "departments", "v"))
    shared = catalog(source)
    await shared.load()
    assert source.told == 0  # the first read changes nothing anyone read
    source.release.clear()
    shared.refresh()  # DDL ended, or the poll saw the fingerprint move
    assert source.told == 1  # before the read: a read under way elsewhere is overtaken
    source.release.set()
    await shared.settled()  # it failed: told all the same
    assert source.told == 1
    await shared.look_for(["v"])  # the next read is still about that change
    assert source.told == 2
    await shared.look_for(["v"])  # the same fingerprint: nothing to tell
    assert source.told == 2
    await shared.look_for(["v"])  # the fingerprint moved (made directly): told
    assert source.told == 3
