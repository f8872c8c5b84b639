"""What the journal records of a policy decision (the ``policy`` fields of a statement entry)."""

from __future__ import annotations

from collections.abc import Mapping

from policies.model import Decision


def journal_fields(decision: Decision, grants: Mapping[str, str]) -> dict[str, object]:
    fields: dict[str, object] = {
        "decision": decision.verdict, "rules": list(decision.rules), "reason": decision.reason,
        "classes": list(decision.classes), "tables": list(decision.tables),
        "phi_tables": list(decision.phi_tables),
    }
    used = sorted(grants[rule] for rule in decision.rules if rule in grants)
    if used and decision.allowed:
        fields["grants"] = used  # the access grants this statement ran under
    if decision.would_deny:
        fields["dry_run"] = True
    if decision.bulk_export:
        fields["bulk_export"] = True
    if decision.dangerous:
        fields["dangerous"] = True
    if decision.alert:
        fields["alert"] = True
    if decision.max_rows is not None:
        fields["max_rows"] = decision.max_rows
    if decision.row_weight > 1:
        fields["row_weight"] = decision.row_weight
    if decision.max_bytes is not None:
        fields["max_bytes"] = decision.max_bytes
        if decision.max_bytes_derived:
            fields["max_bytes_derived"] = True
    if decision.export_via:
        fields["export_via"] = list(decision.export_via)
    return fields
