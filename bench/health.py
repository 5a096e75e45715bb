#!/usr/bin/env python3
"""Health-engine benchmark on PostgreSQL.

For each fleet size and connector (in-memory, or the OCI connector against a loopback provider
mock: `http` needs no authentication, `oci-token` is a token-auth registry with the daemon's
token cache, `oci-token-nocache` the same registry with the cache turned off by
`token_cache_max_entries = 0`, as before the cache), seeds the catalog, starts the release daemon with an interval that makes 3,333
checks/s, and measures: time from start to all monitors scheduled, sustained checks/s, p99
schedule lateness, RSS per monitored integration beyond an empty daemon, and CPU microseconds
per check. For the HTTP case it runs the floor (bench/src/bin/health-floor.rs: tokio + reqwest
+ bulk inserts, no actors) in the same run and reports the ratio.

Usage: bench/health.py [--sizes 10000,100000,1000000] [--modes inmemory,http]
                       [--warmup S] [--window S] [--token-lifetime S]
The token-auth modes also report the requests per check the mock received (`/_stats`) and
the mock's own CPU per check.
Binaries are read from $CARGO_TARGET_DIR/release (target/release when unset). Results go to
bench/out/health.json (or --out) and are printed, one JSON line per case; each case also
writes bench/out/health-trace-SIZE-MODE.json, sampled every 5 s from the daemon's start.
"""
import argparse, json, os, re, signal, socket, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release")
OUT = os.path.join(ROOT, "bench", "out")
DB = "stella_bench_health"
APP_URL = f"postgres://stella_app@127.0.0.1:5432/{DB}"
ADMIN_URL = f"postgres://postgres@127.0.0.1:5432/{DB}"
TARGET_RATE = 3333
JITTER = 0.1  # the daemon's default [health] jitter
TICK = os.sysconf("SC_CLK_TCK")


def psql(*sql, db="postgres"):
    for s in sql:
        subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-c", s],
                       check=True, stdout=subprocess.DEVNULL)


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def fresh_db():
    psql("DO $$ BEGIN CREATE ROLE stella_app LOGIN NOSUPERUSER NOBYPASSRLS; "
         "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
         f"DROP DATABASE IF EXISTS {DB}", f"CREATE DATABASE {DB} OWNER stella_app")
    subprocess.run([os.path.join(REL, "stella-integrations"), "migrate"], check=True,
                   env={**os.environ, "DATABASE_URL": APP_URL})


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    with open(f"/proc/{pid}/status") as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024
    return cpu, rss


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    def total(name, label_filter=""):
        s = 0.0
        for line in text.splitlines():
            if line.startswith(name) and label_filter in line:
                s += float(line.rsplit(" ", 1)[1])
        return s
    buckets = {}
    for line in text.splitlines():
        if line.startswith("integration_schedule_lag_seconds_bucket"):
            le = re.search(r'le="([^"]+)"', line).group(1)
            # Reported in milliseconds, as before the histogram moved to seconds.
            bound = float("inf") if le == "+Inf" else round(float(le) * 1000, 3)
            buckets[bound] = float(line.rsplit(" ", 1)[1])
    heap = {}
    for line in text.splitlines():
        if line.startswith("process_heap_bytes{"):
            heap[re.search(r'state="([^"]+)"', line).group(1)] = int(float(line.rsplit(" ", 1)[1]))
    return {
        "checks": total("integration_health_checks_total{"),
        "monitors": total("integration_monitors_running{") or total("integration_monitors_running "),
        "writer_queued": total("integration_health_writer_queued"),
        "heap": heap,
        "lag": buckets,
    }


def cpu_of(user):
    """CPU seconds used so far by every process of `user` (PostgreSQL's backends)."""
    out = subprocess.run(["pgrep", "-u", user], capture_output=True, text=True).stdout.split()
    total = 0.0
    for pid in out:
        try:
            total += proc_stat(int(pid))[0]
        except (OSError, AttributeError):
            pass
    return total


