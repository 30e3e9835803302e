#!/usr/bin/env python3
"""Rewrites `rapportctl generate --zipf 0 --duplicates 0` output (NDJSON on stdin) into the "hot" workload of
issue 13's first row: a fraction (default 20 %) of the events go to a hot set of customers (default the first
1 % of --customers, c0 ... c<N/100 - 1>), the rest keep their uniform customer. Every event_id gets the prefix
"<tag>-", so files made with different seeds and tags never share an event (rapportctl generate numbers its
events e0, e1, ... whatever the seed). Deterministic for a given --seed.

    rapportctl generate --customers 1000000 --events 2000000 --zipf 0 --duplicates 0 --seed 1 |
        python3 bench/hot_events.py --customers 1000000 --tag m > hot.ndjson
"""
import argparse
import random
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--customers", type=int, required=True, help="customers of the generated events")
    ap.add_argument("--tag", required=True, help="event_id prefix (unique per file)")
    ap.add_argument("--hot-fraction", type=float, default=0.2, help="share of events on the hot customers")
    ap.add_argument("--hot-customers", type=float, default=0.01, help="hot customers, as a share of --customers")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    hot = max(1, int(a.customers * a.hot_customers))
    event_key, customer_key = '{"event_id":"', '","customer_id":"'
    out = sys.stdout
    n = 0
    for line in sys.stdin:
        if not line.startswith(event_key):
            sys.exit(f"hot_events.py: line {n + 1} does not start with {event_key!r}: {line[:80]!r}")
        at = line.index(customer_key)
        rest = line[at:]
        if rng.random() < a.hot_fraction:
            end = line.index('"', at + len(customer_key))
            rest = f'{customer_key}c{rng.randrange(hot)}{line[end:]}'
        out.write(f"{event_key}{a.tag}-{line[len(event_key):at]}{rest}")
        n += 1


if __name__ == "__main__":
    main()
