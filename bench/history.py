#!/usr/bin/env python3
"""Health-history benchmark on PostgreSQL: storage, summaries, retention, history reads, upgrade.

Builds, in a database owned by the unprivileged role the daemon runs as (row-level security
forced), the partitions the daemon keeps, filled by SQL in time order the way the result
writer fills them:

- yesterday: a full day of a fleet of FLEET / FRACTION integrations (one check each per
  5 minutes: 28.8 M rows for 100,000), for bytes per row and dropping a day;
- the day before, at noon: one hour of the whole fleet (FLEET × 12 rows: 12 M for 1,000,000),
  for the summariser at full scale;
- the six days before yesterday for the first WEEK integrations (10,000), so that the
  integrations whose history is read have a week of results in seven partitions.

Then, with the daemon's own store code (bench/src/bin/history-bench.rs, release build):
summarise that hour; summarise yesterday hour by hour and roll it up into days; read history
pages of random integrations while the writer's statement runs at 3,333 rows/s; drop a day
while it runs and another after; and, in a second database, upgrade a 10 M-row table of the
old schema while the old daemon's writer keeps inserting. PostgreSQL's CPU is read from /proc
for every `postgres` process around each step (the machine's other work shows up in it too).

Usage: bench/history.py [--fleet 1000000] [--fraction 10] [--week-integrations 10000]
                        [--load-seconds 60] [--upgrade-rows 10000000] [--skip-upgrade]
Needs target/release/{stella-integrations,history-bench}. Prints one JSON document and writes
it to bench/out/history.json, with the query plans in bench/out/history-plans.txt.
"""
import argparse, datetime as dt, json, os, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The release binaries; BENCH_BIN_DIR points elsewhere (a debug build for a smoke run).
REL = os.environ.get("BENCH_BIN_DIR", os.path.join(ROOT, "target", "release"))
OUT = os.path.join(ROOT, "bench", "out")
DB, UPGRADE_DB = "stella_bench_history", "stella_bench_history_upgrade"
TICK = os.sysconf("SC_CLK_TCK")
RATE = 3333


def app_url(db):
    return f"postgres://stella_app@127.0.0.1:5432/{db}"


def psql(sql, db="postgres", capture=False):
    r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                        "-U", "postgres", "-d", db, "-c", sql],
                       check=True, capture_output=True, text=True)
    return r.stdout.strip() if capture else None


