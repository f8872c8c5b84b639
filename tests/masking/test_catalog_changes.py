"""The masking catalog's reads against change signals: a read a change overtook is not kept, an
unlisted source has the catalog read again once per change. The upstream is a scripted
stand-in so the orderings are exact (end to end: tests/e2e/test_masking_catalog_e2e.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.masking import catalog as catalog_module
from gateway.masking.catalog import MAX_READS, CatalogChanging, MaskingCatalog
from gateway.settings.config import DatabaseSettings

DB = DatabaseSettings(name="clinic", host="127.0.0.1", port=5432, dbname="clinic", user="svc",
                      password=None)
Rows = list[tuple[str | None, ...]]


def relation(oid: int, *columns: str) -> Rows:
    return [("c", str(oid), "public", f"t{oid}", "r", str(n), c)
            for n, c in enumerate(columns, 1)]


class Upstream:
    """Answers each catalog read with the next rows once ``release`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *answers: Rows) -> None:
        self.answers = list(answers)
        self.reads = 0
        self.release = asyncio.Event()
        self.release.set()
        self.started = asyncio.Event()
        self.during: Callable[[], None] = lambda: None
        monkeypatch.setattr(catalog_module, "query_rows", self.answer)

    async def answer(self, db: DatabaseSettings, dbname: str, sql: str, max_message_size: int
                     ) -> Rows:
        self.reads += 1
        self.started.set()
        self.during()
        await self.release.wait()
        return self.answers.pop(0)


async def test_a_read_a_change_overtook_is_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = Upstream(monkeypatch, relation(16400, "ssn"), relation(16400, "ssn", "added"))
    masking = MaskingCatalog(1 << 20)
    upstream.release.clear()
    reading = asyncio.create_task(masking.get(DB, "clinic"), name="read")
    await upstream.started.wait()
    masking.changed(DB, "clinic")  # committed while the first read ran: it may predate it
    upstream.release.set()
    catalog = await reading
    assert upstream.reads == 2 and catalog.relations[16400].columns == {1: "ssn", 2: "added"}
    assert masking.current(DB, "clinic") is catalog
    masking.changed(DB, "clinic")
    assert masking.current(DB, "clinic") is None  # the next statement reads it again


async def test_a_catalog_that_keeps_changing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = Upstream(monkeypatch, *[relation(16400, "ssn")] * MAX_READS)
    masking = MaskingCatalog(1 << 20)
    upstream.during = lambda: masking.changed(DB, "clinic")  # a change commits during each
    with pytest.raises(CatalogChanging):
        await masking.get(DB, "clinic")
    assert upstream.reads == MAX_READS and masking.current(DB, "clinic") is None


async def test_an_unlisted_source_is_read_again_once_per_change(
        monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = Upstream(monkeypatch, *[relation(16400, "ssn")] * 3)
    masking = MaskingCatalog(1 << 20)
    first = await masking.get(DB, "clinic")
    masking.unlisted(DB, "clinic", first, (16500, 1))  # made since: read again ...
    assert masking.current(DB, "clinic") is None
    second = await masking.get(DB, "clinic")
    masking.unlisted(DB, "clinic", first, (16500, 1))  # a late report on the old catalog
    masking.unlisted(DB, "clinic", second, (16500, 1))  # ... but not listed then either
    assert masking.current(DB, "clinic") is second and upstream.reads == 2
    masking.changed(DB, "clinic")  # a real change: it may be listed now
    third = await masking.get(DB, "clinic")
    masking.unlisted(DB, "clinic", third, (16500, 1))
    assert masking.current(DB, "clinic") is None and upstream.reads == 3
