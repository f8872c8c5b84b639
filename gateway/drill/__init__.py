"""Audit drills: a scripted session through the gateway's own listener, checked from outside.

Module map: settings → client (a minimal PostgreSQL client over the proxy's SCRAM
upstream code) → run (the script and the checks) → report (signed JSON) → cli
(``phigate drill -c``) and service (the ``drill.every`` schedule, the ``drill``
journal entry, metrics and the alert inside ``phigate serve``).
"""
