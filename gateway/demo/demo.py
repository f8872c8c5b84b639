"""``phigate demo``: a throwaway clinic database with a gateway in front of it, on loopback.

Owns the demo's whole lifetime: a ``TempCluster`` loaded with the synthetic clinic data set, the
service role the gateway logs in as, a temporary directory holding the generated ``phigate.yaml``,
the demo identities and their passwords, the gateway itself, the instructions printed for the
person at the keyboard, and the cleanup when they press Ctrl-C (or send SIGTERM).

The gateway runs in-process through ``load_config`` and ``service.run_gateway``, exactly as
``phigate serve`` does, so what the demo shows (audit journal included) is what production runs.
The generated config comes from :func:`demo_config` alone; features that need config (policies,
recording) extend that one function.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import yaml

from protocols.postgres.scram import make_verifier

from ..journal.keys import generate as generate_keys
from ..journal.segments import set_immutable
from ..recording.keys import generate_key_file
from ..service import run_gateway
from ..settings.config import Settings, load_config
from .demo_data import clinic_counts, clinic_sql, grant_service_role_sql
from .tempcluster import ClusterError, TempCluster

EXIT_OK, EXIT_FAILED = 0, 1
HOST = "127.0.0.1"
DATABASE = "clinic"
SERVICE_ROLE = "phigate_svc"
PATIENTS = 2000  # more than the clinicians' max_rows (500), so a row cut can be seen
# The upstream password reaches the config loader through this variable, set in our own process
# only, so it is never written to disk next to the config.
PASSWORD_ENV = "PHIGATE_DEMO_DB_PASSWORD"
# Demo identities and their groups; the policy feature's examples use these names.
DEMO_USERS: Mapping[str, tuple[str, ...]] = {
    "alice": ("clinicians",),
    "bob": ("engineers",),
    "oncall": (),  # break-glass: allowed everything, but only with a stated reason
}
# An interactive demo should stop promptly on Ctrl-C, even with psql sessions still open.
SHUTDOWN_GRACE = "2s"
# Inside the demo's temporary directory, next to phigate.yaml.
JOURNAL_DIR = "journal"
SIGNING_KEY = "keys/journal"  # keygen writes .key and .pub
RECORDINGS_DIR = "recordings"
RECORDING_KEY = "keys/recordings.key"
POLICY_FILE = "policies/clinic.yaml"
# The documented example policy (with its test cases beside it): the demo shows exactly that.
EXAMPLE_POLICY = Path(__file__).resolve().parents[2] / "examples" / "policies" / "clinic.yaml"
LISTEN_POLL_S = 0.02
# What to try as whom under the example policy, and what the policy will say.
EXAMPLE_QUERIES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "alice": (("SELECT count(*) FROM patients;", "allowed"),
              ("SELECT mrn, last_name FROM patients ORDER BY id LIMIT 5;", "allowed"),
              ("SELECT mrn FROM patients WHERE id > 0;",
               "cut after 500 rows (max_rows), SQLSTATE 54000"),
              ("SELECT * FROM patients;", "denied: bulk export of PHI")),
    "bob": (("SELECT * FROM departments;", "allowed: no PHI"),
            ("SELECT * FROM patients WHERE id = 1;", "denied: engineers may not touch PHI")),
    "oncall": (("SELECT * FROM lab_results WHERE id = 1;", "allowed: break-glass, journaled"),),
}
# Short, lowercase and unambiguous, so a password can be read off the screen and typed.
_WORDS = (
    "amber", "anchor", "apple", "aspen", "badge", "basil", "beacon", "birch", "breeze", "brook",
    "cabin", "cedar", "clover", "comet", "coral", "cotton", "daisy", "delta", "dune", "ember",
    "fable", "falcon", "fern", "fjord", "flint", "garnet", "ginger", "glacier", "harbor", "hazel",
    "heron", "indigo", "island", "ivory", "jasper", "juniper", "kayak", "kettle", "lagoon",
    "lantern", "lemon", "lilac", "maple", "meadow", "mango", "marble", "nectar", "nutmeg", "oasis",
    "olive", "orchid", "otter", "pebble", "pepper", "pine", "plum", "quartz", "quill", "raven",
    "reef", "river", "saffron", "sage", "sparrow", "spruce", "summit", "tango", "thistle", "tulip",
    "tundra", "velvet", "violet", "walnut", "willow", "yarrow", "zephyr",
)


@dataclass(frozen=True, slots=True)
class DemoUser:
    name: str
    groups: tuple[str, ...]
    password: str = field(repr=False)


class DemoError(Exception):
    """The demo could not be set up; the message is for the person who ran it."""


def memorable_password() -> str:
    """Three words and a number, e.g. ``otter-quartz-maple-42``: easy to type, fine for loopback."""
    words = [secrets.choice(_WORDS) for _ in range(3)]
    return "-".join([*words, str(secrets.randbelow(90) + 10)])


def demo_users() -> list[DemoUser]:
    return [DemoUser(name, groups, memorable_password()) for name, groups in DEMO_USERS.items()]


def demo_config(*, listen_port: int, upstream_port: int, users: list[DemoUser]) -> dict[str, Any]:
    """The demo's ``phigate.yaml`` as a dict; the one place to add sections (e.g. recording).

    Relative paths resolve against the config's directory, where :func:`write_config` also puts
    the journal's signing key and the policy.
    """
    return {
        "listen": f"{HOST}:{listen_port}",
        "journal": {"dir": JOURNAL_DIR, "signing_key": f"{SIGNING_KEY}.key"},
        "recordings": {"dir": RECORDINGS_DIR, "key_file": RECORDING_KEY},
        "policies": [POLICY_FILE],
        "databases": {
            DATABASE: {"host": HOST, "port": upstream_port, "dbname": DATABASE,
                       "user": SERVICE_ROLE, "password_env": PASSWORD_ENV},
        },
        "users": {user.name: {"password": make_verifier(user.password),
                              "groups": list(user.groups)} for user in users},
        "limits": {"shutdown_grace": SHUTDOWN_GRACE},
        "log": {"level": "warning"},
    }


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # asyncio's server sets SO_REUSEADDR too: a port in TIME_WAIT is usable, a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


def choose_port(requested: int, out: TextIO) -> int:
    if not 0 < requested < 65536:
        raise DemoError(f"--port must be between 1 and 65535, not {requested}")
    if port_is_free(requested):
        return requested
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port = int(probe.getsockname()[1])
    print(f"Port {requested} is taken; the gateway will listen on port {port} instead.", file=out,
          flush=True)
    return port


# -- the database ----------------------------------------------------------------------------


def provision(cluster: TempCluster) -> str:
    """Create the clinic database and the service role; return the role's password."""
    password = secrets.token_urlsafe(24)
    cluster.create_database(DATABASE)
    cluster.add_role(SERVICE_ROLE, password)
    cluster.execute(clinic_sql(patients=PATIENTS) + grant_service_role_sql(SERVICE_ROLE),
                    dbname=DATABASE)
    return password