class Trace:
    """One sample every `every` seconds from daemon start: checks done, the writer's queue,
    the daemon's CPU, RSS and heap, and PostgreSQL's CPU. Shows where a run's time goes."""

    def __init__(self, pid, port, every=5):
        self.pid, self.port, self.every, self.samples = pid, port, every, []
        self.t0 = time.time()

    def sample(self):
        m = scrape(self.port)
        cpu, rss = proc_stat(self.pid)
        self.samples.append({
            "t": round(time.time() - self.t0, 1), "checks": m["checks"],
            "monitors": m["monitors"], "writer_queued": m["writer_queued"],
            "cpu_s": round(cpu, 2), "pg_cpu_s": round(cpu_of("postgres"), 2),
            "rss_mb": round(rss / 1e6, 1),
            "heap_mb": {k: round(v / 1e6, 1) for k, v in m["heap"].items()},
        })
        return m

    def sleep(self, seconds):
        end = time.time() + seconds
        while end - time.time() > 1:
            time.sleep(min(self.every, end - time.time()))
            self.sample()
        time.sleep(max(0, end - time.time()))

    def rates(self):
        """Per-interval rates, for reading the run by eye."""
        rows = []
        for a, b in zip(self.samples, self.samples[1:]):
            dt = b["t"] - a["t"]
            if dt < 1:
                continue
            rows.append({"t": b["t"], "checks_per_s": round((b["checks"] - a["checks"]) / dt),
                         "daemon_cores": round((b["cpu_s"] - a["cpu_s"]) / dt, 2),
                         "pg_cores": round((b["pg_cpu_s"] - a["pg_cpu_s"]) / dt, 2),
                         "writer_queued": b["writer_queued"], "rss_mb": b["rss_mb"],
                         "heap_mb": b["heap_mb"]})
        return rows


def p99(b0, b1):
    delta = {le: b1.get(le, 0) - b0.get(le, 0) for le in b1}
    count = delta.get(float("inf"), 0)
    if count <= 0:
        return None
    for le in sorted(delta):
        if delta[le] >= 0.99 * count:
            return le
    return None


