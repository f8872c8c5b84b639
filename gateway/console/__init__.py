"""The auditor's web console: ``phigate console -c phigate.yaml``.

A read-only web application over the journal and the recordings: activity search over an
incremental SQLite index (``index``), session pages with an in-page replay, the integrity
panel, alerts, a dashboard and people pages. Logins are the gateway's own ``users:`` (SCRAM
verifiers); every view of PHI is journaled as ``audit_access`` before it is shown (``audit``).
"""