def write_config(config_dir: Path, config: Mapping[str, Any]) -> Path:
    """Write phigate.yaml, the journal signing key pair and the policy it names."""
    generate_keys(config_dir / SIGNING_KEY)
    generate_key_file(config_dir / RECORDING_KEY)
    try:
        policy = EXAMPLE_POLICY.read_text(encoding="utf-8")
    except OSError as e:
        raise DemoError(f"the example policy {EXAMPLE_POLICY} is missing; `phigate demo` runs "
                        "from a source checkout") from e
    (config_dir / POLICY_FILE).parent.mkdir()
    (config_dir / POLICY_FILE).write_text(policy, encoding="utf-8")
    path = config_dir / "phigate.yaml"
    path.write_text("# Generated by `phigate demo`; deleted when the demo stops.\n"
                    + yaml.safe_dump(dict(config), sort_keys=False), encoding="utf-8")
    path.chmod(0o600)
    return path


def remove_tree(path: Path) -> None:
    """Delete a directory, including journal segments the journal sealed immutable."""
    for file in path.rglob("*"):
        if file.is_file() and not file.is_symlink():
            set_immutable(file, False)
    shutil.rmtree(path, ignore_errors=True)


# -- the gateway -----------------------------------------------------------------------------


async def serve(settings: Settings, users: list[DemoUser], cluster: TempCluster,
                config_path: Path, out: TextIO) -> int:
    """``service.run_gateway`` itself, plus the instructions printed once the port listens."""
    gateway = asyncio.create_task(run_gateway(settings), name="demo-gateway")
    listening = asyncio.create_task(_until_listening(settings.listen_port), name="demo-listening")
    await asyncio.wait((gateway, listening), return_when=asyncio.FIRST_COMPLETED)
    if listening.done():
        print(instructions(settings.listen_port, users, cluster, config_path), file=out,
              flush=True)
    else:
        listening.cancel()
    try:
        code = await gateway
    except OSError as e:  # typically the port, taken between choosing and binding it
        raise DemoError(f"the gateway could not start: {e}") from e
    print("\nStopping PostgreSQL and removing temporary files...", file=out, flush=True)
    return code


async def _until_listening(port: int) -> None:
    # Binding fails once the gateway holds the port (it was free when chosen); unlike a test
    # connection, this leaves no trace in the gateway's journal or logs.
    while port_is_free(port):
        await asyncio.sleep(LISTEN_POLL_S)


