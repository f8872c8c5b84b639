"""pgbench TPS directly, through PHIGate, through pgbouncer and through a bare Python byte relay.

Owns one benchmark run end to end: a throwaway PostgreSQL (``TempCluster``) initialised with
``pgbench -i``, every proxy in front of it on 127.0.0.1, the pgbench runs, the table, and the
cleanup of every process and directory it started (also on Ctrl-C, SIGTERM or an error).

Targets:
  direct      PostgreSQL itself
  <variant>   ``phigate serve`` as a subprocess; a *gateway variant* is a name plus a dict merged
              into the generated phigate.yaml (see ``GATEWAY_VARIANTS``): ``phigate`` (journal
              with fsync, the default) and ``phigate-write`` (journal durability ``write``)
  pgbouncer   session pooling, SCRAM to clients, the service credential upstream (as PHIGate)
  pyrelay     ``bench/byterelay.py``: asyncio streams copying bytes, no protocol at all
  pyrelay-proto  the same with asyncio Protocols (not run unless asked for)
  base-<variant>  a gateway variant run from another source tree (``--baseline DIR``, e.g. an
              export of main), for A/B measurements of a change in the same run

Modes: ``simple`` and ``extended`` run pgbench's select-only script (-S) in that protocol;
``tpcb`` runs its default TPC-B-like script (writes; simple protocol). Cells with one client
also log every transaction (``pgbench -l``) and report the median and p99 latency, and what
each proxy adds to direct and to pgbouncer.

Cells are interleaved (every target runs a given mode and client count before the next cell
starts) so that drift in the machine's load hits all targets alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from gateway.demo.tempcluster import TempCluster
from gateway.journal.keys import generate as generate_keys
from gateway.journal.segments import set_immutable
from gateway.recording.keys import generate_key_file
from protocols.postgres.scram import make_verifier

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
DATABASE = "bench"
ROLE = "bench"  # the upstream role: direct and byte-relay clients log in as this
# The identity clients present to PHIGate and pgbouncer, as a person would. It must differ from
# ROLE: pgbouncer would otherwise reuse the client's SCRAM keys to log in upstream.
CLIENT_USER = "alice"
SCALE = 1
START_TIMEOUT_S = 20.0
# pgbench gets its duration plus this much before it is killed and the cell marked failed.
PGBENCH_GRACE_S = 60.0
SERVER_OS_USER = "postgres"  # pgbouncer, like PostgreSQL, refuses to run as root


@dataclass(frozen=True)
class GatewayVariant:
    """A PHIGate configuration to benchmark: a name and overrides merged into the base config.

    A value of ``None`` in ``overrides`` removes the key. Relative paths resolve against the
    variant's own directory (where its phigate.yaml is written).
    """

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    # How to start it: ``phigate serve`` normally; the relay alone for protocol-layer figures.
    program: tuple[str, ...] = ("-m", "gateway.cli", "serve")
    policy: Mapping[str, Any] | None = None  # None: BENCH_POLICY


# No policy denies everything, so the base config allows pgbench's identity everything; the
# engine still parses and decides every statement.
BENCH_POLICY: dict[str, Any] = {
    "phi_tables": [],
    "rules": [{"name": "bench-allow-all", "users": [CLIENT_USER], "allow": ["all"]}],
}
PHI_POLICY: dict[str, Any] = {**BENCH_POLICY, "phi_tables": [f"{DATABASE}.public.pgbench_*"]}
PHI_BYTES_POLICY: dict[str, Any] = {**PHI_POLICY, "rules": [
    {**BENCH_POLICY["rules"][0], "max_bytes": "1MiB"}]}
# Session recording on, as configured in production (100 result rows kept per statement).
RECORDING = {"dir": "recordings", "key_file": "keys/recordings.key", "capture_rows": 100}
GATEWAY_VARIANTS: dict[str, GatewayVariant] = {
    variant.name: variant for variant in (
        # Production defaults: journal with fsync durability, the policy engine deciding.
        GatewayVariant("phigate"),
        GatewayVariant("phigate-write", {"journal": {"durability": "write"}}),
        GatewayVariant("phigate+rec", {"recordings": RECORDING}),
        # The protocol layer alone: no policy, journal or recorder hooks (bench/relay_only.py).
        GatewayVariant("relay-only", program=(str(REPO / "bench" / "relay_only.py"),)),
        # pgbench_accounts as PHI, without and with a max_bytes rule: the cost of byte counting.
        GatewayVariant("phigate-phi", policy=PHI_POLICY),
        GatewayVariant("phigate-bytes", policy=PHI_BYTES_POLICY),
    )
}
DEFAULT_TARGETS = ("direct", "relay-only", "phigate", "phigate-write", "pgbouncer", "pyrelay")


# -- small helpers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}:\n{tail(log)}")
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {START_TIMEOUT_S}s:\n{tail(log)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def remove_tree(path: Path) -> None:
    """Delete a directory, including journal segments the gateway sealed immutable."""
    for file in path.rglob("*"):
        if file.is_file() and not file.is_symlink():
            set_immutable(file, False)
    shutil.rmtree(path, ignore_errors=True)


def is_root() -> bool:
    return os.geteuid() == 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its reaped children, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(v) for v in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


# -- targets -------------------------------------------------------------------------------------


@dataclass
class Target:
    """Something pgbench can connect to: a port, the password it wants, and a process to watch."""

    name: str
    port: int = 0
    user: str = ROLE
    password: str = field(default="", repr=False)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start serving; the default (direct) has nothing to start."""

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)

    def cpu_pid(self) -> int | None:
        """The process whose CPU time a cell reports, if the target is a proxy."""
        return self.process.pid if self.process is not None else None


