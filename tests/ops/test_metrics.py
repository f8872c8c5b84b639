"""The metrics registry without a gateway: names the examples rely on, bounded label values."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from types import SimpleNamespace

import yaml

from gateway.alerts.settings import AlertRule, AlertSettings, SinkSettings
from gateway.drill.service import DrillCollector, DrillStats
from gateway.ops.metrics import OTHER, JournalCollector, Metrics, MetricsHook, class_label
from gateway.proxy.hooks import AuthEvent, SessionInfo, SessionSummary
from gateway.settings.config import DatabaseSettings, Limits, MetricsSettings, Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def settings(per_user: bool = False) -> Settings:
    database = DatabaseSettings(name="clinic", host="127.0.0.1", port=5432, dbname="clinic",
                                user="svc", password=None)
    alerts = AlertSettings(sinks={"hook": SinkSettings(name="hook", type="log")},
                           rules=(AlertRule("brute-force", "failed_logins", ("hook",)),))
    return Settings(source=Path("phigate.yaml"), sha256="0" * 64, listen_host="127.0.0.1",
                    listen_port=6432, tls=None, databases={"clinic": database}, users={},
                    policy_files=(), journal=None, limits=Limits(),
                    metrics=MetricsSettings("127.0.0.1", 9187, per_user), alerts=alerts)


def exported_names(metrics: Metrics) -> set[str]:
    journal = SimpleNamespace(  # what JournalCollector reads from a Journal
        stats=SimpleNamespace(seq=1, entries=3, batches=2, writable=True,
                              batch_sizes=(1, 1, 0, 0, 0, 0, 0, 0, 0, 0)),
        checkpoint_info=(1, 0.0),
        settings=SimpleNamespace(dir=Path("/nonexistent")))
    families = list(metrics.registry.collect()) + list(JournalCollector(journal).collect())  # type: ignore[arg-type]
    # Family names, with the suffixes each type's samples carry (labelled families without
    # children have no samples yet).
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                "info": ("_info",)}
    return {family.name + suffix for family in families
            for suffix in ("", *suffixes.get(family.type, ()))}


def referenced_names() -> set[str]:
    rules = yaml.safe_load((EXAMPLES / "prometheus-alerts.yaml").read_text(encoding="utf-8"))
    exprs = [r["expr"] for group in rules["groups"] for r in group["rules"]]
    dashboard = json.loads((EXAMPLES / "grafana-dashboard.json").read_text(encoding="utf-8"))
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    return {name for expr in exprs for name in re.findall(r"\bphigate_\w+", expr)}


def test_examples_use_only_exported_metric_names() -> None:
    metrics = Metrics(settings())
    # Registered by the gateway when drill: is configured (gateway/drill/service.py).
    metrics.registry.register(DrillCollector(DrillStats()))
    exported = exported_names(metrics)
    missing = referenced_names() - exported
    assert not missing, f"examples reference metrics nobody exports: {sorted(missing)}"


def test_identities_are_labels_only_with_per_user_and_only_configured_ones() -> None:
    metrics = Metrics(settings(per_user=False))
    MetricsHook(metrics).authenticated(AuthEvent("mallory-" * 20, "10.0.0.1", 5000, "clinic",
                                                 success=False, method="SCRAM-SHA-256",
                                                 tls=None))
    assert metrics.registry.get_sample_value("phigate_auth_attempts_total",
                                             {"result": "failure"}) == 1
    per_user = Metrics(settings(per_user=True))
    MetricsHook(per_user).authenticated(AuthEvent("mallory", "10.0.0.1", 5000, "clinic",
                                                  success=False, method="SCRAM-SHA-256",
                                                  tls=None))
    assert per_user.registry.get_sample_value(
        "phigate_auth_attempts_total", {"result": "failure", "identity": OTHER}) == 1


def test_unconfigured_databases_and_odd_classes_collapse() -> None:
    metrics = Metrics(settings())
    assert metrics.database_label("clinic") == "clinic"
    assert metrics.database_label("; DROP TABLE x") == OTHER
    assert class_label(["select"]) == "select"
    assert class_label(["select", "insert"]) == "multiple"
    assert class_label(["made-up"]) == OTHER and class_label(None) == "none"


async def test_recording_bytes_are_read_after_the_recorder_annotated_the_session() -> None:
    metrics = Metrics(settings())
    hook = MetricsHook(metrics)
    session = SessionInfo("s1", "alice", frozenset(), "10.0.0.1", 5000, "clinic", "", None)
    summary = SessionSummary()
    hook.session_ended(session, summary)  # teardown is in reverse order: metrics first …
    summary.annotations["recording"] = {"file": "r", "bytes": 4096}  # … then the recorder
    await asyncio.sleep(0)
    assert metrics.registry.get_sample_value("phigate_recording_bytes_total") == 4096
