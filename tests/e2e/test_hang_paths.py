"""Message paths that used to wait for something that never comes (issue 17's audit).

Each is driven with raw protocol messages against ``phigate serve`` and must be answered as
PostgreSQL answers it. (Fast-path calls: ``test_fastpath.py``; catalog locks:
``test_catalog_locks.py``; the watchdog for whatever is left: ``test_watchdog.py``.)
"""

from __future__ import annotations

from protocols.postgres import messages as m
from protocols.postgres.encoder import encode
from protocols.postgres.framing import FrameBuffer
from tests.e2e.harness import GatewayProcess
from tests.e2e.test_fastpath import until_ready
from tests.e2e.test_robustness import _authenticated_socket


def test_a_reason_set_behind_an_unsynced_batch_is_answered(gateway: GatewayProcess) -> None:
    """A Query after Parse/Bind/Execute without Sync ends the batch, in PostgreSQL as here."""
    with _authenticated_socket(gateway) as sock:
        buffer = FrameBuffer()
        sock.sendall(b"".join(encode(x) for x in (
            m.Parse("", "SELECT 41 + 1", ()), m.Bind("", "", (), (), ()), m.Execute("", 0),
            m.Query("SET phigate.reason = 'INC-1'"))))
        answer = until_ready(sock, buffer)
        names = [type(x).__name__ for x in answer]
        assert names == ["ParseComplete", "BindComplete", "DataRow", "CommandComplete",
                         "CommandComplete", "ReadyForQuery"]
        assert answer[4] == m.CommandComplete("SET")