@dataclass
class Bench:
    """Everything shared by the targets of one run."""

    cluster: TempCluster
    workdir: Path
    upstream_password: str = field(repr=False)
    client_password: str = field(repr=False)

    @property
    def client_verifier(self) -> str:
        return make_verifier(self.client_password)


class GatewayTarget(Target):
    def __init__(self, bench: Bench, variant: GatewayVariant, name: str = "",
                 root: Path = REPO) -> None:
        super().__init__(name or variant.name, free_port(), CLIENT_USER, bench.client_password)
        self.bench = bench
        self.variant = variant
        self.root = root  # the source tree it runs from (``-m`` puts it first on sys.path)
        self.dir = bench.workdir / self.name
        self.metrics_port = free_port()

    def journal_counters(self) -> tuple[float, float] | None:
        """(journal entries, group-commit batches) so far, from the gateway's /metrics."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.metrics_port}/metrics",
                                        timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        found = dict(_COUNTER.findall(text))
        if "entries" not in found or "batches" not in found:
            return None
        return float(found["entries"]), float(found["batches"])

    def config(self) -> dict[str, Any]:
        base = {
            "listen": f"{HOST}:{self.port}",
            "journal": {"dir": "journal", "signing_key": "keys/journal.key"},
            "policies": ["policy.yaml"],
            "databases": {DATABASE: {"host": HOST, "port": self.bench.cluster.port,
                                     "user": ROLE, "password_env": "BENCH_DB_PASSWORD"}},
            "users": {CLIENT_USER: {"password": self.bench.client_verifier}},
            "log": {"level": "warning"},
            "metrics": f"{HOST}:{self.metrics_port}",
        }
        return deep_merge(base, self.variant.overrides)

    def start(self) -> None:
        self.dir.mkdir()
        generate_keys(self.dir / "keys" / "journal")
        recordings = self.config().get("recordings")
        if isinstance(recordings, Mapping) and "key_file" in recordings:
            generate_key_file(self.dir / recordings["key_file"])
        policy = self.variant.policy if self.variant.policy is not None else BENCH_POLICY
        (self.dir / "policy.yaml").write_text(yaml.safe_dump(dict(policy)), encoding="utf-8")
        config_path = self.dir / "phigate.yaml"
        config_path.write_text(yaml.safe_dump(self.config()), encoding="utf-8")
        log = self.dir / "gateway.log"
        program = [arg.replace(str(REPO), str(self.root)) for arg in self.variant.program]
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, *program, "-c", str(config_path)],
                cwd=self.root, stdout=out, stderr=out, start_new_session=True,
                env=clean_env(BENCH_DB_PASSWORD=self.bench.upstream_password))
        wait_listening(self.port, self.process, f"phigate ({self.name})", log)


class PgBouncerTarget(Target):
    def __init__(self, bench: Bench, max_clients: int) -> None:
        super().__init__("pgbouncer", free_port(), CLIENT_USER, bench.client_password)
        self.bench = bench
        self.max_clients = max_clients
        self.dir = bench.workdir / "pgbouncer"

    def config(self) -> str:
        upstream = (f"host={HOST} port={self.bench.cluster.port} dbname={DATABASE} "
                    f"user={ROLE} password={self.bench.upstream_password}")
        return "\n".join([
            "[databases]",
            f"{DATABASE} = {upstream}",
            "[pgbouncer]",
            f"listen_addr = {HOST}",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = scram-sha-256",
            f"auth_file = {self.dir / 'userlist.txt'}",
            "pool_mode = session",
            f"max_client_conn = {self.max_clients + 10}",
            f"default_pool_size = {self.max_clients + 10}",
            f"logfile = {self.dir / 'pgbouncer.log'}",
            f"pidfile = {self.dir / 'pgbouncer.pid'}",
            "log_connections = 0",
            "log_disconnections = 0",
            "ignore_startup_parameters = extra_float_digits",
            "",
        ])

    def start(self) -> None:
        binary = shutil.which("pgbouncer")
        if binary is None:
            raise RuntimeError("pgbouncer is not installed (apt-get install -y pgbouncer)")
        self.dir.mkdir(mode=0o700)
        # A plaintext entry, not a SCRAM verifier: with a verifier pgbouncer (up to at least 1.25)
        # reuses the client's SCRAM keys for the forced upstream user, and the login fails
        # (pgbouncer/pgbouncer#944, #1461). Clients still authenticate with SCRAM-SHA-256.
        (self.dir / "userlist.txt").write_text(f'"{CLIENT_USER}" "{self.bench.client_password}"\n')
        (self.dir / "pgbouncer.ini").write_text(self.config())
        command = [binary, str(self.dir / "pgbouncer.ini")]
        if is_root():
            for path in (self.dir, *self.dir.iterdir()):
                shutil.chown(path, user=SERVER_OS_USER)
            command = ["runuser", "-u", SERVER_OS_USER, "--", *command]
        log = self.dir / "pgbouncer.log"
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True,
                                        env=clean_env())
        wait_listening(self.port, self.process, "pgbouncer", log)

    def cpu_pid(self) -> int | None:
        # Under runuser the Popen pid is runuser's; pgbouncer writes its own.
        try:
            return int((self.dir / "pgbouncer.pid").read_text().strip())
        except (OSError, ValueError):
            return super().cpu_pid()


class RelayTarget(Target):
    def __init__(self, bench: Bench, name: str, flavour: str) -> None:
        super().__init__(name, free_port(), ROLE, bench.upstream_password)
        self.bench = bench
        self.flavour = flavour

    def start(self) -> None:
        log = self.bench.workdir / f"{self.name}.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, str(REPO / "bench" / "byterelay.py"),
                 "--listen-port", str(self.port), "--flavour", self.flavour,
                 "--upstream", f"{HOST}:{self.bench.cluster.port}"],
                cwd=REPO, stdout=out, stderr=out, start_new_session=True, env=clean_env())
        wait_listening(self.port, self.process, self.name, log)


def make_target(name: str, bench: Bench, max_clients: int, baseline: Path | None = None
                ) -> Target:
    if baseline is not None and name.startswith("base-") and name[5:] in GATEWAY_VARIANTS:
        return GatewayTarget(bench, GATEWAY_VARIANTS[name[5:]], name, baseline.resolve())
    if name == "direct":
        return Target("direct", bench.cluster.port, ROLE, bench.upstream_password)
    if name == "pgbouncer":
        return PgBouncerTarget(bench, max_clients)
    if name == "pyrelay":
        return RelayTarget(bench, name, "streams")
    if name == "pyrelay-proto":
        return RelayTarget(bench, name, "protocol")
    if name in GATEWAY_VARIANTS:
        return GatewayTarget(bench, GATEWAY_VARIANTS[name])
    raise SystemExit(f"unknown target {name!r}; known: direct, pgbouncer, pyrelay, "
                     f"pyrelay-proto, {', '.join(GATEWAY_VARIANTS)}")


# -- running pgbench ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    target: str
    mode: str
    clients: int
    tps: float | None  # None: the run failed
    proxy_cpu: float | None = None  # CPU share of one core used by the proxy process
    error: str = ""
    # Journal entries per group-commit batch (one write, one fdatasync in fsync mode).
    batch_size: float | None = None
    # Per-transaction latency from pgbench's log (-l), for the c=1 cells: median and p99.
    latency_p50_us: float | None = None
    latency_p99_us: float | None = None


_COUNTER = re.compile(r"^phigate_journal_(entries|batches)_total ([0-9.e+]+)$", re.MULTILINE)
_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.MULTILINE)


# pgbench's own scripts: the select-only one (-S, one statement per transaction) in either
# protocol, and the default TPC-B-like one (BEGIN, three UPDATEs, a SELECT, an INSERT, END).
MODES = {"simple": ("-S", "-M", "simple"), "extended": ("-S", "-M", "extended"),
         "tpcb": ("-M", "simple")}


def run_pgbench(target: Target, mode: str, clients: int, seconds: int) -> Cell:
    logs = Path(tempfile.mkdtemp(prefix="pgbench-log-")) if clients == 1 else None
    command = ["pgbench", "-n", *MODES[mode], "-T", str(seconds), "-c", str(clients),
               "-j", str(clients), "-h", HOST, "-p", str(target.port), "-U", target.user, DATABASE]
    if logs is not None:
        command[2:2] = ["-l", f"--log-prefix={logs / 'txn'}"]
    try:
        cell = _run_cell(target, mode, clients, seconds, command)
    finally:
        latencies = _latencies(logs) if logs is not None else []
        if logs is not None:
            shutil.rmtree(logs, ignore_errors=True)
    if latencies and cell.tps:
        cell = replace(cell, latency_p50_us=_percentile(latencies, 50),
                       latency_p99_us=_percentile(latencies, 99))
    return cell


def _latencies(logs: Path) -> list[float]:
    """Transaction latencies in µs: the third field of each ``pgbench -l`` line."""
    found = []
    for path in logs.glob("txn*"):
        for line in path.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[2].isdigit():
                found.append(float(fields[2]))
    return sorted(found)


def _percentile(ordered: list[float], pct: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


def _run_cell(target: Target, mode: str, clients: int, seconds: int, command: list[str]
              ) -> Cell:
    env = clean_env(PGPASSWORD=target.password, PGSSLMODE="disable", PGCONNECT_TIMEOUT="10")
    pid = target.cpu_pid()
    counters = target.journal_counters() if isinstance(target, GatewayTarget) else None
    cpu_before, wall_before = (cpu_seconds(pid) if pid else 0.0), time.monotonic()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env,
                              timeout=seconds + PGBENCH_GRACE_S)
    except subprocess.TimeoutExpired:
        return Cell(target.name, mode, clients, None, error="pgbench timed out")
    wall = time.monotonic() - wall_before
    cpu = (cpu_seconds(pid) - cpu_before) / wall if pid else None
    match = _TPS.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        error = " | ".join(proc.stderr.strip().splitlines()[-3:]) or "no tps in output"
        return Cell(target.name, mode, clients, None, cpu, error)
    return Cell(target.name, mode, clients, float(match.group(1)), cpu,
                batch_size=_batch_size(target, counters))


def _batch_size(target: Target, before: tuple[float, float] | None) -> float | None:
    after = target.journal_counters() if isinstance(target, GatewayTarget) else None
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def prepare_cluster(cluster: TempCluster, upstream_password: str) -> None:
    cluster.add_role(ROLE, upstream_password)
    cluster.create_database(DATABASE, owner=ROLE)
    proc = subprocess.run(
        ["pgbench", "-i", "-q", "-s", str(SCALE), "-h", HOST, "-p", str(cluster.port), "-U", ROLE,
         DATABASE], capture_output=True, text=True, timeout=300,
        env=clean_env(PGPASSWORD=upstream_password, PGSSLMODE="disable"))
    if proc.returncode != 0:
        raise RuntimeError(f"pgbench -i failed: {proc.stderr.strip()}")


# -- reporting -----------------------------------------------------------------------------------


def ratio(cells: Mapping[str, Cell], top: str, bottom: str) -> str:
    a, b = cells.get(top), cells.get(bottom)
    if a is None or b is None or not a.tps or not b.tps:
        return "-"
    return f"{a.tps / b.tps:.2f}"


def ratio_columns(targets: Sequence[str]) -> list[tuple[str, str]]:
    """(numerator, denominator) pairs: every proxy against direct, then against pgbouncer."""
    proxies = [t for t in targets if t != "direct"]
    pairs = [(p, "direct") for p in proxies if "direct" in targets]
    if "pgbouncer" in targets:
        pairs += [(p, "pgbouncer") for p in proxies if p != "pgbouncer"]
    return pairs


def format_table(results: Sequence[Cell], targets: Sequence[str]) -> str:
    """Two aligned blocks: TPS per target, then the ratios between targets."""
    pairs = ratio_columns(targets)
    tps_rows = [["mode", "clients", *targets]]
    ratio_rows = [["mode", "clients", *(f"{a}/{b}" for a, b in pairs)]]
    for mode, clients in dict.fromkeys((c.mode, c.clients) for c in results):
        cells = {c.target: c for c in results if (c.mode, c.clients) == (mode, clients)}
        tps = [f"{cells[t].tps:.0f}" if t in cells and cells[t].tps else "FAIL" for t in targets]
        tps_rows.append([mode, str(clients), *tps])
        ratio_rows.append([mode, str(clients), *(ratio(cells, a, b) for a, b in pairs)])
    blocks = [_aligned(tps_rows)]
    if pairs:
        blocks.append(_aligned(ratio_rows))
    return "\n\n".join(blocks)


def _aligned(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])


def format_cpu(results: Sequence[Cell]) -> str:
    """Proxy CPU use: a single-threaded proxy saturates at 100% of one core."""
    proxied = [c for c in results if c.proxy_cpu is not None]
    if not proxied:
        return ""
    lines = ["proxy CPU (% of one core) and CPU µs per transaction:"]
    for c in proxied:
        cpu = c.proxy_cpu or 0.0
        per_txn = f"{cpu * 1e6 / c.tps:.0f}" if c.tps else "-"
        batch = f"  {c.batch_size:5.1f} entries/batch" if c.batch_size else ""
        lines.append(f"  {c.target:>14} {c.mode:>8} c={c.clients:<3} {cpu * 100:5.0f}%"
                     f"  {per_txn:>5} µs/txn{batch}")
    return "\n".join(lines)


def format_latency(results: Sequence[Cell]) -> str:
    """The c=1 cells: latency per transaction, and what each proxy adds to direct/pgbouncer."""
    rows = [["mode", "target", "p50 µs", "p99 µs", "+p50 vs direct", "+p99 vs direct",
             "+p50 vs pgbouncer", "+p99 vs pgbouncer"]]
    for mode in dict.fromkeys(c.mode for c in results):
        cells = {c.target: c for c in results
                 if c.mode == mode and c.clients == 1 and c.latency_p50_us}
        for name, cell in cells.items():
            row = [mode, name, f"{cell.latency_p50_us:.0f}", f"{cell.latency_p99_us:.0f}"]
            for base in ("direct", "pgbouncer"):
                ref = cells.get(base)
                if ref is None or name == base:
                    row += ["-", "-"]
                    continue
                row += [f"{(cell.latency_p50_us or 0) - (ref.latency_p50_us or 0):+.0f}",
                        f"{(cell.latency_p99_us or 0) - (ref.latency_p99_us or 0):+.0f}"]
            rows.append(row)
    if len(rows) == 1:
        return ""
    return ("c=1 latency per transaction (pgbench -l; -S runs one statement per transaction):\n"
            + _aligned(rows))


def environment() -> str:
    versions = []
    for tool in ("pgbench", "pgbouncer"):
        if shutil.which(tool):
            out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
            versions.append(out.splitlines()[0] if out else tool)
    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio (no uvloop)"
    return (f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {loop}; "
            + "; ".join(versions))


# -- the run ---------------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def running(targets: Sequence[Target]) -> Iterator[None]:
    started: list[Target] = []
    try:
        for target in targets:
            target.start()
            started.append(target)
        yield
    finally:
        for target in reversed(started):
            target.stop()
        for target in targets:  # a target that failed half-way may still have a process
            target.stop()


def run(args: argparse.Namespace) -> list[Cell]:
    workdir = Path(tempfile.mkdtemp(prefix="phigate-bench-"))
    workdir.chmod(0o711)  # pgbouncer runs as postgres and must reach its own subdirectory
    results: list[Cell] = []
    try:
        with TempCluster() as cluster:
            bench = Bench(cluster, workdir, secrets.token_urlsafe(18), secrets.token_urlsafe(18))
            prepare_cluster(cluster, bench.upstream_password)
            targets = [make_target(name, bench, max(args.clients), args.baseline)
                       for name in args.targets]
            with running(targets):
                for mode in args.modes:
                    for clients in args.clients:
                        for target in targets:
                            cell = run_pgbench(target, mode, clients, args.seconds)
                            results.append(cell)
                            note = f"{cell.tps:9.0f} tps" if cell.tps else f"FAILED {cell.error}"
                            print(f"  {mode:>8} c={clients:<3} {target.name:>14}: {note}",
                                  file=sys.stderr, flush=True)
    finally:
        remove_tree(workdir)
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="pgbench -S: direct vs PHIGate vs pgbouncer")
    parser.add_argument("--seconds", type=int, default=10, help="per cell (default 10)")
    parser.add_argument("--quick", action="store_true", help="3 seconds per cell")
    parser.add_argument("--clients", type=lambda s: [int(v) for v in s.split(",")],
                        default=[1, 8, 32], help="comma-separated client counts (default 1,8,32)")
    parser.add_argument("--modes", type=lambda s: s.split(","),
                        default=["simple", "extended", "tpcb"],
                        help="comma-separated: simple and extended (pgbench -S -M …), tpcb "
                             "(the default TPC-B-like script); default all three")
    parser.add_argument("--targets", type=lambda s: s.split(","), default=list(DEFAULT_TARGETS),
                        help=f"comma-separated (default {','.join(DEFAULT_TARGETS)}); also "
                             f"pyrelay-proto and any of: {', '.join(GATEWAY_VARIANTS)}")
    parser.add_argument("--baseline", type=Path,
                        help="source tree for base-<variant> targets (A/B runs), e.g. "
                             "`git archive main | tar -x -C DIR`")
    parser.add_argument("--json", type=Path, help="also write the cells as JSON to this file")
    args = parser.parse_args(argv)
    unknown = [mode for mode in args.modes if mode not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
    if args.quick:
        args.seconds = 3
    if "pgbouncer" in args.targets and shutil.which("pgbouncer") is None:
        print("pgbouncer not installed; skipping it (apt-get install -y pgbouncer)",
              file=sys.stderr)
        args.targets = [t for t in args.targets if t != "pgbouncer"]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Both stop the run cleanly, even when started from a shell that ignores SIGINT (``cmd &``).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGINT, _raise_interrupt)
    cells = len(args.targets) * len(args.modes) * len(args.clients)
    print(f"{cells} cells of {args.seconds}s: {environment()}", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        results = run(args)
    except KeyboardInterrupt:
        print("interrupted; everything started has been stopped", file=sys.stderr)
        return 130
    print(f"\npgbench (-S for simple/extended), scale {SCALE}, {args.seconds}s per cell, TPS "
          f"(run took {time.monotonic() - started:.0f}s; {environment()})\n")
    print(format_table(results, args.targets))
    print("\n" + format_cpu(results))
    latency = format_latency(results)
    if latency:
        print("\n" + latency)
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in results], indent=2))
    failed = [c for c in results if c.tps is None]
    for cell in failed:
        print(f"FAILED {cell.target} {cell.mode} c={cell.clients}: {cell.error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
