"""Polling a database's catalog fingerprint: DDL made directly on the database is seen.

DDL through the gateway re-reads the catalog when its transaction ends; DDL that bypasses the
gateway (``CREATE OR REPLACE VIEW`` in ``psql`` on the database host, a migration tool) is
not seen that way. While a database has open sessions, every ``limits.catalog_poll_interval``
this asks for ``policies.fingerprint.FINGERPRINT_SQL`` (one small query on a short-lived service
connection) and re-reads the catalog when it differs from the one the last read found. So a
view redefined behind the gateway's back is decided as such at most one interval (plus a read)
after it was committed. A poll that fails is logged and tried at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .catalog import CatalogUnavailable

if TYPE_CHECKING:
    from .database_catalog import DatabaseCatalog

log = logging.getLogger("phigate.catalog")


async def poll(catalog: DatabaseCatalog) -> None:
    """Until cancelled (the database's last session ended) or the interval is set to 0."""
    source = catalog.source
    assert source is not None
    while catalog.poll_s > 0:
        await asyncio.sleep(catalog.poll_s)
        if catalog.refreshing is not None:
            continue  # a read is under way: it brings the new fingerprint
        try:
            found = await source.fingerprint()
        except CatalogUnavailable as e:
            log.warning("could not poll the catalog of %s: %s", source.label, e.message)
            continue
        if found != catalog.fingerprint and catalog.refreshing is None:
            log.info("the catalog of %s changed outside the gateway; reading it again",
                     source.label)
            catalog.refresh()
