"""How many PHI rows one result row carries: the FROM occurrences whose columns reach it.

``SELECT a.mrn, b.mrn FROM patients a JOIN patients b ON b.id = a.id + 100`` returns rows that
each carry two patients, yet ``max_rows`` counts result rows. :func:`row_sources` lists, for a
statement's outermost SELECT, every *source* of its output columns: each FROM occurrence
(table, view, CTE, subquery, function) whose columns the output list reads — a qualified
reference (``a.mrn``, ``a.*``, whole-row ``a``) names its occurrence; an unqualified column or
``*`` may come from any, so every occurrence counts — and each scalar sub-SELECT of the output
list. A subquery or CTE in FROM counts as the sources of its own output. A set operation's
rows come from one branch: its branches are alternatives. References in WHERE, ON, GROUP BY
or ORDER BY carry nothing out, and aggregates are the collapse analysis's business
(``policies.collapse``).

``classify`` stores the result on the ``Statement``; the engine counts, per alternative, the
sources that read PHI, and a row then counts that many rows toward ``max_rows`` (the row
limit the gateway enforces becomes ``max_rows // weight``). Pure: no I/O.
"""

from __future__ import annotations

from policies.sqltree import Json, find, table_ref, unwrap
from policies.statement import TableRef

Source = tuple[TableRef, ...]  # the relations one occurrence reads
Alternatives = tuple[tuple[Source, ...], ...]  # per set-operation branch: its sources
_MAX_DEPTH = 32  # nested subqueries followed; deeper ones count as one source each
_Ctes = dict[str, Json]


def row_sources(body: dict[str, Json]) -> Alternatives:
    """The sources of a SELECT's output rows, per set-operation branch."""
    ctes = {unwrap(c)[1].get("ctename", ""): unwrap(c)[1].get("ctequery")
            for clause in find(body, "withClause") for c in clause.get("ctes", ())}
    return tuple(tuple(branch) for branch in _alternatives(body, ctes, 0))


def _alternatives(body: dict[str, Json], ctes: _Ctes, depth: int) -> list[list[Source]]:
    if body.get("op", "SETOP_NONE") != "SETOP_NONE":
        return (_alternatives(body.get("larg") or {}, ctes, depth)
                + _alternatives(body.get("rarg") or {}, ctes, depth))
    if "valuesLists" in body:
        return [[]]
    occurrences: dict[str, list[Source]] = {}
    for item in body.get("fromClause") or ():
        _occurrences(item, ctes, depth, occurrences)
    used: dict[str, None] = {}
    sources: list[Source] = []
    for target in body.get("targetList") or ():
        value = unwrap(target)[1].get("val")
        for ref in _column_refs(value):
            used.update(dict.fromkeys(_owners(ref, occurrences)))
        for link in _scalar_sublinks(value):
            sources += _widest(unwrap(link.get("subselect"))[1], ctes, depth + 1)
    for key in used:
        sources += occurrences[key]
    return [sources]


def _occurrences(item: Json, ctes: _Ctes, depth: int, out: dict[str, list[Source]]) -> None:
    kind, body = unwrap(item)
    alias = (body.get("alias") or {}).get("aliasname")
    if kind == "JoinExpr":
        before = set(out)
        _occurrences(body.get("larg"), ctes, depth, out)
        _occurrences(body.get("rarg"), ctes, depth, out)
        if alias:  # (a JOIN b) AS j: j.* is both sides
            out[alias] = [s for key in out if key not in before for s in out[key]]
        return
    if kind == "RangeVar":
        ref = table_ref(body)
        name = alias or ref.name
        query = ctes.get(ref.name) if ref.schema is None else None
        if query is not None and depth < _MAX_DEPTH:
            out[name] = _widest(unwrap(query)[1], {k: v for k, v in ctes.items()
                                                   if k != ref.name}, depth + 1) or [(ref,)]
        else:
            out[name] = [(ref,)]
        return
    if kind == "RangeSubselect" and depth < _MAX_DEPTH:
        out[alias or f"#{len(out)}"] = _widest(unwrap(body.get("subquery"))[1], ctes, depth + 1)
        return
    relations = tuple(table_ref(r) for r in find(body, "RangeVar"))
    out[alias or f"#{len(out)}"] = [relations] if relations else []


def _widest(body: dict[str, Json], ctes: _Ctes, depth: int) -> list[Source]:
    """A nested query's sources: its branch with the most (PHI is not known here)."""
    if depth >= _MAX_DEPTH:
        return [tuple(table_ref(r) for r in find(body, "RangeVar"))]
    return max(_alternatives(body, ctes, depth), key=len, default=[])


def _column_refs(node: Json) -> list[tuple[str, ...]]:
    """Column references of an output expression, outside sub-SELECTs ("*" for A_Star)."""
    out: list[tuple[str, ...]] = []
    todo = [node]
    while todo:
        item = todo.pop()
        if isinstance(item, list):
            todo.extend(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                if key == "ColumnRef":
                    out.append(_fields(value))
                elif key != "SubLink":
                    todo.append(value)
    return out


def _fields(ref: dict[str, Json]) -> tuple[str, ...]:
    fields = []
    for item in ref.get("fields") or ():
        kind, body = unwrap(item)
        fields.append("*" if kind == "A_Star" else body.get("sval", ""))
    return tuple(fields)


def _owners(ref: tuple[str, ...], occurrences: dict[str, list[Source]]) -> list[str]:
    """The occurrences a column reference may read: the one it names, else all."""
    if len(ref) >= 2 and ref[-2] in occurrences:
        return [ref[-2]]
    if len(ref) == 1 and ref[0] in occurrences:  # a whole-row reference: p
        return [ref[0]]
    return list(occurrences)


def _scalar_sublinks(node: Json) -> list[dict[str, Json]]:
    return [link for link in find(node, "SubLink", into_sublinks=False)
            if link.get("subLinkType") == "EXPR_SUBLINK"]


