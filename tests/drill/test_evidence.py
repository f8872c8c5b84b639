"""The drill's comparison of replayed statements with its script: order, extra, missing."""

from __future__ import annotations

from gateway.drill.evidence import script_difference

SCRIPT = ["SELECT 1", "SELECT 2", "CREATE TABLE t (x int)"]


def test_the_same_statements_in_the_same_order_pass() -> None:
    assert script_difference(SCRIPT, list(SCRIPT)) is None


def test_reordered_missing_or_extra_statements_fail() -> None:
    assert "statement 1 replays as 'SELECT 2'" in str(
        script_difference(SCRIPT, ["SELECT 2", "SELECT 1", SCRIPT[2]]))
    assert "replays 2 statements, the drill ran 3" in str(script_difference(SCRIPT, SCRIPT[:2]))
    assert "replays 4 statements" in str(script_difference(SCRIPT, [*SCRIPT, "SELECT 3"]))
    assert script_difference(SCRIPT, ["SELECT 1", "SELECT 2 ", SCRIPT[2]]) is not None
