#!/usr/bin/env python3
"""Dropping a day of raw results: where the time goes.

Retention drops a whole day partition (`DETACH PARTITION … CONCURRENTLY`, then `DROP TABLE`,
with the daemon's own store code). Detaching is a catalog change; dropping frees the files, and
what that costs depends on the storage under PostgreSQL, not on the hub:
- a partition still in the page cache costs the kernel a pass over its cached pages;
- a file system mounted with online `discard` sends a TRIM for every freed extent when the file
  is unlinked (without it, `fstrim` does that later, in a batch: the usual default).

This script fills two days of a fleet of INTEGRATIONS in a fresh database (one check each per
5 minutes, as bench/history.py fills them), checkpoints, drops the first day while it is still
in the page cache, then empties the page cache (needs root) and drops the second, as retention
meets a week-old day. With --tablespace-dir the database lives in a tablespace at that directory
(for instance on a file system mounted without `discard`), so the two kinds of storage can be
compared on one machine.

Usage: bench/drop-day.py [--integrations 100000] [--tablespace-dir DIR]
Needs history-bench and stella-integrations in target/release (or BENCH_BIN_DIR). Prints JSON.
"""
import argparse, datetime as dt, json, os, subprocess, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import history  # noqa: E402
from history import app_url, bytes_per_row, fill_results, psql, step, timed_sql  # noqa: E402

DB, TABLESPACE = "stella_bench_drop_day", "stella_bench_drop_day"


def fresh_db(tablespace_dir):
    """The benchmark's database, in a tablespace at `tablespace_dir` when given."""
    psql(f"DROP DATABASE IF EXISTS {DB}")
    if tablespace_dir:
        psql(f"DROP TABLESPACE IF EXISTS {TABLESPACE}")
        os.makedirs(tablespace_dir, exist_ok=True)
        subprocess.run(["chown", "postgres:postgres", tablespace_dir], check=True)
        psql(f"CREATE TABLESPACE {TABLESPACE} LOCATION '{tablespace_dir}'")
    history.fresh_db(DB, tablespace=TABLESPACE if tablespace_dir else None)


def drop_page_cache():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("1\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--integrations", type=int, default=100_000)
    ap.add_argument("--tablespace-dir")
    args = ap.parse_args()
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    warm_day, cold_day = today - dt.timedelta(days=2), today - dt.timedelta(days=1)
    n = args.integrations
    fresh_db(args.tablespace_dir)
    result = {"integrations": n, "rows_per_day": n * 288,
              "tablespace_dir": args.tablespace_dir}
    for day in (warm_day, cold_day):
        fill_results(DB, "health_checks", day, 86_400, n)
        psql(f"VACUUM ANALYZE health_checks_p{day:%Y%m%d}", db=DB)
    result["storage_day"] = bytes_per_row(DB, f"health_checks_p{cold_day:%Y%m%d}", n * 288)
    timed_sql("CHECKPOINT", DB)  # a week-old day has long been written out
    gb = result["storage_day"]["total_bytes"] / 1e9
    url = app_url(DB)
    for name, day, cold in (("in_page_cache", warm_day, False), ("cold", cold_day, True)):
        if cold:
            drop_page_cache()
        took = step("drop-day", url, day.isoformat())
        took["drop_s_per_gb"] = round(took["drop_s"] / gb, 4)
        result[name] = took
        print(json.dumps(result), flush=True)
    psql(f"DROP DATABASE IF EXISTS {DB}")
    if args.tablespace_dir:
        psql(f"DROP TABLESPACE IF EXISTS {TABLESPACE}")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
