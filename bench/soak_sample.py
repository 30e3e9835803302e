#!/usr/bin/env python3
"""Samples a running rapportd every --interval seconds until the pid exits or
--until-file appears, writing CSV rows:

  t_s, unix_s, rss_mb, anon_mb, fds, threads, events_per_s, daemon_p99_ms, queue_depth, cpu_pct

rss/anon/fds/threads from /proc/PID; events/s (accepted + duplicate, all
transports), the interval's p99 ack latency (from the rapport_ack_latency_seconds
histogram deltas, linear within a bucket) and the queue depth from GET /metrics.

  soak_sample.py PID HTTP_ADDR OUT.csv [--interval 1] [--until-file F]
"""
import argparse
import os
import time
import urllib.request

TCK = os.sysconf("SC_CLK_TCK")


def proc(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    kb = lambda k: int(out.get(k, "0 kB").split()[0])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TCK
    return kb("VmRSS") / 1024, kb("RssAnon") / 1024, fds, int(out.get("Threads", "0")), cpu


def metrics(addr):
    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
    events = 0.0
    buckets = {}
    queue = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, _, value = line.rpartition(" ")
        try:
            v = float(value)
        except ValueError:
            continue
        if name.startswith("rapport_events_accepted_total{") or name.startswith("rapport_events_duplicate_total{"):
            events += v
        elif name.startswith("rapport_ack_latency_seconds_bucket{"):
            le = name.split('le="', 1)[1].split('"', 1)[0]
            le = float("inf") if le == "+Inf" else float(le)
            buckets[le] = buckets.get(le, 0.0) + v  # summed over transports
        elif name.startswith("rapport_queue_depth_events"):
            queue = v
    return events, buckets, queue


def p99(prev, cur):
    """p99 (ms) of the observations between two cumulative histograms."""
    les = sorted(cur)
    delta = [(le, cur[le] - prev.get(le, 0.0)) for le in les]
    total = delta[-1][1] if delta else 0
    if total <= 0:
        return ""
    target = 0.99 * total
    lo, below = 0.0, 0.0
    for le, cum in delta:
        if cum >= target:
            if le == float("inf"):
                return f"{lo * 1000:.3f}+"
            frac = (target - below) / (cum - below) if cum > below else 1.0
            return f"{(lo + (le - lo) * frac) * 1000:.3f}"
        lo, below = le, cum
    return ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pid", type=int)
    ap.add_argument("http")
    ap.add_argument("out")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--until-file")
    a = ap.parse_args()
    start = time.monotonic()
    prev_events, prev_buckets, _ = metrics(a.http)
    _, _, _, _, prev_cpu = proc(a.pid)
    prev_t = start
    with open(a.out, "w") as f:
        f.write("t_s,unix_s,rss_mb,anon_mb,fds,threads,events_per_s,daemon_p99_ms,queue_depth,cpu_pct\n")
        nxt = start + a.interval
        while True:
            time.sleep(max(0.0, nxt - time.monotonic()))
            nxt += a.interval
            if a.until_file and os.path.exists(a.until_file):
                break
            try:
                rss, anon, fds, threads, cpu = proc(a.pid)
                events, buckets, queue = metrics(a.http)
            except (OSError, ValueError):
                break
            now = time.monotonic()
            dt = now - prev_t
            f.write(f"{now - start:.1f},{time.time():.3f},{rss:.1f},{anon:.1f},{fds},{threads},{(events - prev_events) / dt:.0f},"
                    f"{p99(prev_buckets, buckets)},{queue:.0f},{(cpu - prev_cpu) / dt * 100:.0f}\n")
            f.flush()
            prev_events, prev_buckets, prev_cpu, prev_t = events, buckets, cpu, now


if __name__ == "__main__":
    main()
