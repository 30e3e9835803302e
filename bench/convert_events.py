#!/usr/bin/env python3
"""Turns an NDJSON events file (rapportctl generate) into the inputs of the
baselines, so that PostgreSQL and Redis get exactly the same events as rapportd
and compute the same per-customer aggregates:

  count      events per customer
  revenue    sum of purchase amounts minus refund amounts
  last_seen  latest event time (epoch ms; ts may be RFC 3339 or epoch ms)

  convert_events.py EVENTS.ndjson OUTDIR [--pg-batch 50000] [--redis-parts 4]

writes OUTDIR/pg/batch_NNNNNN.csv (customer_id,ts_ms,amount; one file per
PostgreSQL transaction) and OUTDIR/redis/part_K.resp (RESP commands for
`redis-cli --pipe`, events dealt round-robin like rapport-loadgen deals them to
connections): per event HINCRBY c:<id> n 1, HINCRBYFLOAT c:<id> r <amount>
(purchases and refunds only), ZADD last_seen GT <ts_ms> <id> (GT keeps the
maximum, so late events do not move last_seen back).
The conversion (JSON parsing) is not timed: the baselines get their input
pre-parsed, which favours them. Also writes OUTDIR/expected.json (events,
customers, revenue) for the result checks.
"""
import argparse
import json
import os
import sys
from datetime import datetime


def ts_ms(value):
    if isinstance(value, (int, float)):
        return int(value)
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("events")
    ap.add_argument("outdir")
    ap.add_argument("--pg-batch", type=int, default=50000)
    ap.add_argument("--redis-parts", type=int, default=4)
    a = ap.parse_args()
    os.makedirs(os.path.join(a.outdir, "pg"), exist_ok=True)
    os.makedirs(os.path.join(a.outdir, "redis"), exist_ok=True)
    parts = [open(os.path.join(a.outdir, "redis", "part_%d.resp" % k), "wb") for k in range(a.redis_parts)]
    pg = None
    n = 0
    customers = {}
    revenue_total = 0.0
    with open(a.events, "rb") as f:
        for raw in f:
            if not raw.strip():
                continue
            e = json.loads(raw)
            cid = e["customer_id"]
            t = ts_ms(e["ts"])
            amount = 0.0
            if e["type"] == "purchase":
                amount = float(e.get("amount", 0))
            elif e["type"] == "refund":
                amount = -float(e.get("amount", 0))
            if n % a.pg_batch == 0:
                if pg:
                    pg.close()
                pg = open(os.path.join(a.outdir, "pg", "batch_%06d.csv" % (n // a.pg_batch)), "w")
            # customer ids from the generator need no CSV quoting; quote anyway for safety
            pg.write('"%s",%d,%r\n' % (cid.replace('"', '""'), t, amount))
            key = b"c:" + cid.encode()
            cmds = [resp(b"HINCRBY", key, b"n", b"1")]
            if amount != 0.0:
                cmds.append(resp(b"HINCRBYFLOAT", key, b"r", repr(amount)))
            cmds.append(resp(b"ZADD", b"last_seen", b"GT", t, cid))
            parts[n % a.redis_parts].write(b"".join(cmds))
            customers[cid] = True
            revenue_total += amount
            n += 1
    if pg:
        pg.close()
    for p in parts:
        p.close()
    with open(os.path.join(a.outdir, "expected.json"), "w") as f:
        json.dump({"events": n, "customers": len(customers), "revenue": round(revenue_total, 2)}, f)
    print(json.dumps({"events": n, "customers": len(customers), "revenue": round(revenue_total, 2)}))


if __name__ == "__main__":
    sys.exit(main())