def instructions(port: int, users: list[DemoUser], cluster: TempCluster,
                 config_path: Path) -> str:
    counts = clinic_counts(PATIENTS)
    lines = [
        "",
        "PHIGate demo is running.",
        f"  Database  {HOST}:{cluster.port} {DATABASE!r}: {counts.patients} patients, "
        f"{counts.encounters} encounters, {counts.lab_results} lab results (all invented)",
        f"            data and server.log in {cluster.root}",
        f"  Gateway   {HOST}:{port}, config {config_path}",
        f"            audit journal in {config_path.parent / JOURNAL_DIR}",
        f"            policy {config_path.parent / POLICY_FILE}",
        "",
    ]
    for user in users:
        reason = 'PGOPTIONS="-c phigate.reason=INC-1234" ' if user.name == "oncall" else ""
        lines += [
            f"Connect as {user.name} (groups: {', '.join(user.groups) or '-'}):",
            f'  {reason}psql "host={HOST} port={port} dbname={DATABASE} user={user.name}"',
            f"  password for {user.name}: {user.password}",
            *_examples(EXAMPLE_QUERIES.get(user.name, ())),
            "",
        ]
    lines += [
        "Auditor's view (in another terminal, from this checkout):",
        f"  .venv/bin/phigate sessions list -c {config_path}",
        f"  .venv/bin/phigate replay -c {config_path} SESSION_ID --instant",
        f"  .venv/bin/phigate journal show {config_path.parent / JOURNAL_DIR} --user alice",
        f"  .venv/bin/phigate journal verify {config_path.parent / JOURNAL_DIR} "
        f"--key {config_path.parent / SIGNING_KEY}.pub",
        "",
        "Ctrl-C to stop (the database and all temporary files are removed).", ""]
    return "\n".join(lines)


def _examples(queries: tuple[tuple[str, str], ...]) -> list[str]:
    width = max((len(sql) for sql, _ in queries), default=0)
    return [f"  try: {sql:<{width}}  -- {outcome}" for sql, outcome in queries]


# -- lifetime --------------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def _signals(handler: signal.Handlers | Callable[[int, FrameType | None], None],
             *signums: signal.Signals) -> Iterator[None]:
    """Handle ``signums`` with ``handler`` inside the block, restoring the old handlers after."""
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then raise KeyboardInterrupt.

    Interrupting ``TempCluster.start`` half-way can orphan a server: initdb's single-user backend
    or a postmaster still starting under a killed pg_ctl outlives the cleanup. Starting takes a
    few seconds, after which the interrupt unwinds normally and everything is removed.
    """
    received: list[int] = []
    with _signals(lambda signum, frame: received.append(signum), signal.SIGINT, signal.SIGTERM):
        try:
            yield
        except ClusterError:
            # A terminal's Ctrl-C also reaches initdb or pg_ctl; their failure is just the Ctrl-C.
            if received:
                raise KeyboardInterrupt from None
            raise
    if received:
        raise KeyboardInterrupt


def run_demo(port: int = 6432, *, out: TextIO = sys.stdout) -> int:
    """Set everything up, serve until Ctrl-C or SIGTERM, then tear everything down."""
    config_dir = Path(tempfile.mkdtemp(prefix="phigate-demo-"))
    cluster: TempCluster | None = None
    try:
        # SIGTERM during setup unwinds like Ctrl-C, so the cluster and temp dir are removed;
        # once the gateway runs, its own handlers turn both into a drain.
        with _signals(_raise_interrupt, signal.SIGTERM):
            listen_port = choose_port(port, out)
            print("Starting a throwaway PostgreSQL and loading synthetic patients...", file=out,
                  flush=True)
            cluster = TempCluster()
            with _deferred_interrupts():
                cluster.start()
            os.environ[PASSWORD_ENV] = provision(cluster)
            users = demo_users()
            config = demo_config(listen_port=listen_port, upstream_port=cluster.port, users=users)
            config_path = write_config(config_dir, config)
            return asyncio.run(serve(load_config(config_path), users, cluster, config_path, out))
    except KeyboardInterrupt:
        return EXIT_OK
    except (ClusterError, DemoError) as e:
        print(f"phigate demo: {e}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    finally:
        # An impatient second Ctrl-C must not cut the (bounded) cleanup short.
        with _signals(signal.SIG_IGN, signal.SIGINT, signal.SIGTERM):
            cleanup(cluster, config_dir)
        print("Demo stopped; everything it created has been removed.", file=out, flush=True)


def cleanup(cluster: TempCluster | None, config_dir: Path) -> None:
    os.environ.pop(PASSWORD_ENV, None)
    try:
        if cluster is not None:
            cluster.stop()
    finally:
        remove_tree(config_dir)
