"""Pass-through benchmark: pgbench -S against PostgreSQL, the proxy and PgBouncer.

Builds a throwaway cluster, starts `pgsodium-proxy serve` as its own process (and
PgBouncer in session mode when its binary is installed), runs the same select-only
load against each target in turn and prints the figures. It measures; it never
asserts. Run from the repository root: `.venv/bin/python -m bench.passthrough`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from keystore.errors import KeystoreError
from keystore.rootkey import generate_key_file
from proxy.admin import AdminError, install_schema
from proxy.cluster import SERVER_USER, Cluster, ClusterError, find_bindir, free_port

DIRECT, PROXY, PGBOUNCER = "direct", "proxy", "pgbouncer"
MODES = ("simple", "extended")
PGBOUNCER_PLACES = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
# /proc/<pid>/stat counts CPU time in clock ticks (utime, stime: fields 14 and 15).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STARTUP_SECONDS = 30.0
STOP_SECONDS = 10.0


class BenchError(RuntimeError):
    """A target could not be set up; the message says which and why."""


@dataclass(frozen=True)
class Options:
    seconds: int
    scale: int
    clients: tuple[int, ...]
    modes: tuple[str, ...]
    threads: int
    warmup: int
    pgbouncer: str | None
    json_path: Path | None
    keep: bool


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    pid: int | None = None  # the process in between, whose CPU time we sample


@dataclass
class Result:
    target: str
    mode: str
    clients: int
    threads: int
    seconds: int
    tps: float | None = None
    latency_ms: float | None = None
    transactions: int | None = None
    failed: int | None = None
    connect_ms: float | None = None
    # CPU time of the process between pgbench and PostgreSQL (proxy, PgBouncer).
    hop_cpu_s: float | None = None
    hop_sys_s: float | None = None  # the system (kernel) part of hop_cpu_s
    errors: list[str] = field(default_factory=list)


# -- the proxy process: CPU time and peak RSS from /proc ---------------------------


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time of `pid` so far, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces; count fields after its ')'.
    after_name = text[text.rindex(")") + 2 :].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    return utime / CLOCK_TICKS, stime / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def memory_kib(pid: int, field_name: str = "VmHWM") -> int:
    """A `Vm*` line of /proc/<pid>/status in KiB (VmHWM is the peak RSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {field_name}")


# -- pgbench ------------------------------------------------------------------------

_FIGURES = {
    "transactions": (r"^number of transactions actually processed: (\d+)", int),
    "failed": (r"^number of failed transactions: (\d+)", int),
    "latency_ms": (r"^latency average = ([\d.]+) ms", float),
    "connect_ms": (r"^initial connection time = ([\d.]+) ms", float),
    "tps": (r"^tps = ([\d.]+) \((?:without|excluding)", float),
}


def parse_pgbench(stdout: str) -> dict[str, Any]:
    """The figures of one pgbench run's summary; missing ones are left out."""
    figures: dict[str, Any] = {}
    for name, (pattern, convert) in _FIGURES.items():
        found = re.search(pattern, stdout, re.MULTILINE)
        if found:
            figures[name] = convert(found.group(1))
    if "tps" not in figures:  # worded otherwise by another version
        found = re.search(r"^tps = ([\d.]+)", stdout, re.MULTILINE)
        if found:
            figures["tps"] = float(found.group(1))
    return figures


def pgbench_errors(stderr: str, limit: int = 5) -> list[str]:
    """pgbench's error lines, verbatim, at most `limit` of them."""
    lines = [line for line in stderr.splitlines() if "error" in line.lower()]
    return lines[:limit]


def pgbench(args: list[str], port: int) -> subprocess.CompletedProcess[str]:
    argv = [
        str(find_bindir() / "pgbench"),
        *("-h", "127.0.0.1", "-p", str(port), "-U", "postgres"),
        *args,
        "postgres",
    ]
    env = {**os.environ, "PGAPPNAME": "bench.passthrough"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def run_load(target: Target, mode: str, clients: int, options: Options) -> Result:
    """One `pgbench -S` run against `target`, with the proxy's CPU time around it."""
    threads = min(clients, options.threads)
    result = Result(target.name, mode, clients, threads, options.seconds)
    args = ["-S", "-n", "-T", str(options.seconds), "-c", str(clients)]
    args += ["-j", str(threads), "-M", mode]
    before = cpu_times(target.pid) if target.pid else None

    done = pgbench(args, target.port)

    if target.pid and before is not None:
        user, system = cpu_times(target.pid)
        result.hop_cpu_s = user + system - sum(before)
        result.hop_sys_s = system - before[1]
    for name, value in parse_pgbench(done.stdout).items():
        setattr(result, name, value)
    result.errors = pgbench_errors(done.stderr)
    if done.returncode != 0 and not result.errors:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        result.errors = [f"pgbench exited {done.returncode}", *tail]
    return result


# -- the targets --------------------------------------------------------------------


def give_to_server_user(path: Path) -> None:
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(SERVER_USER)
    for item in [path, *path.rglob("*")]:
        os.chown(item, entry.pw_uid, entry.pw_gid)


def log_tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(
                f"exited with status {process.returncode}:\n{log_tail(log)}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise BenchError(f"not listening on {port} after {STARTUP_SECONDS:.0f} s")


def stop_process(process: subprocess.Popen[bytes], name: str) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        print(f"{name} did not stop in {STOP_SECONDS:.0f} s; killing it", flush=True)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


def spawn(
    stack: ExitStack, argv: list[str], log: Path, name: str, server_user: bool = False
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (Ctrl-C reaches only us) and stop it on exit.

    With `server_user` and when we are root, the child itself runs as `postgres`
    (PgBouncer refuses root), with no runuser in between to leave it orphaned.
    """
    user = SERVER_USER if server_user and os.geteuid() == 0 else None
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    stack.callback(stop_process, process, name)
    return process


def start_cluster(stack: ExitStack, workdir: Path, scale: int) -> Target:
    cluster = Cluster(workdir / "pgdata", free_port())
    print(f"PostgreSQL: initdb and start on port {cluster.port}", flush=True)
    cluster.initdb()
    stack.callback(quietly, cluster.stop, "fast")
    cluster.start()

    print(f"pgbench -i -s {scale} ...", flush=True)
    started = time.monotonic()
    done = pgbench(["-i", "-s", str(scale), "-q"], cluster.port)
    if done.returncode != 0:
        raise BenchError(f"pgbench -i failed:\n{done.stderr.strip()}")
    print(f"  initialised in {time.monotonic() - started:.1f} s", flush=True)
    return Target(DIRECT, cluster.port)


def proxy_command() -> list[str]:
    script = Path(sys.executable).parent / "pgsodium-proxy"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "proxy.cli"]


def proxy_config(workdir: Path, port: int, upstream_port: int, key: Path) -> Path:
    dsn = f"postgresql://postgres@127.0.0.1:{upstream_port}/postgres"
    path = workdir / "proxy.toml"
    path.write_text(
        "[listen]\n"
        f'host = "127.0.0.1"\nport = {port}\n\n'
        "[upstream]\n"
        f'host = "127.0.0.1"\nport = {upstream_port}\nadmin_dsn = "{dsn}"\n\n'
        "[root_key]\n"
        f"file = {json.dumps(str(key))}\n\n"
        '[log]\nlevel = "info"\n',
        encoding="utf-8",
    )
    return path


def start_proxy(stack: ExitStack, workdir: Path, upstream_port: int) -> Target:
    key_path = workdir / "root.key"
    root_key = generate_key_file(key_path)  # 0600
    dsn = f"postgresql://postgres@127.0.0.1:{upstream_port}/postgres"
    print(asyncio.run(install_schema(dsn, root_key)), flush=True)

    port = free_port()
    config = proxy_config(workdir, port, upstream_port, key_path)
    log = workdir / "proxy.log"
    argv = [*proxy_command(), "serve", "--config", str(config)]
    process = spawn(stack, argv, log, "proxy")
    try:
        wait_for_port(port, process, log)
    except BenchError as exc:
        raise BenchError(f"pgsodium-proxy serve {exc}") from None
    print(f"proxy: pid {process.pid} on port {port} (log {log})", flush=True)
    return Target(PROXY, port, process.pid)


def find_pgbouncer(explicit: str | None) -> str | None:
    if explicit:
        return explicit
    found = shutil.which("pgbouncer")
    if found:
        return found
    return next((p for p in PGBOUNCER_PLACES if os.access(p, os.X_OK)), None)


def pgbouncer_ini(folder: Path, port: int, upstream_port: int, pool: int) -> Path:
    (folder / "userlist.txt").write_text('"postgres" ""\n', encoding="utf-8")
    ini = folder / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"postgres = host=127.0.0.1 port={upstream_port} dbname=postgres\n\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'userlist.txt'}\n"
        f"pool_mode = session\nmax_client_conn = {pool + 10}\n"
        f"default_pool_size = {pool}\n"
        # No logfile: PgBouncer logs to stderr, which spawn() writes to a file.
        "ignore_startup_parameters = extra_float_digits\n",
        encoding="utf-8",
    )
    return ini


def start_pgbouncer(
    stack: ExitStack, binary: str, workdir: Path, upstream_port: int, pool: int
) -> Target:
    folder = workdir / "pgbouncer"
    folder.mkdir()
    port = free_port()
    ini = pgbouncer_ini(folder, port, upstream_port, pool)
    give_to_server_user(folder)

    log = workdir / "pgbouncer.log"
    process = spawn(stack, [binary, str(ini)], log, "pgbouncer", server_user=True)
    try:
        wait_for_port(port, process, log)
    except BenchError as exc:
        raise BenchError(f"pgbouncer {exc}") from None
    print(f"pgbouncer: session pooling on port {port}", flush=True)
    return Target(PGBOUNCER, port, process.pid)


def quietly(action: Callable[..., object], *args: object) -> None:
    """Run one clean-up step; report its failure and carry on with the rest."""
    try:
        action(*args)
    except Exception as exc:  # clean-up must go on whatever one step did
        print(f"clean-up: {exc}", file=sys.stderr, flush=True)


# -- the run ------------------------------------------------------------------------


@dataclass
class ProxyMeter:
    """CPU time, RSS and log warnings of the proxy process over the whole run, and
    the machine's load average around it (other work on the machine skews figures).
    """

    pid: int | None = None
    log: Path | None = None
    cpu_at_start: float = 0.0
    usage: dict[str, Any] = field(default_factory=dict)

    def attach(self, pid: int, log: Path) -> None:
        self.pid, self.log = pid, log
        self.cpu_at_start = cpu_seconds(pid)
        self.usage = {"pid": pid, "rss_start_kib": memory_kib(pid, "VmRSS")}
        self.usage["load_before"] = os.getloadavg()[0]

    def finish(self) -> None:
        """Sample before the clean-up stops the proxy; fine if it already died."""
        if self.pid is None or self.log is None:
            return
        self.usage["load_after"] = os.getloadavg()[0]
        try:
            self.usage["cpu_s"] = cpu_seconds(self.pid) - self.cpu_at_start
            self.usage["peak_rss_kib"] = memory_kib(self.pid, "VmHWM")
        except (OSError, BenchError) as exc:
            self.usage["exited"] = str(exc)
        lines = self.log.read_text(errors="replace").splitlines()
        noted = [line for line in lines if " WARNING " in line or " ERROR " in line]
        self.usage["log_warnings"] = len(noted)
        self.usage["log_sample"] = noted[:5]


def bring_up(stack: ExitStack, options: Options) -> tuple[list[Target], Path]:
    workdir = Path(tempfile.mkdtemp(prefix="pgsodium-bench-"))
    os.chmod(workdir, 0o755)  # the postgres system user must reach its data dir
    if options.keep:
        print(f"keeping {workdir}", flush=True)
    else:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)

    direct = start_cluster(stack, workdir, options.scale)
    targets = [direct, start_proxy(stack, workdir, direct.port)]
    if options.pgbouncer:
        pool = max(options.clients) + 2
        bouncer = start_pgbouncer(stack, options.pgbouncer, workdir, direct.port, pool)
        targets.append(bouncer)
    else:
        print("pgbouncer: not found; install it with `apt-get install pgbouncer`")
    return targets, workdir


def warm_up(targets: list[Target], seconds: int) -> None:
    """Page cache and first-use code paths, so the first measured run is not cold."""
    if seconds <= 0:
        return
    print(f"warm-up: {seconds} s per target", flush=True)
    for target in targets:
        pgbench(["-S", "-n", "-T", str(seconds), "-c", "1"], target.port)


def run_matrix(targets: list[Target], options: Options, results: list[Result]) -> None:
    """Targets interleaved per (mode, clients), so drift hits all of them alike."""
    total = len(options.modes) * len(options.clients) * len(targets)
    for mode in options.modes:
        for clients in options.clients:
            for target in targets:
                step = f"[{len(results) + 1}/{total}]"
                line = f"{step:7} {target.name:9} {mode:8} -c {clients:<3} ..."
                print(line, end=" ", flush=True)
                result = run_load(target, mode, clients, options)
                results.append(result)
                print(summary(result), flush=True)


def measure(
    stack: ExitStack, options: Options, results: list[Result], meter: ProxyMeter
) -> int:
    """Bring the targets up and run the matrix; the exit status of the command."""
    try:
        targets, workdir = bring_up(stack, options)
        proxy = next(t for t in targets if t.name == PROXY)
        assert proxy.pid is not None
        meter.attach(proxy.pid, workdir / "proxy.log")
        warm_up(targets, options.warmup)
        run_matrix(targets, options, results)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted; cleaning up", file=sys.stderr, flush=True)
        return 130
    except (BenchError, ClusterError, AdminError, KeystoreError) as exc:
        print(f"bench.passthrough: {exc}", file=sys.stderr, flush=True)
        return 2
    finally:
        meter.finish()


# -- the report ---------------------------------------------------------------------


def summary(result: Result) -> str:
    if result.tps is None:
        return "FAILED: " + " | ".join(result.errors)
    text = f"{result.tps:,.0f} tps"
    if result.errors:
        text += " with errors: " + " | ".join(result.errors)
    return text


def ratio(result: Result, results: list[Result], other: str) -> str:
    """Proxy TPS over `other`'s TPS for the same mode and clients; blank elsewhere."""
    if result.target != PROXY or result.tps is None:
        return ""
    for row in results:
        same = (row.mode, row.clients) == (result.mode, result.clients)
        if same and row.target == other and row.tps:
            return f"{result.tps / row.tps:.2f}"
    return ""


def figures_table(results: list[Result]) -> str:
    header = (
        f"{'target':10} {'mode':9} {'clients':>7} {'threads':>7} {'TPS':>10} "
        f"{'latency ms':>10} {'proxy/direct':>12} {'proxy/pgbouncer':>15}"
    )
    lines = [header, "-" * len(header)]
    for row in results:
        tps = f"{row.tps:,.0f}" if row.tps is not None else "failed"
        latency = f"{row.latency_ms:.3f}" if row.latency_ms is not None else "-"
        lines.append(
            f"{row.target:10} {row.mode:9} {row.clients:>7} {row.threads:>7} "
            f"{tps:>10} {latency:>10} {ratio(row, results, DIRECT):>12} "
            f"{ratio(row, results, PGBOUNCER):>15}"
        )
    return "\n".join(lines)


def hop_rows(results: list[Result]) -> list[str]:
    header = (
        f"{'target':10} {'mode':9} {'clients':>7} {'CPU s':>6} {'sys s':>6} "
        f"{'% of a core':>11} {'CPU µs/txn':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in results:
        if row.hop_cpu_s is None or row.hop_sys_s is None:
            continue
        per_txn = row.hop_cpu_s / row.transactions * 1e6 if row.transactions else 0
        lines.append(
            f"{row.target:10} {row.mode:9} {row.clients:>7} {row.hop_cpu_s:>6.2f} "
            f"{row.hop_sys_s:>6.2f} {100 * row.hop_cpu_s / row.seconds:>10.0f}% "
            f"{per_txn:>10.1f}"
        )
    return lines


def proxy_table(results: list[Result], usage: dict[str, Any]) -> str:
    lines = ["CPU time of the process in between, per measured run:"]
    lines += hop_rows(results)
    lines.append(f"\nproxy process (pid {usage['pid']}):")
    if "cpu_s" in usage:
        lines.append(
            f"CPU time from start of warm-up to end: {usage['cpu_s']:.2f} s; "
            f"RSS after start {usage['rss_start_kib'] / 1024:.1f} MiB, "
            f"peak RSS (VmHWM) {usage['peak_rss_kib'] / 1024:.1f} MiB"
        )
    if "exited" in usage:
        lines.append(f"the proxy process was gone at the end: {usage['exited']}")
    lines.append(f"proxy log: {usage.get('log_warnings', 0)} WARNING/ERROR lines")
    lines += [f"  {line}" for line in usage.get("log_sample", [])]
    lines.append(
        f"1-minute load average on {os.cpu_count()} CPUs: "
        f"{usage['load_before']:.2f} before the runs (other work), "
        f"{usage.get('load_after', 0):.2f} after (this benchmark's own included)"
    )
    return "\n".join(lines)


def versions(options: Options) -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    commands = {"pgbench": [str(find_bindir() / "pgbench"), "--version"]}
    if options.pgbouncer:
        commands["pgbouncer"] = [options.pgbouncer, "--version"]
    for name, argv in commands.items():
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        found[name] = (done.stdout.splitlines() or ["?"])[0]
    return found


def report(results: list[Result], usage: dict[str, Any], options: Options) -> None:
    print("\n" + figures_table(results))
    if usage:
        print("\n" + proxy_table(results, usage))
    for row in results:
        if row.errors:
            where = f"{row.target} {row.mode} -c {row.clients}"
            print(f"\nerrors from pgbench, {where}:\n  " + "\n  ".join(row.errors))
    if options.json_path:
        document = {
            "settings": {**asdict(options), "json_path": str(options.json_path)},
            "versions": versions(options),
            "results": [asdict(row) for row in results],
            "proxy_process": usage,
        }
        options.json_path.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {options.json_path}")


# -- command line -------------------------------------------------------------------


def comma_list(convert: Callable[[str], Any], allowed: set[Any] | None = None) -> Any:
    def parse(text: str) -> tuple[Any, ...]:
        values = tuple(convert(part.strip()) for part in text.split(",") if part)
        if not values or (allowed is not None and set(values) - allowed):
            raise argparse.ArgumentTypeError(f"bad list {text!r}")
        return values

    return parse


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.passthrough",
        description="pgbench -S against PostgreSQL, pgsodium-proxy and PgBouncer "
        "(when installed) on a throwaway cluster; prints figures.",
    )
    add = parser.add_argument
    add("--seconds", type=int, default=10, help="length of each run (10)")
    add("--scale", type=int, default=10, help="pgbench -i -s (10)")
    add("--clients", type=comma_list(int), default=(1, 8), help="list (1,8)")
    modes = {"simple", "extended", "prepared"}
    add("--modes", type=comma_list(str, modes), default=MODES, help="list")
    cpus = os.cpu_count() or 1
    add("--threads", type=int, default=cpus, help=f"pgbench -j cap ({cpus})")
    add("--warmup", type=int, default=2, help="unmeasured seconds per target (2)")
    add("--pgbouncer", help="the pgbouncer binary (default: look on PATH, sbin)")
    add("--no-pgbouncer", action="store_true", help="leave PgBouncer out")
    add("--json", type=Path, dest="json_path", metavar="FILE", help="also write")
    add("--keep", action="store_true", help="keep the temp dir (with the logs)")
    args = vars(parser.parse_args(argv))

    if min(args["clients"]) < 1 or args["seconds"] < 1 or args["threads"] < 1:
        parser.error("--clients, --seconds and --threads must be positive")
    skip = args.pop("no_pgbouncer")
    args["pgbouncer"] = None if skip else find_pgbouncer(args["pgbouncer"])
    return Options(**args)


def interrupted(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    # Also when started from a shell that ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupted)
    results: list[Result] = []
    meter = ProxyMeter()
    stack = ExitStack()
    try:
        status = measure(stack, options, results, meter)
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.close()
    if results:
        report(results, meter.usage, options)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
