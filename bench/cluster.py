#!/usr/bin/env python3
"""Cluster benchmark on PostgreSQL: one fleet of in-memory integrations checked at 3,333
checks/s, first by one daemon, then by three replicas of a cluster; then one replica is killed
and later a replacement joins.

Measures, in one run: CPU per check of the single daemon and of each replica (same fleet, same
rate), time from SIGKILL to every orphaned integration checked again, checks made twice within
half an interval around the takeover (duplicates), and time from a replica's start to an even
share.

Usage: bench/cluster.py [--size 300000] [--replicas 3] [--warmup S] [--window S]
Results go to bench/out/cluster.json and are printed as one JSON line.
"""
import argparse, json, os, signal, subprocess, sys, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import health as h  # noqa: E402  (shares the database, daemon and /proc helpers)

SHARDS = 64
TTL = 15
RENEW = 5


def cluster_config(port, interval, name):
    return h.daemon_config(port, interval, 0) + f"""
[events.webhooks]
enabled = false
[cluster]
enabled = true
replica_id = "{name}"
advertise_url = "http://127.0.0.1:{port}"
shards = {SHARDS}
lease_ttl_seconds = {TTL}
renew_seconds = {RENEW}
"""


def start(tmp, name, port, interval, clustered):
    path = os.path.join(tmp, f"{name}.toml")
    with open(path, "w") as f:
        f.write(cluster_config(port, interval, name) if clustered
                else h.daemon_config(port, interval, 0))
    log = open(os.path.join(tmp, f"{name}.log"), "w")
    p = subprocess.Popen([os.path.join(h.REL, "stella-integrations"), "--config", path],
                         stdout=log, stderr=log, env={k: v for k, v in os.environ.items()
                                                      if k not in ("DATABASE_URL", "STELLA_CONFIG")})
    for _ in range(1200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1)
            return p
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{name} did not become ready")


def sql(query):
    out = subprocess.run(["psql", "-qAt", "-h", "127.0.0.1", "-U", "postgres", "-d", h.DB, "-c", query],
                         check=True, capture_output=True, text=True).stdout.strip()
    return out


def window_cpu(procs, ports, seconds):
    """Checks and CPU seconds of each process over `seconds`."""
    c0 = [h.scrape(p)["checks"] for p in ports]
    u0 = [h.proc_stat(p.pid)[0] for p in procs]
    time.sleep(seconds)
    c1 = [h.scrape(p)["checks"] for p in ports]
    u1 = [h.proc_stat(p.pid)[0] for p in procs]
    return [(b - a, y - x) for a, b, x, y in zip(c0, c1, u0, u1)]


def shares():
    rows = sql("SELECT holder, count(*) FROM cluster_leases WHERE name LIKE 'shard/%' "
               "AND expires_at > now() GROUP BY holder")
    return {line.split("|")[0]: int(line.split("|")[1]) for line in rows.splitlines() if line}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=300_000)
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--window", type=int, default=60)
    args = ap.parse_args()
    os.makedirs(h.OUT, exist_ok=True)
    tmp = os.path.join(h.OUT, "cluster-run")
    os.makedirs(tmp, exist_ok=True)
    size, n = args.size, args.replicas
    interval = max(1, round(size / h.TARGET_RATE))
    warmup = max(args.warmup, round(interval * (1 + h.JITTER)) + 10)
    result = {"size": size, "replicas": n, "interval_s": interval, "shards": SHARDS,
              "lease_ttl_s": TTL, "renew_s": RENEW, "window_s": args.window}

    h.fresh_db()
    subprocess.run([os.path.join(h.REL, "seed"), h.ADMIN_URL, str(size), "100", "inmemory", "{}"],
                   check=True, stdout=subprocess.DEVNULL)
    h.psql("ANALYZE", db=h.DB)

    # One daemon alone: the baseline.
    port = h.free_port()
    single = start(tmp, "single", port, interval, False)
    try:
        time.sleep(warmup)
        [(checks, cpu)] = window_cpu([single], [port], args.window)
        result["single_checks_per_s"] = round(checks / args.window, 1)
        result["single_cpu_us_per_check"] = round(cpu * 1e6 / max(checks, 1), 1)
    finally:
        h.stop(single)

    # The same fleet on a cluster.
    names = [f"r{i}" for i in range(1, n + 1)]
    ports = [h.free_port() for _ in names]
    procs = []
    try:
        for name, p in zip(names, ports):
            procs.append(start(tmp, name, p, interval, True))
        time.sleep(warmup)
        per = window_cpu(procs, ports, args.window)
        total = sum(c for c, _ in per)
        result["cluster_checks_per_s"] = round(total / args.window, 1)
        result["replica_cpu_us_per_check"] = [round(u * 1e6 / max(c, 1), 1) for c, u in per]
        result["replica_checks_per_s"] = [round(c / args.window, 1) for c, _ in per]
        result["shares"] = shares()

        # Kill one: time until every integration of its shards was checked again.
        victim = names[-1]
        orphan_shards = sql(f"SELECT string_agg(substr(name, 7), ',') FROM cluster_leases "
                            f"WHERE holder = '{victim}' AND name LIKE 'shard/%'")
        killed_at = sql("SELECT now()")
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait()
        t0 = time.time()
        # The shard is the id (a 128-bit number) mod SHARDS: for a power of two, its low bits.
        orphans = (f"SELECT id FROM integrations WHERE deleted_at IS NULL AND "
                   f"(('x' || right(replace(id::text, '-', ''), 8))::bit(32)::int & {SHARDS - 1}) "
                   f"IN ({orphan_shards})")
        orphan_count = int(sql(f"SELECT count(*) FROM ({orphans}) o"))
        taken_over = None
        while time.time() - t0 < 3 * interval + TTL + RENEW + 60:
            done = int(sql(f"SELECT count(DISTINCT c.integration_id) FROM health_checks c "
                           f"JOIN ({orphans}) o ON o.id = c.integration_id "
                           f"WHERE c.checked_at > '{killed_at}'"))
            if done >= orphan_count:
                taken_over = round(time.time() - t0, 1)
                break
            time.sleep(1)
        result["orphans"] = orphan_count
        result["sigkill_to_all_orphans_checked_s"] = taken_over
        result["duplicate_checks_around_takeover"] = int(sql(
            f"SELECT count(*) FROM (SELECT checked_at - lag(checked_at) OVER "
            f"(PARTITION BY integration_id ORDER BY checked_at) AS gap FROM health_checks "
            f"WHERE checked_at > timestamptz '{killed_at}' - interval '{interval} seconds') g "
            f"WHERE gap < interval '{interval / 2} seconds'"))

        # A replacement joins: time until every live replica has an even share.
        joined = time.time()
        procs[-1] = start(tmp, victim + "b", ports[-1], interval, True)
        even = None
        target = -(-SHARDS // n)
        while time.time() - joined < 120:
            s = shares()
            if len(s) == n and max(s.values()) <= target and sum(s.values()) == SHARDS:
                even = round(time.time() - joined, 1)
                break
            time.sleep(0.5)
        result["join_to_even_share_s"] = even
    finally:
        for p in procs:
            if p.poll() is None:
                h.stop(p)
    with open(os.path.join(h.OUT, "cluster.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
