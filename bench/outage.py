#!/usr/bin/env python3
"""Event-storm benchmark on PostgreSQL: a fleet behind one provider that goes down and comes back.

Seeds SIZE OCI-registry integrations over TENANTS tenants, all pointing at one provider mock on
loopback (bench/src/bin/provider-mock.rs), starts the release daemon with a short check interval,
waits until the whole fleet is healthy, then gives each tenant a webhook subscription (one event
per POST, incident members suppressed: the default) to one loopback receiver. Then:

1. the provider goes down (`PUT /control/outage`: its ping answers 503, `provider_degraded`)
   for --outage seconds;
2. it comes back (`DELETE /control/outage`) and the run waits until every tenant's
   `incident.resolved` has arrived (at most --settle seconds).

Measured: events received at the receiver, by type (incident opened/updated/resolved vs
member status events), against the events the outbox recorded in the same span; time from the
outage start to each tenant's `incident.opened` at the receiver and from the recovery to its
`incident.resolved`; the daemon's CPU and PostgreSQL's (every process of the `postgres` user,
from /proc) averaged over the storm and at the busiest 5 s; the daemon's RSS.

Usage: bench/outage.py [--size 100000] [--tenants 10] [--interval 30] [--outage 120]
                       [--settle 300] [--members suppress|deliver]
Needs `cargo build --release -p daemon -p bench` (CARGO_TARGET_DIR is honoured). Results go to
bench/out/outage.json (summary) and bench/out/outage-trace.json (5 s samples). Every wait is
bounded; the whole run takes about size/3,333 s × 3 + outage + settle at most.
"""
import argparse, datetime, hashlib, http.server, json, os, re, signal, socket, subprocess, threading, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
# OUTAGE_PROFILE=debug tries the script on a debug build (its figures are not the benchmark's).
REL = os.path.join(TARGET, os.environ.get("OUTAGE_PROFILE", "release"))
OUT = os.path.join(ROOT, "bench", "out")
DB = "stella_bench_outage"
APP_URL = f"postgres://stella_app@127.0.0.1:5432/{DB}"
ADMIN_URL = f"postgres://postgres@127.0.0.1:5432/{DB}"
TICK = os.sysconf("SC_CLK_TCK")
PREFIX = "dev.stellaops.integration."
INCIDENT_TYPES = ("incident.opened", "incident.updated", "incident.resolved")
SECRET = "whsec_outage-bench-receiver"