def daemon_config(port, interval, mock_port, token_cache=True):
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
[[auth.api_keys]]
id = "bench"
tenant = "t000"
scopes = ["integrations:read"]
sha256 = "{'0' * 64}"
[health]
interval_seconds = {interval}
timeout_seconds = 10
writer_batch = 2000
writer_flush_ms = 200
[connectors.outbound]
allow_private_networks = ["127.0.0.1/32"]
per_host_requests_per_second = 1000000
per_host_burst = 1000000
""" + ("" if token_cache else "token_cache_max_entries = 0\n")


def start_daemon(tmp, port, interval, mock_port, token_cache=True):
    path = os.path.join(tmp, "bench.toml")
    with open(path, "w") as f:
        f.write(daemon_config(port, interval, mock_port, token_cache))
    log = open(os.path.join(tmp, "daemon.log"), "w")
    p = subprocess.Popen([os.path.join(REL, "stella-integrations"), "--config", path],
                         stdout=log, stderr=log, env={k: v for k, v in os.environ.items()
                                                      if k not in ("DATABASE_URL", "STELLA_CONFIG")})
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
            return p
        except Exception:
            time.sleep(0.05)
    raise SystemExit("daemon did not become ready")


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()


def empty_rss(tmp):
    fresh_db()
    port = free_port()
    p = start_daemon(tmp, port, 300, 0)
    time.sleep(3)
    _, rss = proc_stat(p.pid)
    heap = scrape(port)["heap"]
    stop(p)
    return rss, heap


def mock_stats(mock):
    with urllib.request.urlopen(f"http://127.0.0.1:{mock['port']}/_stats", timeout=30) as r:
        stats = json.loads(r.read())
    stats["cpu_s"] = proc_stat(mock["proc"].pid)[0]
    return stats


def run_case(tmp, size, mode, warmup, window, base_rss, mock_port, token_mock=None):
    interval = max(1, round(size / TARGET_RATE))
    fresh_db()
    token_mode = mode in ("oci-token", "oci-token-nocache")
    if mode == "inmemory":
        kind, config = "inmemory", "{}"
    elif token_mode:
        kind = "oci_registry"
        config = json.dumps({"baseUrl": f"http://127.0.0.1:{token_mock['port']}"})
    else:
        kind, config = "oci_registry", json.dumps({"baseUrl": f"http://127.0.0.1:{mock_port}"})
    t = time.time()
    subprocess.run([os.path.join(REL, "seed"), ADMIN_URL, str(size), "100", kind, config], check=True,
                   stdout=subprocess.DEVNULL)
    seeded = time.time() - t
    psql("ANALYZE", db=DB)
    port = free_port()
    started = time.time()
    p = start_daemon(tmp, port, interval, mock_port, token_cache=(mode != "oci-token-nocache"))
    try:
        trace = Trace(p.pid, port)
        scheduled = None
        while time.time() - started < 300:
            if scrape(port)["monitors"] >= size:
                scheduled = time.time() - started
                break
            time.sleep(0.2)
        trace.sample()
        # Every monitor's first check falls within one interval of its start, and moves the
        # integration from unknown to healthy (a status change, an event). The second check follows
        # one interval later spread by the jitter (±10 %), so the rate ramps up until
        # interval × 1.1 after the last monitor started: the window opens after that, so it
        # measures the steady state.
        warmup = max(warmup, round(interval * (1 + JITTER)) + 5)
        trace.sleep(warmup)
        m0 = mock_stats(token_mock) if token_mode else None
        s0, (cpu0, _) = trace.sample(), proc_stat(p.pid)
        trace.sleep(window)
        s1, (cpu1, rss) = trace.sample(), proc_stat(p.pid)
        m1 = mock_stats(token_mock) if token_mode else None
        checks = s1["checks"] - s0["checks"]
        result = {
            "size": size, "mode": mode, "interval_s": interval, "warmup_s": warmup,
            "seed_s": round(seeded, 1),
            "all_scheduled_s": round(scheduled, 2) if scheduled else None,
            "checks_per_s": round(checks / window, 1),
            "p99_lateness_ms_le": p99(s0["lag"], s1["lag"]),
            "rss_bytes": rss, "rss_per_integration_bytes": round((rss - base_rss) / size),
            "cpu_us_per_check": round((cpu1 - cpu0) * 1e6 / max(checks, 1), 1),
            "heap_bytes": s1["heap"],
        }
        if token_mode:
            d = {k: m1[k] - m0[k] for k in m1}
            requests = d["pings_ok"] + d["pings_challenged"] + d["tokens"]
            result["token_lifetime_s"] = token_mock["lifetime"]
            result["mock_requests"] = {k: v for k, v in d.items() if k != "cpu_s"}
            result["requests_per_check"] = round(requests / max(checks, 1), 3)
            result["mock_cpu_us_per_check"] = round(d["cpu_s"] * 1e6 / max(checks, 1), 1)
        with open(os.path.join(OUT, f"health-trace-{size}-{mode}.json"), "w") as f:
            json.dump(trace.rates(), f, indent=1)
    finally:
        stop(p)
    if mode == "http":
        fresh_db()
        floor = subprocess.run([os.path.join(REL, "health-floor"), ADMIN_URL, f"http://127.0.0.1:{mock_port}",
                                str(size), str(interval), str(warmup + 5), str(window)],
                               check=True, capture_output=True, text=True)
        f = json.loads(floor.stdout.strip().splitlines()[-1])
        result["floor_checks_per_s"] = f["checks_per_second"]
        result["floor_cpu_us_per_check"] = f["cpu_us_per_check"]
        result["cpu_ratio_to_floor"] = round(result["cpu_us_per_check"] / max(f["cpu_us_per_check"], 0.001), 2)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--modes", default="inmemory,http")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--window", type=int, default=60)
    ap.add_argument("--token-lifetime", type=int, default=300,
                    help="expires_in of the token-auth mock's tokens (Docker Hub's is 300)")
    ap.add_argument("--out", default="health.json", help="file name under bench/out")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    tmp = os.path.join(OUT, "health-work")
    os.makedirs(tmp, exist_ok=True)
    mock_port = free_port()
    mock = subprocess.Popen([os.path.join(REL, "provider-mock"), f"127.0.0.1:{mock_port}"])
    token_mock = None
    if any(m.startswith("oci-token") for m in args.modes.split(",")):
        port = free_port()
        token_mock = {"port": port, "lifetime": args.token_lifetime, "proc": subprocess.Popen(
            [os.path.join(REL, "provider-mock"), f"127.0.0.1:{port}",
             "--token-auth", str(args.token_lifetime)])}
    results = []
    try:
        base, base_heap = empty_rss(tmp)
        print(f"empty daemon RSS: {base / 1e6:.1f} MB, heap: {base_heap}", flush=True)
        for size in [int(s) for s in args.sizes.split(",")]:
            for mode in args.modes.split(","):
                r = run_case(tmp, size, mode, args.warmup, args.window, base, mock_port, token_mock)
                print(json.dumps(r), flush=True)
                results.append(r)
    finally:
        mock.terminate()
        if token_mock:
            token_mock["proc"].terminate()
        psql(f"DROP DATABASE IF EXISTS {DB}")
    with open(os.path.join(OUT, args.out), "w") as f:
        json.dump({"empty_rss_bytes": base, "empty_heap_bytes": base_heap, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
