#!/usr/bin/env python3
"""Webhook delivery benchmark on PostgreSQL, driving bench/src/bin/event-delivery.rs.

(a) Steady delivery at increasing offered rates, per event and batched: each rate runs for
    --seconds on a fresh database; the ladder stops at the first rate that is not held (p99
    delay from event time to arrival of 1 s or more, or not every event delivered).
(b) Drain of a --backlog event backlog appended while delivery is stopped, per event and
    batched.

Usage: bench/delivery.py [--rates 500,1000,2000,...] [--seconds 20] [--backlog 100000]
                         [--integrations 200] [--batch 500] [--delay-ms 100] [--only steady|drain]
Needs `cargo build --release -p bench --bin event-delivery`. Results go to
bench/out/delivery.json and are printed as they come. Every run is bounded (the binary waits
at most 60 s for a steady run to be delivered and 600 s for a drain).
"""
import argparse, json, os, re, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
# EVENT_DELIVERY_BIN: another build of the same binary (a baseline from an earlier commit).
BIN = os.environ.get("EVENT_DELIVERY_BIN", os.path.join(TARGET, "release", "event-delivery"))
DB = "stella_bench_delivery"
PG = ["-h", "127.0.0.1", "-U", "postgres"]

STEADY = re.compile(r"steady: .*?(\d+) appended, (\d+) delivered; .*?p50 ([\d.]+) ms, "
                    r"p99 ([\d.]+) ms, max ([\d.]+) ms")
BACKLOG = re.compile(r"backlog: (\d+) of (\d+) events delivered in ([\d.]+) s: (\d+) events/s")


def fresh_db():
    subprocess.run(["dropdb", *PG, "--if-exists", "--force", DB], check=True)
    subprocess.run(["createdb", *PG, DB], check=True)


def run(args, rate, seconds, backlog, batch):
    fresh_db()
    cmd = [BIN, f"postgres://postgres@127.0.0.1:5432/{DB}", str(args.integrations), str(rate),
           str(seconds), str(backlog)]
    if batch:
        cmd += [str(args.batch), str(args.delay_ms)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         timeout=seconds + 60 + 600 + 120).stdout
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="500,1000,2000,3000,5000,7500,10000")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--integrations", type=int, default=200)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--delay-ms", type=int, default=100)
    ap.add_argument("--modes", default="event,batched")
    ap.add_argument("--only", choices=["steady", "drain"])
    args = ap.parse_args()
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} is missing: cargo build --release -p bench --bin event-delivery")
    results = {"steady": [], "drain": []}
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    for mode in args.modes.split(","):
        batch = mode == "batched"
        if args.only != "drain":
            for rate in [int(r) for r in args.rates.split(",")]:
                out = run(args, rate, args.seconds, 0, batch)
                m = STEADY.search(out)
                if not m:
                    raise SystemExit(f"unexpected output: {out}")
                appended, delivered, p50, p99, mx = m.groups()
                held = int(delivered) >= int(appended) and float(p99) < 1000.0
                row = {"mode": mode, "offered": rate, "appended": int(appended),
                       "delivered": int(delivered), "p50_ms": float(p50), "p99_ms": float(p99),
                       "max_ms": float(mx), "held": held}
                results["steady"].append(row)
                print(json.dumps(row), flush=True)
                if not held:
                    break
        if args.only != "steady" and args.backlog > 0:
            started = time.monotonic()
            out = run(args, 0, 0, args.backlog, batch)
            m = BACKLOG.search(out)
            if not m:
                raise SystemExit(f"unexpected output: {out}")
            drained, total, secs, rate = m.groups()
            row = {"mode": mode, "backlog": int(total), "drained": int(drained),
                   "seconds": float(secs), "events_per_s": int(rate),
                   "wall_s": round(time.monotonic() - started, 1)}
            results["drain"].append(row)
            print(json.dumps(row), flush=True)
    with open(os.path.join(ROOT, "bench", "out", "delivery.json"), "w") as f:
        json.dump(results, f, indent=1)
    subprocess.run(["dropdb", *PG, "--if-exists", "--force", DB], check=False)


if __name__ == "__main__":
    sys.exit(main())