def fresh_db(db, migrate=True, tablespace=None):
    psql("DO $$ BEGIN CREATE ROLE stella_app LOGIN NOSUPERUSER NOBYPASSRLS; "
         "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$")
    psql(f"DROP DATABASE IF EXISTS {db}")
    placed = f" TABLESPACE {tablespace}" if tablespace else ""
    psql(f"CREATE DATABASE {db} OWNER stella_app{placed}")
    if migrate:
        subprocess.run([os.path.join(REL, "stella-integrations"), "migrate"], check=True,
                       env={**os.environ, "DATABASE_URL": app_url(db)},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def pg_cpu():
    """CPU seconds used so far by PostgreSQL: every live `postgres` process, plus what the
    postmaster has reaped from backends that ended (a step's connections close before it is
    read)."""
    out = subprocess.run(["pgrep", "-u", "postgres"], capture_output=True, text=True).stdout.split()
    pids, total = set(out), 0.0
    for pid in out:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
            if fields[1] not in pids:  # the postmaster: add its ended children
                total += (int(fields[13]) + int(fields[14])) / TICK
        except OSError:
            pass
    return total


def step(*args):
    """Runs one history-bench command; returns its JSON with PostgreSQL's CPU added."""
    cpu0 = pg_cpu()
    r = subprocess.run([os.path.join(REL, "history-bench"), *args], check=True,
                       capture_output=True, text=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["pg_cpu_s"] = round(pg_cpu() - cpu0, 2)
    return out


def timed_sql(sql, db):
    cpu0, t0 = pg_cpu(), time.time()
    psql(sql, db=db)
    return {"elapsed_s": round(time.time() - t0, 2), "pg_cpu_s": round(pg_cpu() - cpu0, 2)}


def uuid_sql(i):
    return f"('00000000-0000-4000-8000-' || lpad(to_hex({i}), 12, '0'))::uuid"


def fill_results(db, table, start, seconds, integrations):
    """One check per integration per 5 minutes from `start` for `seconds`, in time order: in
    second s, the integrations i ≡ s (mod 300). 2 % fail with a timeout."""
    columns = "integration_id, tenant_id, checked_at, status, reason, latency_ms, error_message"
    return timed_sql(f"""
        INSERT INTO {table} ({columns})
        SELECT id, tenant, at, status,
               CASE WHEN status = 'unhealthy' THEN 'timeout' END, latency,
               CASE WHEN status = 'unhealthy' THEN 'no answer within 10 s' END
        FROM (SELECT {uuid_sql('i')} AS id, 't' || (i % 100) AS tenant,
                     '{start.isoformat()}'::timestamptz + s * interval '1 second'
                       + (i % 997) * interval '1 millisecond' AS at,
                     CASE WHEN random() < 0.02 THEN 'unhealthy' ELSE 'healthy' END AS status,
                     20 + (random() * 200)::int8 AS latency
              FROM generate_series(0, {seconds - 1}) s,
                   generate_series(s % 300, {integrations - 1}, 300) i) g""", db)


def partition_sizes(db, name):
    rows = psql(f"""SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c
                    WHERE c.oid = '{name}'::regclass
                       OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = '{name}'::regclass)
                    ORDER BY 1""", db=db, capture=True)
    return {line.split("|")[0]: int(line.split("|")[1]) for line in rows.splitlines()}


def bytes_per_row(db, name, rows):
    sizes = partition_sizes(db, name)
    total = sum(sizes.values())
    return {"rows": rows, "total_bytes": total, "bytes_per_row": round(total / rows, 1),
            "by_relation": {k: round(v / rows, 1) for k, v in sizes.items()}}


def plans(db, day, hour):
    """The history page's and the summariser's plans, as the application role sees them."""
    history = f"""BEGIN READ ONLY; SET LOCAL stella.tenant_id = 't7';
        SET LOCAL enable_bitmapscan = off;
        EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM health_checks
        WHERE tenant_id = 't7' AND integration_id = {uuid_sql(7)}
        ORDER BY checked_at DESC LIMIT 51; ROLLBACK;"""
    def summary(hour):
        return f"""BEGIN; SET LOCAL stella.all_tenants = 'on'; SET LOCAL work_mem = '256MB';
        SET LOCAL enable_indexscan = off;
        EXPLAIN SELECT integration_id, min(tenant_id), count(*),
          percentile_disc(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms), max(latency_ms)
        FROM health_checks WHERE checked_at >= '{hour.isoformat()}'
          AND checked_at < '{(hour + dt.timedelta(hours=1)).isoformat()}' AND status <> 'rate_limited'
        GROUP BY integration_id; ROLLBACK;"""
    out = []
    for name, sql in (("history page", history),
                      ("summary of the full fleet's hour", summary(hour)),
                      ("summary of an hour of a full day's partition",
                       summary(day + dt.timedelta(hours=7)))):
        r = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-U", "stella_app", "-d", db, "-c", sql],
                           capture_output=True, text=True)
        out.append(f"== {name}\n{r.stdout}{r.stderr}")
    return "\n".join(out)


def upgrade(rows):
    """The old schema with `rows` results (and a summary per integration-hour), migrated while
    the old daemon's writer inserts."""
    fresh_db(UPGRADE_DB, migrate=False)
    step("migrate-to", app_url(UPGRADE_DB), "10")
    integrations = 100_000
    seconds = rows * 300 // integrations
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds + 600)
    fill = fill_results(UPGRADE_DB, "health_checks", start, seconds, integrations)
    summaries = timed_sql(f"""
        INSERT INTO health_summaries SELECT {uuid_sql('i')}, h, 't' || (i % 100), 12, 0, 100, 200, 210, 220
        FROM generate_series(date_trunc('hour', '{start.isoformat()}'::timestamptz),
                             now() - interval '2 hours', interval '1 hour') h,
             generate_series(0, {integrations - 1}) i""", UPGRADE_DB)
    psql("VACUUM ANALYZE", db=UPGRADE_DB)
    n = int(psql("SELECT count(*) FROM health_checks", db=UPGRADE_DB, capture=True))
    old = bytes_per_row(UPGRADE_DB, "health_checks", n)
    result = {"rows": n, "fill": fill, "summaries_fill": summaries, "old_schema": old}
    writer = {}

    def run_writer():
        writer.update(step("old-writer", app_url(UPGRADE_DB), str(integrations), str(RATE), "40"))

    t = threading.Thread(target=run_writer)
    t.start()
    time.sleep(10)
    t0 = time.time()
    subprocess.run([os.path.join(REL, "stella-integrations"), "migrate"], check=True,
                   env={**os.environ, "DATABASE_URL": app_url(UPGRADE_DB)},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result["migrate_s"] = round(time.time() - t0, 2)
    t.join()
    result["old_writer"] = writer
    result["after"] = int(psql("SELECT count(*) FROM health_checks", db=UPGRADE_DB, capture=True))
    psql(f"DROP DATABASE IF EXISTS {UPGRADE_DB}")
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fleet", type=int, default=1_000_000)
    ap.add_argument("--fraction", type=int, default=10)
    ap.add_argument("--week-integrations", type=int, default=10_000)
    ap.add_argument("--load-seconds", type=int, default=60)
    ap.add_argument("--upgrade-rows", type=int, default=10_000_000)
    ap.add_argument("--skip-upgrade", action="store_true")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    day, hour = today - dt.timedelta(days=1), today - dt.timedelta(days=2, hours=-12)
    part = lambda d: f"health_checks_p{d:%Y%m%d}"
    small = args.fleet // args.fraction
    result = {"fleet": args.fleet, "fraction": args.fraction, "day_fleet": small}

    fresh_db(DB)
    url = app_url(DB)
    week = args.week_integrations
    result["week_integrations"] = week
    # The week before yesterday for the first WEEK integrations (the history pages read them),
    # with the whole fleet's hour at noon the day before yesterday: all in time order.
    for d in range(7, 2, -1):
        fill_results(DB, "health_checks", today - dt.timedelta(days=d), 86_400, week)
    fill_results(DB, "health_checks", hour - dt.timedelta(hours=12), 12 * 3_600, week)
    result["fill_hour"] = fill_results(DB, "health_checks", hour, 3_600, args.fleet)
    fill_results(DB, "health_checks", hour + dt.timedelta(hours=1), 11 * 3_600, week)
    result["fill_day"] = fill_results(DB, "health_checks", day, 86_400, small)
    # Autovacuum's part in production (insert-driven vacuum and analyze; it is off here).
    result["vacuum"] = timed_sql("VACUUM ANALYZE health_checks", DB)
    result["storage_day"] = bytes_per_row(DB, part(day), small * 288)
    result["storage_hour_day"] = bytes_per_row(DB, part(hour), args.fleet * 12 + week * 276)
    print(json.dumps(result), flush=True)

    # Summaries: the full fleet's hour, then yesterday hour by hour (at the fraction).
    result["summarize_full_hour"] = step("summarize", url, hour.isoformat())
    hours = [step("summarize", url, (day + dt.timedelta(hours=h)).isoformat()) for h in range(24)]
    result["summarize_day_hours"] = {
        "hours": 24, "rows_per_hour": small * 12,
        "elapsed_s_mean": round(sum(h["elapsed_s"] for h in hours) / 24, 2),
        "pg_cpu_s_total": round(sum(h["pg_cpu_s"] for h in hours), 2),
    }
    result["storage_hourly_summaries"] = bytes_per_row(
        DB, f"health_summaries_p{day:%Y%m%d}", small * 24)
    with open(os.path.join(OUT, "history-plans.txt"), "w") as f:
        f.write(plans(DB, day, hour))
    # Roll-ups: everything older first, then yesterday alone.
    step("roll-up", url, (day - dt.timedelta(days=1)).isoformat())
    result["roll_up_day"] = step("roll-up", url, day.isoformat())
    print(json.dumps(result), flush=True)

    # History pages of integrations with a week of results while the writer runs; the oldest
    # day dropped meanwhile, as retention would.
    dropped = {}

    def drop_later():
        time.sleep(20 + args.load_seconds / 2)
        dropped.update(step("drop-day", url, (today - dt.timedelta(days=7)).isoformat()))

    t = threading.Thread(target=drop_later)
    t.start()
    result["load"] = step("load", url, str(small), str(min(1000, week)), str(RATE),
                          str(args.load_seconds), "20")
    t.join()
    result["drop_day_under_load"] = dropped
    result["drop_day_idle"] = step("drop-day", url, day.isoformat())

    # raw_history = "changes": a steady integration's day is 24 hourly samples, each carrying
    # the hour's 11 other checks folded (tomorrow's empty partition holds them here).
    tomorrow = today + dt.timedelta(days=1)
    timed_sql(f"""
        INSERT INTO health_checks (integration_id, tenant_id, checked_at, status, latency_ms, folded)
        SELECT {uuid_sql('i')}, 't' || (i % 100),
               '{tomorrow.isoformat()}'::timestamptz + h * interval '1 hour'
                 + interval '55 minutes' + (i % 300) * interval '1 second',
               'healthy', 20 + (random() * 200)::int8,
               json_build_object('failures', 0, 'latencies',
                 (SELECT json_agg(20 + (random() * 200)::int) FROM generate_series(1, 11)
                  WHERE i >= 0))
        FROM generate_series(0, 23) h, generate_series(0, {small - 1}) i""", DB)
    psql(f"VACUUM ANALYZE {part(tomorrow)}", db=DB)
    changes = bytes_per_row(DB, part(tomorrow), small * 24)
    changes["bytes_per_integration_day"] = round(changes["total_bytes"] / small)
    changes["all_mode_bytes_per_integration_day"] = round(
        result["storage_day"]["total_bytes"] / small)
    result["storage_changes_mode"] = changes

    per_fleet_hour = {
        "summaries": {"pg_cpu_s": result["summarize_full_hour"]["pg_cpu_s"],
                      "daemon_cpu_s": result["summarize_full_hour"]["cpu_s"]},
        "roll_up": {"pg_cpu_s": round(result["roll_up_day"]["pg_cpu_s"] * args.fraction / 24, 3),
                    "daemon_cpu_s": round(result["roll_up_day"]["cpu_s"] * args.fraction / 24, 3)},
        "drop_raw_day": {"pg_cpu_s": round(result["drop_day_idle"]["pg_cpu_s"] / 24, 3),
                         "daemon_cpu_s": round(result["drop_day_idle"]["cpu_s"] / 24, 3)},
    }
    result["cpu_per_fleet_hour"] = per_fleet_hour
    psql(f"DROP DATABASE IF EXISTS {DB}")
    print(json.dumps(result), flush=True)

    if not args.skip_upgrade:
        result["upgrade"] = upgrade(args.upgrade_rows)
    with open(os.path.join(OUT, "history.json"), "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