def psql(sql, db="postgres"):
    return subprocess.run(["psql", "-qAt", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-c", sql],
                          check=True, capture_output=True, text=True).stdout


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def fresh_db():
    psql("DO $$ BEGIN CREATE ROLE stella_app LOGIN NOSUPERUSER NOBYPASSRLS; "
         "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$")
    psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    psql(f"CREATE DATABASE {DB} OWNER stella_app")
    subprocess.run([os.path.join(REL, "stella-integrations"), "migrate"], check=True,
                   env={**os.environ, "DATABASE_URL": APP_URL}, stdout=subprocess.DEVNULL)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024


def pg_backends():
    """CPU seconds used so far by each live PostgreSQL backend of the benchmark's database
    (other databases on the server are not counted), by pid."""
    pids = subprocess.run(["pgrep", "-u", "postgres"], capture_output=True, text=True).stdout.split()
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if DB.encode() not in f.read():
                    continue
            out[int(pid)] = cpu_seconds(int(pid))
        except OSError:
            pass
    return out


def tenant(i):
    return f"t{i:03}"


def key_of(t):
    return f"stk_outage_bench_{t}"


# === the webhook receiver ===

def event_time(text):
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


class Receiver:
    """Records every event posted to /hook/<tenant>: arrival time, type, tenant, incident data."""

    def __init__(self):
        self.lock = threading.Lock()
        self.events = []  # (arrival, tenant, short type, data, event time)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                t = self.path.rsplit("/", 1)[-1]
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = []
                batch = doc if isinstance(doc, list) else [doc]
                with receiver.lock:
                    for e in batch:
                        kind = str(e.get("type", "")).removeprefix(PREFIX)
                        receiver.events.append((arrived, t, kind, e.get("data") or {},
                                                event_time(e.get("time"))))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return list(self.events)


# === the daemon ===

def daemon_config(port, args, secrets):
    keys = "".join(f"""
[[auth.api_keys]]
id = "bench-{tenant(i)}"
tenant = "{tenant(i)}"
scopes = ["integrations:read", "integrations:write"]
sha256 = "{hashlib.sha256(key_of(tenant(i)).encode()).hexdigest()}"
""" for i in range(args.tenants))
    return f"""
[http]
listen = "127.0.0.1:{port}"
[database]
url = "{APP_URL}"
max_connections = 8
[log]
format = "json"
filter = "warn,daemon=info,actors=info"
[auth.rate_limit]
per_second = 0
{keys}
[health]
interval_seconds = {args.interval}
timeout_seconds = 10
backoff_min_seconds = {args.interval}
backoff_max_seconds = {args.interval}
writer_batch = 2000
writer_flush_ms = 200
[connectors.outbound]
allow_private_networks = ["127.0.0.1/32"]
per_host_requests_per_second = 1000000
per_host_burst = 1000000
[connectors.secrets]
secrets_dir = "{secrets}"
"""


def start_daemon(work, port, args):
    secrets = os.path.join(work, "secrets")
    for i in range(args.tenants):
        folder = os.path.join(secrets, "tenants", tenant(i))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "hook"), "w") as f:
            f.write(SECRET)
    path = os.path.join(work, "outage.toml")
    with open(path, "w") as f:
        f.write(daemon_config(port, args, secrets))
    log = open(os.path.join(work, "daemon.log"), "w")
    p = subprocess.Popen([os.path.join(REL, "stella-integrations"), "--config", path],
                         stdout=log, stderr=log,
                         env={k: v for k, v in os.environ.items()
                              if k not in ("DATABASE_URL", "STELLA_CONFIG")})
    for _ in range(1200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
            return p
        except Exception:
            if p.poll() is not None:
                raise SystemExit(f"the daemon exited ({p.returncode}); see {work}/daemon.log")
            time.sleep(0.05)
    raise SystemExit("the daemon did not become ready")


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()


def request(method, url, key=None, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method=method)
    if key:
        r.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        r.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(r, timeout=30) as resp:
        return resp.status, resp.read()


def statuses():
    rows = psql("SELECT status, count(*) FROM integrations WHERE deleted_at IS NULL GROUP BY status",
                db=DB)
    return {s: int(n) for s, n in (line.split("|") for line in rows.split())}


def outbox_counts(after_id):
    rows = psql(f"SELECT event_type, incident_id IS NOT NULL, count(*) FROM events "
                f"WHERE seq > {after_id} GROUP BY 1, 2", db=DB)
    out = {}
    for line in rows.split():
        kind, member, n = line.split("|")
        kind = kind.removeprefix(PREFIX) + (" (incident member)" if member == "t" else "")
        out[kind] = out.get(kind, 0) + int(n)
    return out


def last_event_id():
    return int(psql("SELECT coalesce(max(seq), 0) FROM events", db=DB).strip())


class Trace:
    """A sample every `every` seconds: the daemon's and PostgreSQL's CPU, RSS, events received."""

    def __init__(self, pid, receiver, every=5):
        self.pid, self.receiver, self.every, self.samples = pid, receiver, every, []
        self.t0 = time.time()
        self.marks = {}
        self.pg_total, self.pg_last = 0.0, {}

    def sample(self):
        backends = pg_backends()
        # PostgreSQL's CPU, summed from per-backend differences so that a backend that
        # exits takes only its last interval with it.
        self.pg_total += sum(cpu - self.pg_last.get(pid, 0.0) for pid, cpu in backends.items())
        self.pg_last = backends
        self.samples.append({"t": round(time.time() - self.t0, 1),
                             "cpu_s": cpu_seconds(self.pid), "pg_cpu_s": round(self.pg_total, 2),
                             "rss_mb": round(rss_bytes(self.pid) / 1e6, 1),
                             "received": len(self.receiver.snapshot())})

    def mark(self, name):
        self.marks[name] = round(time.time() - self.t0, 1)
        self.sample()

    def sleep_until(self, done, seconds):
        """Samples until `done()` or `seconds` pass; whether `done()` came true."""
        end = time.time() + seconds
        while time.time() < end:
            if done():
                return True
            if time.time() - self.t0 - self.samples[-1]["t"] >= self.every:
                self.sample()
            time.sleep(1)
        return done()

    def cores(self, start, end):
        """Mean cores used by the daemon and by PostgreSQL between two trace times."""
        a = min(self.samples, key=lambda s: abs(s["t"] - start))
        b = min(self.samples, key=lambda s: abs(s["t"] - end))
        dt = b["t"] - a["t"]
        if dt <= 0:
            return None, None
        return round((b["cpu_s"] - a["cpu_s"]) / dt, 2), round((b["pg_cpu_s"] - a["pg_cpu_s"]) / dt, 2)

    def peak(self, start, end):
        best = (0.0, 0.0)
        for a, b in zip(self.samples, self.samples[1:]):
            if a["t"] < start or b["t"] > end or b["t"] - a["t"] < 1:
                continue
            dt = b["t"] - a["t"]
            best = (max(best[0], (b["cpu_s"] - a["cpu_s"]) / dt),
                    max(best[1], (b["pg_cpu_s"] - a["pg_cpu_s"]) / dt))
        return round(best[0], 2), round(best[1], 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--tenants", type=int, default=10)
    ap.add_argument("--interval", type=int, default=30)
    ap.add_argument("--outage", type=int, default=120)
    ap.add_argument("--settle", type=int, default=300)
    ap.add_argument("--members", choices=["suppress", "deliver"], default="suppress")
    args = ap.parse_args()
    for binary in ("stella-integrations", "seed", "provider-mock"):
        if not os.path.exists(os.path.join(REL, binary)):
            raise SystemExit(f"{REL}/{binary} is missing: cargo build --release -p daemon -p bench")
    os.makedirs(OUT, exist_ok=True)
    work = os.path.join(OUT, "outage-work")
    os.makedirs(work, exist_ok=True)
    mock_port = free_port()
    mock_url = f"http://127.0.0.1:{mock_port}"
    mock = subprocess.Popen([os.path.join(REL, "provider-mock"), f"127.0.0.1:{mock_port}"])
    receiver = Receiver()
    daemon = None
    try:
        fresh_db()
        t = time.time()
        subprocess.run([os.path.join(REL, "seed"), ADMIN_URL, str(args.size), str(args.tenants),
                        "oci_registry", json.dumps({"baseUrl": mock_url})],
                       check=True, stdout=subprocess.DEVNULL)
        seed_s = time.time() - t
        psql("ANALYZE", db=DB)
        port = free_port()
        api = f"http://127.0.0.1:{port}/api/v1"
        daemon = start_daemon(work, port, args)
        trace = Trace(daemon.pid, receiver)
        trace.mark("started")
        # Every monitor's first check falls within one interval of its start.
        healthy = trace.sleep_until(lambda: statuses().get("healthy", 0) >= args.size,
                                    args.interval * 3 + 60)
        trace.mark("healthy")
        if not healthy:
            raise SystemExit(f"the fleet did not become healthy: {statuses()}")
        for i in range(args.tenants):
            request("POST", f"{api}/webhook-subscriptions", key_of(tenant(i)), {
                "name": "outage-receiver",
                "targetUrl": f"http://127.0.0.1:{receiver.port}/hook/{tenant(i)}",
                "secretAuthRef": f"authref://file/tenants/{tenant(i)}/hook",
                "incidentMembers": args.members,
            })
        # The fleet's first unknown → healthy events go to the new subscriptions; let them
        # drain (the receiver quiet for 5 s), then a steady interval gives the baseline CPU.
        def quiet():
            events = receiver.snapshot()
            return not events or time.time() - events[-1][0] > 5
        drained = trace.sleep_until(quiet, 600)
        trace.mark("drained")
        trace.sleep_until(lambda: False, max(args.interval, 20))
        baseline = len(receiver.snapshot())
        before_id = last_event_id()
        request("PUT", f"{mock_url}/control/outage")
        outage_at = time.time()
        trace.mark("outage")
        trace.sleep_until(lambda: False, args.outage)
        request("DELETE", f"{mock_url}/control/outage")
        recovered_at = time.time()
        trace.mark("recovered")

        def resolved_tenants():
            return {t for _, t, kind, _, _ in receiver.snapshot() if kind == "incident.resolved"}

        all_resolved = trace.sleep_until(
            lambda: len(resolved_tenants()) >= args.tenants and statuses().get("healthy", 0) >= args.size,
            args.settle)
        # Whatever is still on its way (a coalesced update, a late member event).
        trace.sleep_until(lambda: False, 15)
        trace.mark("end")
        # The storm's events: those decided from the outage on (a late baseline delivery is not).
        events = [e for e in receiver.snapshot() if e[4] >= outage_at]
        by_type = {}
        for _, _, kind, _, _ in events:
            by_type[kind] = by_type.get(kind, 0) + 1
        opened = {}
        resolved = {}
        members = {}
        for arrived, t, kind, data, _ in events:
            if kind == "incident.opened" and t not in opened:
                opened[t] = arrived - outage_at
            if kind == "incident.resolved" and t not in resolved:
                resolved[t] = arrived - recovered_at
                members[t] = data.get("memberCount")
        daemon_storm, pg_storm = trace.cores(trace.marks["outage"], trace.marks["end"])
        daemon_base, pg_base = trace.cores(trace.marks["drained"], trace.marks["outage"])
        peak_daemon, peak_pg = trace.peak(trace.marks["outage"], trace.marks["end"])

        def spread(d):
            return {"first_s": round(min(d.values()), 1), "last_s": round(max(d.values()), 1)} if d else None

        result = {
            "size": args.size, "tenants": args.tenants, "interval_s": args.interval,
            "outage_s": args.outage, "incident_members": args.members, "seed_s": round(seed_s, 1),
            "fleet_healthy_after_start_s": trace.marks["healthy"] - trace.marks["started"],
            "all_resolved": all_resolved,
            "baseline_drained": drained,
            "baseline_drain_s": round(trace.marks["drained"] - trace.marks["healthy"], 1),
            "received_before_outage": baseline,
            "received": len(events),
            "received_by_type": dict(sorted(by_type.items())),
            "member_events_received": sum(n for k, n in by_type.items() if k not in INCIDENT_TYPES),
            "outbox_recorded_by_type": dict(sorted(outbox_counts(before_id).items())),
            "outage_to_opened": spread(opened),
            "recovery_to_resolved": spread(resolved),
            "incidents_opened": len(opened), "incidents_resolved": len(resolved),
            "resolved_member_counts": sorted(set(members.values()), key=str),
            "daemon_cores_baseline": daemon_base, "pg_cores_baseline": pg_base,
            "daemon_cores_storm": daemon_storm, "pg_cores_storm": pg_storm,
            "daemon_cores_peak_5s": peak_daemon, "pg_cores_peak_5s": peak_pg,
            "daemon_rss_mb_end": trace.samples[-1]["rss_mb"],
            "storm_span_s": round(trace.marks["end"] - trace.marks["outage"], 1),
        }
        print(json.dumps(result), flush=True)
        with open(os.path.join(OUT, "outage.json"), "w") as f:
            json.dump(result, f, indent=1)
        with open(os.path.join(OUT, "outage-trace.json"), "w") as f:
            json.dump({"marks": trace.marks, "samples": trace.samples}, f, indent=1)
    finally:
        if daemon:
            stop(daemon)
        mock.terminate()
        receiver.server.shutdown()
        psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


if __name__ == "__main__":
    main()
