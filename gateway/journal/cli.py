"""``phigate journal …`` and ``phigate keygen``: the auditor's and operator's tools.

:func:`register` adds the commands to ``phigate``'s argparse sub-parsers;
each handler takes the parsed arguments and returns the exit code: 0 fine,
1 the journal is tampered (or corrupt), 2 a usage error (bad arguments,
missing directory or key). ``python -m gateway.journal.cli`` runs them alone.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from .canonical import encode_compact
from .errors import JournalCorrupt, JournalError, KeyFileError
from .journal import Journal
from .keys import generate, load_public
from .prune import PruneGuard, PruneResult, prune
from .reader import Entry, EntryFilter, decision_of, iter_entries, iter_lines, parse_time_bound
from .settings import DEFAULT_RETENTION_DAYS, JournalSettings
from .verify import verify_journal

EXIT_OK, EXIT_TAMPERED, EXIT_USAGE = 0, 1, 2

Extender = Callable[[str, argparse.ArgumentParser], None]
"""Called as ``extend("journal verify", parser)`` for every parser made here, so the
caller can add options (``--recordings``) or wrap ``func`` without editing this module."""

# Shown on their own in the table; everything else goes into the detail column.
_TABLE_OWN = frozenset({"seq", "time", "type", "prev", "session", "session_id", "user",
                        "identity", "client", "client_ip", "client_port", "sql"})


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], *,
             extend: Extender | None = None) -> None:
    """Add ``journal {verify,show,export,prune}`` and ``keygen`` to ``subparsers``."""
    def made(name: str, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        if extend is not None:
            extend(name, parser)
        return parser

    journal = subparsers.add_parser("journal", help="verify, read and prune the audit journal")
    commands = journal.add_subparsers(dest="journal_command", required=True,
                                      metavar="{verify,show,export,prune}")

    verify = commands.add_parser("verify", help="check the journal has not been tampered with")
    verify.add_argument("dir", type=Path, help="the journal directory")
    verify.add_argument("--key", type=Path, required=True, help="the journal's public key (.pub)")
    verify.add_argument("--checkpoints", type=Path, metavar="COPYDIR",
                        help="a checkpoint_copies directory: also detect rollback")
    verify.add_argument("--workers", type=int, help="processes to verify with (default: auto)")
    verify.set_defaults(func=verify_command)
    made("journal verify", verify)

    show = commands.add_parser("show", help="list entries, filtered")
    show.add_argument("dir", type=Path)
    _add_filters(show)
    show.add_argument("--json", action="store_true", help="JSON lines, exactly as stored")
    show.set_defaults(func=show_command)
    made("journal show", show)

    export = commands.add_parser("export", help="every entry, as JSON lines or CSV")
    export.add_argument("dir", type=Path)
    export.add_argument("--format", choices=("jsonl", "csv"), required=True)
    export.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    export.set_defaults(func=export_command)
    made("journal export", export)

    prune_parser = commands.add_parser("prune", help="remove segments past retention")
    prune_parser.add_argument("dir", type=Path)
    prune_parser.add_argument("--retention-days", type=int, default=DEFAULT_RETENTION_DAYS,
                              help=f"keep this many days (default {DEFAULT_RETENTION_DAYS})")
    prune_parser.add_argument("--key", type=Path, required=True,
                              help="the journal's signing key (.key), to sign the prune")
    prune_parser.set_defaults(func=prune_command)
    made("journal prune", prune_parser)

    keygen = subparsers.add_parser("keygen", help="create a journal signing key pair")
    keygen.add_argument("path", type=Path, nargs="?", help="writes PATH.key (0600) and PATH.pub")
    keygen.set_defaults(func=keygen_command)
    made("keygen", keygen)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", help="entries of this user's sessions")
    parser.add_argument("--session", help="entries of this session")
    parser.add_argument("--since", help="at or after this time (RFC 3339 or date; UTC default)")
    parser.add_argument("--until", help="before this time")
    parser.add_argument("--type", help="entry type: statement, outcome, auth, …")
    parser.add_argument("--decision", help="statements with this decision (e.g. deny)")
    parser.add_argument("--table", help="statements touching this table")


def verify_command(args: argparse.Namespace) -> int:
    try:
        key = load_public(args.key)
        report = verify_journal(args.dir, key, witness_dir=args.checkpoints,
                                workers=args.workers)
    except (KeyFileError, OSError) as e:
        return _usage(e)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_TAMPERED


def show_command(args: argparse.Namespace) -> int:
    try:
        where = _filter(args)
        if not args.dir.is_dir():
            raise NotADirectoryError(f"{args.dir} is not a directory")
        out = sys.stdout
        if not args.json:
            out.write(f"{'SEQ':>8}  {'TIME':27}  {'TYPE':13}  {'USER':12}  {'CLIENT':21}  "
                      "DETAIL\n")
        for entry in iter_entries(args.dir, where):
            out.write(entry.raw.decode("utf-8", "replace") + "\n" if args.json
                      else _row(entry))
        out.flush()
    except BrokenPipeError:
        return reader_gone()
    except (ValueError, OSError) as e:
        return _usage(e)
    return EXIT_OK


def export_command(args: argparse.Namespace) -> int:
    try:
        if not args.dir.is_dir():
            raise NotADirectoryError(f"{args.dir} is not a directory")
        out = (open(args.output, "w", encoding="utf-8", newline="") if args.output
               else sys.stdout)
        try:
            if args.format == "jsonl":
                for _, _, raw in iter_lines(args.dir):
                    out.write(raw.decode("utf-8", "replace") + "\n")
            else:
                _export_csv(args.dir, out)
            out.flush()
        finally:
            if args.output:
                out.close()
    except BrokenPipeError:
        return reader_gone()
    except OSError as e:
        return _usage(e)
    return EXIT_OK


def _export_csv(directory: Path, out: TextIO) -> None:
    writer = csv.writer(out)
    writer.writerow(["seq", "time", "type", "session", "user", "client", "decision", "sql",
                     "fields"])
    for entry in iter_entries(directory):
        fields = entry.fields
        rest = {k: v for k, v in fields.items() if k not in ("seq", "time", "type", "sql")}
        writer.writerow([fields.get("seq"), fields.get("time"), fields.get("type"),
                         entry.session or "", entry.user or "", entry.client or "",
                         decision_of(fields) or "", fields.get("sql") or "",
                         encode_compact(rest)])


def prune_command(args: argparse.Namespace) -> int:
    if args.retention_days < 1:
        return _usage(ValueError("--retention-days must be at least 1"))
    if not args.dir.is_dir() or not any(args.dir.glob("segment-*.jsonl")):
        return _usage(NotADirectoryError(f"{args.dir} holds no journal"))
    settings = JournalSettings(dir=args.dir, signing_key=args.key,
                               retention_days=args.retention_days)
    try:
        result = asyncio.run(_prune(settings, getattr(args, "prune_guard", None)))
    except JournalCorrupt as e:
        print(f"phigate: {e}", file=sys.stderr)
        return EXIT_TAMPERED
    except (JournalError, OSError) as e:
        return _usage(e)
    if not result.removed:
        print(f"nothing to prune: no sealed segment ends before {result.cutoff}")
    for item in result.removed:
        print(f"removed {item['segment']} (seq {item['first_seq']}..{item['last_seq']}, "
              f"last entry {item['last_time']})")
    if result.entry_seq is not None:
        print(f"recorded as prune entry seq {result.entry_seq}")
    if result.kept is not None:
        print(f"phigate: {result.kept}", file=sys.stderr)
        return EXIT_TAMPERED
    return EXIT_OK


async def _prune(settings: JournalSettings, guard: PruneGuard | None) -> PruneResult:
    journal = await Journal.open(settings, program="phigate journal prune")
    try:
        return await prune(journal, guard=guard)
    finally:
        await journal.close()


def keygen_command(args: argparse.Namespace) -> int:
    if args.path is None:
        return _usage(ValueError("keygen needs PATH"))
    try:
        private_path, public_path = generate(args.path)
    except (KeyFileError, OSError) as e:
        return _usage(e)
    print(f"wrote {private_path} (keep secret, mode 0600) and {public_path} (for auditors)")
    return EXIT_OK


def _filter(args: argparse.Namespace) -> EntryFilter:
    try:
        since = parse_time_bound(args.since) if args.since else None
        until = parse_time_bound(args.until) if args.until else None
    except ValueError as e:
        raise ValueError(f"--since/--until: {e}") from e
    return EntryFilter(user=args.user, session=args.session, since=since, until=until,
                       type=args.type, decision=args.decision, table=args.table)


def _row(entry: Entry) -> str:
    fields = entry.fields
    detail = " ".join(f"{k}={v if isinstance(v, str) else encode_compact(v)}"
                      for k, v in sorted(fields.items()) if k not in _TABLE_OWN)
    sql = fields.get("sql")
    if isinstance(sql, str):
        detail = f"{detail} sql={' '.join(sql.split())}".strip()
    return (f"{entry.seq:>8}  {fields.get('time', '')!s:27}  {fields.get('type', '')!s:13}  "
            f"{entry.user or '-':12}  {entry.client or '-':21}  {detail}\n")


def reader_gone() -> int:
    """``show | head``: the reader left; not an error. Keep Python's exit flush quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_OK


def _usage(error: Exception) -> int:
    print(f"phigate: {error}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="phigate")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
