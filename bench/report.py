#!/usr/bin/env python3
"""Builds bench/RESULTS.md and the PNGs from the raw results of bench/run.sh
(bench/results/: results.jsonl, machine.json, commands.txt, profile_*.txt,
analysis.md, bounds.json (the targets table's bound column), soak_summary.md,
and any other hand-written *.md there, included verbatim before the commands).
Re-run it to rebuild the report without re-measuring:  python3 bench/report.py
"""
import json
import os
import re
import statistics
import subprocess
import sys

WORKDIR = re.compile(r"\S*/build/bench/work/")  # a checkout's scratch dir in recorded commands

HERE = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(HERE, "results")
OUT = os.path.join(HERE, "RESULTS.md")

# Targets (docs: DESIGN §7).
T_TCP = 1_000_000
T_HTTP_BATCH = 1_000_000
T_HTTP_SINGLE = 100_000
T_QUERY = 200_000
T_P99_MS = 10.0
T_VS_PG = 20
T_VS_REDIS = 5
T_RSS_MB = 200

# Issue 13's goals.
G_INGEST = 1_000_000       # 1: durable TCP ingest, events/s, on both workloads
G_GROWTH = 0.9             # 2: rate of 2 M events after 50 M stored / on an empty store
G_P99_MS = 10.0            # 3: p99 ack at half the peak (open loop)
G_BYTES = 120              # 4: bytes on disk per stored event
G_BATCHGET = 1_000_000     # 6: batchGet customers/s


def load():
    recs = []
    path = os.path.join(RES, "results.jsonl")
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    machine = {}
    if os.path.exists(os.path.join(RES, "machine.json")):
        machine = json.load(open(os.path.join(RES, "machine.json")))
    return recs, machine


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt_int(v):
    return "—" if v is None else f"{v:,.0f}"


def fmt_ms(v):
    if v is None:
        return "—"
    return f"{v:.2f}" if v < 100 else f"{v:,.0f}"


def fmt_ratio(a, b):
    if not a or not b:
        return "—"
    return f"{a / b:.2f}×"


class Runs:
    """The runs of one rapport-loadgen configuration."""

    def __init__(self, recs, config, kind="rapport"):
        self.config = config
        self.all = [r for r in recs if r.get("kind") == kind and r.get("config") == config]
        self.ok = [r for r in self.all if r.get("loadgen")]

    def __bool__(self):
        return bool(self.ok)

    def lg(self, field):
        return med([r["loadgen"][field] for r in self.ok])

    def lat(self, field):
        return med([r["loadgen"]["latency_ms"][field] for r in self.ok])

    def spread(self):
        v = [r["loadgen"]["events_per_s"] for r in self.ok]
        return (min(v), max(v)) if v else (None, None)

    def cpu_per_m(self):
        """rapportd CPU seconds per million events (median)."""
        v = []
        for r in self.ok:
            ev = r["loadgen"]["events"]
            if ev and r.get("daemon_cpu_s") is not None:
                v.append(r["daemon_cpu_s"] / ev * 1e6)
        return med(v)

    def others(self):
        """Median CPU seconds per second used on the machine by processes other than rapportd and the loadgen."""
        v = []
        for r in self.ok:
            if r.get("machine_busy_s") is None or not r.get("wall_s"):
                continue  # older records lack the wall time of the whole measurement
            lg = r["loadgen"].get("process_cpu_s", r["loadgen"].get("loadgen_cpu_s", 0))
            other = r["machine_busy_s"] - (r.get("daemon_cpu_s") or 0) - lg
            v.append(max(0.0, other) / r["wall_s"])
        return med(v)

    def commits(self):
        """Median over runs of (events per group commit, ms per commit, commits/s of run time)."""
        per, ms = [], []
        if self.config.startswith(("query", "memory_query")):
            return "—"  # same daemon as the preload: its commits are the preload's
        for r in self.ok:
            wr = r.get("writer")
            if wr and wr.get("commits"):
                per.append(wr["events"] / wr["commits"])
                ms.append(wr["seconds"] / wr["commits"] * 1000)
        if not per:
            return "—"
        return f"{med(per):,.0f} ev × {med(ms):.1f} ms"

    def verify(self):
        checked = [r for r in self.ok if r["loadgen"]["verify"]["checked"]]
        if self.all and self.all[0].get("kind") == "nginx":
            errors = sum(r["loadgen"]["errors"] for r in self.ok)
            return "ok" if self.ok and not errors else f"errors ({errors})"
        failed = [r for r in self.all if r.get("rc") not in (0, None) or not r.get("loadgen")]
        bad = [r for r in checked if not r["loadgen"]["verify"]["ok"]]
        errors = sum(r["loadgen"]["errors"] + r["loadgen"]["refused"] for r in self.ok)
        if bad:
            return f"counters MISMATCH ×{len(bad)}"
        if failed or errors:
            return f"errors ({errors}), rc≠0 ×{len(failed)}"
        return "ok" if checked else "n/a"


def baseline(recs, system, fsync=None):
    rs = [r for r in recs if r.get("kind") == "baseline" and r.get("system") == system and
          (fsync is None or r.get("appendfsync") == fsync)]
    return rs


def main():
    recs, m = load()
    if not recs:
        print("no results in bench/results/results.jsonl: run bench/run.sh first", file=sys.stderr)
        return 1
    configs = []
    for r in recs:
        if r.get("kind") == "rapport" and r["config"] not in configs:
            configs.append(r["config"])

    def conns_of(prefix):
        out = []
        for c in configs:
            if c.startswith(prefix) and c[len(prefix):].isdigit():
                out.append(int(c[len(prefix):]))
        return sorted(out)

    hc = 4
    tcp = Runs(recs, f"tcp_c{hc}")
    httpb = Runs(recs, f"http_batch_c{hc}")
    sink = Runs(recs, f"sink_c{hc}")

    def best(prefix):
        cands = [Runs(recs, f"{prefix}{c}") for c in conns_of(prefix)]
        cands = [c for c in cands if c]
        return max(cands, key=lambda r: r.lg("events_per_s")) if cands else None

    tcp_best = best("tcp_c")
    httpb_best = best("http_batch_c")
    single_best = best("http_single_c")
    query_best = best("query_c")
    decode = {r["config"]: r for r in recs if r.get("kind") == "decode"}
    imp = next((r for r in recs if r.get("kind") == "import"), None)
    mem = next((r for r in recs if r.get("kind") == "memory"), None)
    pg = baseline(recs, "postgresql")
    pg_dedup = baseline(recs, "postgresql_dedup")
    r_always = baseline(recs, "redis", "always")
    r_every = baseline(recs, "redis", "everysec")
    pg_eps = med([r["events_per_s"] for r in pg])
    ra_eps = med([r["events_per_s"] for r in r_always])
    re_eps = med([r["events_per_s"] for r in r_every])
    dec_line = decode.get("BM_DecodeLine", {}).get("items_per_s")
    dec_body = decode.get("BM_DecodeBodyNdjson1000", {}).get("items_per_s")
    dec_body_bytes = decode.get("BM_DecodeBodyNdjson1000", {}).get("bytes_per_s")
    events = m.get("events")

    L = []
    w = L.append
    w("# Rapport — benchmark results")
    w("")
    w("Generated by `bench/run.sh`" + (" --quick" if m.get("quick") else "") +
      " on " + str(m.get("date", "?")) + f" (commit {m.get('git', '?')}); rebuild this page from the raw data in "
      "`bench/results/` with `python3 bench/report.py`. Every rapportd figure is measured end to end: `rapportd` "
      "(Release, default config: `durability = fsync`, an ack means the group commit is on disk) on loopback, driven "
      "by `rapport-loadgen` in its own process on the same 2 cores, each ingest run on a fresh, empty state dir. "
      f"Each configuration ran {m.get('repeats', '?')} times; tables show medians (min–max where useful).")
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| cores | {m.get('cores')} × {m.get('cpu_model')} |")
    w(f"| memory | {m.get('mem_gb')} GiB |")
    w(f"| OS, kernel | {m.get('os')}, {m.get('kernel')} |")
    w(f"| disk (state dirs) | {m.get('disk')}, rotational={m.get('rotational')}, "
      f"single 8 kB write+fdatasync: {m.get('fdatasync_per_s') or '?'} ops/s (pg_test_fsync) |")
    w(f"| load average at start / end | {' '.join(m.get('loadavg_start', []))} / {' '.join(m.get('loadavg_end', []))} |")
    w(f"| compiler | {m.get('compiler')} |")
    w(f"| baselines | {m.get('postgresql')}; {m.get('redis')} |")
    w(f"| events | {fmt_int(events)} events over {fmt_int(m.get('customers'))} customers (Zipf 1.1, "
      "`rapportctl generate --duplicates 0`), ~118 bytes each |")
    w(f"| wall time of the run | {m.get('wall_s', '?')} s |")
    w("")
    w("The machine is shared: other engineers' builds and tests ran during the measurements. The column "
      "*other CPU* is the median CPU (in cores) used by everything except rapportd and the load generator "
      "during the runs (from /proc/stat); *rapportd CPU-s / M events* is robust to that noise.")
    w("")

    # ------------------------------------------------------------ summary
    w("## Summary (medians)")
    w("")
    w("| configuration | events/s (min–max) | MB/s | ack p50 / p99 / p99.9 ms | rapportd CPU-s / M events | other CPU | check |")
    w("|---|---|---|---|---|---|---|")

    def row(name, runs, unit="events/s"):
        if not runs:
            w(f"| {name} | not measured | | | | | |")
            return
        lo, hi = runs.spread()
        oth = runs.others()
        w(f"| {name} | **{fmt_int(runs.lg('events_per_s'))}** ({fmt_int(lo)}–{fmt_int(hi)}) | "
          f"{runs.lg('MB_per_s'):.1f} | {fmt_ms(runs.lat('p50'))} / {fmt_ms(runs.lat('p99'))} / {fmt_ms(runs.lat('p999'))} | "
          f"{runs.cpu_per_m():.2f} | {'—' if oth is None else f'{oth:.2f}'} | {runs.verify()} |")

    row(f"rapportd TCP NDJSON, {hc} conns, 1000 lines/write", tcp)
    if tcp_best and tcp_best.config != tcp.config:
        row(f"rapportd TCP NDJSON, best ({tcp_best.config.split('_c')[-1]} conns)", tcp_best)
    row(f"rapportd HTTP batched NDJSON, {hc} conns, 1000 events/request", httpb)
    if httpb_best and httpb_best.config != httpb.config:
        row(f"rapportd HTTP batched, best ({httpb_best.config.split('_c')[-1]} conns)", httpb_best)
    if single_best:
        row(f"rapportd HTTP one event/request, {single_best.config.split('_c')[-1]} conns (req/s)", single_best)
    if query_best:
        row(f"rapportd point queries GET /v1/customers/{{id}}, {query_best.config.split('_c')[-1]} conns (req/s)",
            query_best)
    row(f"rapport-sink: loopback TCP + decode + ack, no storage, {hc} conns", sink)
    w("")
    w("| reference / baseline | events/s | notes |")
    w("|---|---|---|")
    if dec_line:
        w(f"| decoder, one core, one line at a time (BM_DecodeLine) | {fmt_int(dec_line)} | "
          f"{decode['BM_DecodeLine']['bytes_per_s'] / 1e9:.2f} GB/s, validation included |")
    if dec_body:
        w(f"| decoder, one core, 1000-line NDJSON body (BM_DecodeBodyNdjson1000) | {fmt_int(dec_body)} | "
          f"{dec_body_bytes / 1e9:.2f} GB/s |")
    for n in ("BM_DomParseLine", "BM_DomParseLines1000"):
        if n in decode:
            w(f"| plain simdjson DOM parse, one core ({n}) | {fmt_int(decode[n]['items_per_s'])} | "
              f"{decode[n]['bytes_per_s'] / 1e9:.2f} GB/s |")
    if imp:
        w(f"| `rapportctl import` of the same file (no network, 50k/commit, fsync) | {fmt_int(imp['events_per_s'])} | "
          f"median of {imp['runs']} (hyperfine) |")
    for name, rs, note in (
            ("PostgreSQL, aggregate only: pre-parsed CSV, COPY + INSERT … ON CONFLICT DO UPDATE, no dedup, "
             "50k events/txn, synchronous_commit=on", pg, "2 clients"),
            ("PostgreSQL, the whole job with dedup: raw NDJSON COPYed into staging, parsed in SQL (jsonb), dedup table "
             "(customer_id, event_id), aggregate upsert of the new events, 10k per txn, synchronous_commit=on",
             pg_dedup, "1 connection"),
            ("Redis: pipelined HINCRBY/HINCRBYFLOAT/ZADD GT, appendfsync always", r_always, "4 pipes"),
            ("Redis: same, appendfsync everysec (may lose 1 s)", r_every, "4 pipes")):
        if rs:
            v = [r["events_per_s"] for r in rs]
            ok = all(r.get("verify_ok") for r in rs)
            w(f"| {name} | **{fmt_int(med(v))}** ({fmt_int(min(v))}–{fmt_int(max(v))}) | {note}, "
              f"{len(rs)} runs, aggregates {'checked ok' if ok else 'MISMATCH'} |")
        else:
            w(f"| {name} | not measured | |")
    w("")

    # ------------------------------------------------------------ ratios
    w("## Ratios (same events, same per-customer aggregates)")
    w("")
    w("| ours | ÷ PostgreSQL | ÷ Redis always | ÷ Redis everysec | ÷ decode-only: rapport-sink | ÷ decoder, one core |")
    w("|---|---|---|---|---|---|")
    for name, runs in ((f"TCP NDJSON, {hc} conns", tcp), (f"HTTP batched, {hc} conns", httpb)):
        e = runs.lg("events_per_s") if runs else None
        w(f"| {name}: {fmt_int(e)} | {fmt_ratio(e, pg_eps)} | {fmt_ratio(e, ra_eps)} | {fmt_ratio(e, re_eps)} | "
          f"{fmt_ratio(e, sink.lg('events_per_s') if sink else None)} | {fmt_ratio(e, dec_line)} |")
    w("")
    w("The baselines get their input pre-parsed (CSV for COPY, RESP for redis-cli, converted untimed by "
      "`bench/convert_events.py`) and compute three aggregates; rapportd parses and validates JSON, deduplicates, "
      "journals every event and keeps full scoring state. Both favour the baselines.")
    w("")

    # ------------------------------------------------------------ targets
    w("## Targets (DESIGN §7)")
    w("")
    # What bounds each target: hand-written from the run's reading (bench/results/bounds.json, keys as
    # below), like analysis.md; re-check it after re-running.
    bounds_path = os.path.join(RES, "bounds.json")
    bounds = json.load(open(bounds_path)) if os.path.exists(bounds_path) else {}

    def bound(key):
        return bounds.get(key, "see *What bounds the missed targets*")

    w("| target | measured (median) | met? | what bounds it (see *What bounds the missed targets*) |")
    w("|---|---|---|---|")

    def yn(cond):
        return "—" if cond is None else ("**yes**" if cond else "**no**")

    e_tcp = tcp_best.lg("events_per_s") if tcp_best else None
    e_httpb = httpb_best.lg("events_per_s") if httpb_best else None
    e_single = single_best.lg("events_per_s") if single_best else None
    e_query = query_best.lg("events_per_s") if query_best else None
    w(f"| TCP NDJSON with fsync ≥ 1,000,000 events/s | {fmt_int(e_tcp)} | {yn(e_tcp and e_tcp >= T_TCP)} | {bound('tcp')} |")
    w(f"| HTTP batched ≥ 1,000,000 events/s | {fmt_int(e_httpb)} | {yn(e_httpb and e_httpb >= T_HTTP_BATCH)} | {bound('http_batch')} |")
    w(f"| HTTP single-event ≥ 100,000 req/s | {fmt_int(e_single)} | {yn(e_single and e_single >= T_HTTP_SINGLE)} | {bound('http_single')} |")
    w(f"| point queries ≥ 200,000/s | {fmt_int(e_query)} | {yn(e_query and e_query >= T_QUERY)} | {bound('query')} |")
    half = Runs(recs, "open_tcp_0.5")
    p99_half = half.lat("p99") if half else None
    w(f"| p99 ack latency ≤ 10 ms at half the peak rate (TCP, open loop, "
      f"{fmt_int(half.lg('rate_target')) if half else '?'} events/s offered) | "
      f"{fmt_ms(p99_half)} ms | {yn(p99_half is not None and p99_half <= T_P99_MS)} | {bound('p99')} |")
    e4 = tcp.lg("events_per_s") if tcp else None
    w(f"| ≥ 20× PostgreSQL | {fmt_ratio(e4, pg_eps)} | {yn(e4 and pg_eps and e4 / pg_eps >= T_VS_PG)} | {bound('postgresql')} |")
    w(f"| ≥ 5× Redis (appendfsync always / everysec) | {fmt_ratio(e4, ra_eps)} / {fmt_ratio(e4, re_eps)} | "
      f"{yn(e4 and ra_eps and e4 / ra_eps >= T_VS_REDIS)} / {yn(e4 and re_eps and e4 / re_eps >= T_VS_REDIS)} | "
      f"{bound('redis')} |")
    if mem:
        anon = mem["restart_anon_kb"] / 1024
        w(f"| {fmt_int(mem['customers'])} customers: rapportd RSS (page cache aside) < 200 MB | "
          f"RssAnon {anon:,.0f} MB after restart, {mem['after_queries_anon_kb'] / 1024:,.0f} MB after queries, "
          f"{mem['after_ingest_anon_kb'] / 1024:,.0f} MB right after the ingest | "
          f"{yn(max(mem['restart_anon_kb'], mem['after_queries_anon_kb']) / 1024 < T_RSS_MB)} (idle/queries) | "
          f"{bound('memory')} |")
    soaks = sorted(p for p in os.listdir(RES) if p.startswith("soak_summary") and p.endswith(".md"))
    for name in soaks:
        verdict, rate = "see below", ""
        for line in open(os.path.join(RES, name)):
            if line.startswith("verdict:"):
                verdict = line.split(":", 1)[1].strip()
            if line.startswith("`bench/soak.sh") and " at " in line:
                rate = line.split(" at ", 1)[1].split(" (", 1)[0]
        w(f"| RSS flat under a soak ({rate}) | {verdict} | see *Soak* | {bound(name[:-3])} |")
    if not soaks:
        w("| RSS flat under a 10-minute soak | not run yet (`bench/soak.sh`) | — | — |")
    w("")

    issue13(recs, configs, yn, soaks, mem, w)

    # ------------------------------------------------------------ throughput vs connections
    w("## Throughput vs connections")
    w("")
    w("![throughput vs connections](throughput_vs_connections.png)")
    w("")
    w("| mode | connections | events/s (min–max) | ack p50 / p99 / p99.9 ms | rapportd CPU-s / M | mean group commit (writer) | check |")
    w("|---|---|---|---|---|---|---|")
    dat = []
    for prefix, label in (("tcp_c", "TCP NDJSON"), ("http_batch_c", "HTTP batched"),
                          ("http_single_c", "HTTP single (req/s)"), ("query_c", "point queries (req/s)")):
        for c in conns_of(prefix):
            r = Runs(recs, f"{prefix}{c}")
            if not r:
                continue
            lo, hi = r.spread()
            w(f"| {label} | {c} | {fmt_int(r.lg('events_per_s'))} ({fmt_int(lo)}–{fmt_int(hi)}) | "
              f"{fmt_ms(r.lat('p50'))} / {fmt_ms(r.lat('p99'))} / {fmt_ms(r.lat('p999'))} | {r.cpu_per_m():.2f} | "
              f"{r.commits()} | {r.verify()} |")
            dat.append((prefix, c, r.lg("events_per_s")))
    w("")
    with open(os.path.join(RES, "throughput_vs_connections.dat"), "w") as f:
        for prefix in ("tcp_c", "http_batch_c", "http_single_c", "query_c"):
            f.write(f"# {prefix}\n")
            for p, c, e in dat:
                if p == prefix:
                    f.write(f"{c} {e}\n")
            f.write("\n\n")

    # ------------------------------------------------------------ latency vs offered load
    w("## Ack latency vs offered load (TCP, open loop, 100 lines/write, "
      f"{hc} connections; latency from the *intended* send time)")
    w("")
    w("![latency vs offered load](latency_vs_load.png)")
    w("")
    w("| offered (fraction of peak) | offered events/s | achieved events/s | p50 ms | p99 ms | p99.9 ms | max ms | mean group commit |")
    w("|---|---|---|---|---|---|---|---|")
    fr = sorted({float(c.split("_")[-1]) for c in configs if c.startswith("open_tcp_")})
    with open(os.path.join(RES, "latency_vs_load.dat"), "w") as f:
        f.write("# offered achieved p50 p99 p999\n")
        for x in fr:
            key = f"open_tcp_{x:g}"
            r = Runs(recs, key)
            if not r:
                continue
            w(f"| {x:g} | {fmt_int(r.lg('rate_target'))} | {fmt_int(r.lg('events_per_s'))} | {fmt_ms(r.lat('p50'))} | "
              f"{fmt_ms(r.lat('p99'))} | {fmt_ms(r.lat('p999'))} | {fmt_ms(r.lat('max'))} | {r.commits()} |")
            f.write(f"{r.lg('rate_target')} {r.lg('events_per_s')} {r.lat('p50')} {r.lat('p99')} {r.lat('p999')}\n")
    w("")

    # ------------------------------------------------------------ memory
    if mem:
        w("## Memory with many customers")
        w("")
        w(f"{fmt_int(mem['customers'])} events over as many customers (every customer once: "
          "`rapport-loadgen --cycle-customers --zipf 0`), TCP ingest into a fresh rapportd, then SIGTERM, restart on "
          "the same state dir, idle 2 s, point queries over uniformly random customers. RSS from /proc/PID/status "
          "(VmRSS includes LMDB's mapped pages, i.e. page cache; RssAnon is the process's own memory).")
        w("")
        w("| moment | VmRSS MB | RssAnon MB |")
        w("|---|---|---|")
        w(f"| right after the ingest (peak VmHWM {mem['ingest_hwm_kb'] / 1024:,.0f} MB) | "
          f"{mem['after_ingest_rss_kb'] / 1024:,.0f} | {mem['after_ingest_anon_kb'] / 1024:,.0f} |")
        w(f"| after restart, idle | {mem['restart_rss_kb'] / 1024:,.0f} | {mem['restart_anon_kb'] / 1024:,.0f} |")
        w(f"| after the point queries | {mem['after_queries_rss_kb'] / 1024:,.0f} | "
          f"{mem['after_queries_anon_kb'] / 1024:,.0f} |")
        w("")
        mi = Runs(recs, "memory_ingest")
        mq = Runs(recs, "memory_query")
        w(f"State dir on disk: {mem['state_dir_kb'] / 1024:,.0f} MB. Customers reported by `rapport_customers`: "
          f"{fmt_int(mem['customers_metric'])}. Shutdown (final checkpoint) took {mem['stop_s']:.1f} s. "
          f"Ingest rate of this run: {fmt_int(mi.lg('events_per_s') if mi else None)} events/s; "
          f"queries: {fmt_int(mq.lg('events_per_s') if mq else None)}/s "
          f"({fmt_int(mq.lg('misses') if mq else None)} misses).")
        w("")

    # ------------------------------------------------------------ analysis & profiles
    analysis = os.path.join(RES, "analysis.md")
    if os.path.exists(analysis):
        w(open(analysis).read().rstrip())
        w("")
    profiles = sorted(p for p in os.listdir(RES) if p.startswith("profile_") and p.endswith(".txt"))
    if profiles:
        w("## Profiles (raw)")
        w("")
        w("`perf stat` and `perf record -F 499` attached to rapportd for a few seconds under each load "
          "(Release build, no frame pointers: self time per symbol). Files: `bench/results/profile_*.txt`.")
        w("")
        for p in profiles:
            w("```")
            w(WORKDIR.sub("", open(os.path.join(RES, p)).read().rstrip()))
            w("```")
            w("")
    for name in soaks:
        w(open(os.path.join(RES, name)).read().rstrip())
        w("")
    # Hand-written sections kept beside the generated ones (e.g. micro-benchmark tables).
    for extra in sorted(os.listdir(RES)):
        if extra.endswith(".md") and extra != "analysis.md" and not extra.startswith("soak_summary"):
            w(open(os.path.join(RES, extra)).read().rstrip())
            w("")

    # ------------------------------------------------------------ commands
    w("## Exact commands")
    w("")
    w("`bench/run.sh" + (" --quick" if m.get("quick") else "") + "` ran, with fresh `rapportd --http 127.0.0.1:0 "
      "--tcp 127.0.0.1:0 --state-dir DIR` per ingest run (binaries in build/bench, "
      "`cmake -DCMAKE_BUILD_TYPE=Release -DRAPPORT_BENCH=ON -DRAPPORT_TESTS=OFF -DRAPPORT_WERROR=OFF`); "
      "every rapport-loadgen line also got `--tcp ADDR --http ADDR --json -q --label CONFIG`, and each "
      "configuration ran the stated number of times:")
    w("")
    w("```")
    cmds = os.path.join(RES, "commands.txt")
    if os.path.exists(cmds):
        for line in open(cmds):
            w(WORKDIR.sub("", line.rstrip()))
    w("```")
    w("")
    open(OUT, "w").write("\n".join(L))
    plots({"PostgreSQL": pg_eps, "Redis always": ra_eps, "Redis everysec": re_eps,
           "rapport-sink (decode only)": sink.lg("events_per_s") if sink else None})
    print(f"wrote {OUT}")
    return 0


def issue13(recs, configs, yn, soaks, mem, w):
    """Issue 13's goals (met / not met, and what bounds each), then the runs behind them."""
    hc = 4
    bounds_path = os.path.join(RES, "bounds.json")
    bounds = json.load(open(bounds_path)) if os.path.exists(bounds_path) else {}

    def bound(key):  # noqa: F811 (the goals' own keys; no fallback to the old targets' section)
        return bounds.get(key, f"not read yet (key `{key}` of results/bounds.json)")

    def cfgs(prefix, suffix=""):
        return sorted(c for c in configs if c.startswith(prefix) and c.endswith(suffix))

    parts = {}  # workload -> {P: Runs}
    for workload in ("hot", "zipf"):
        for c in cfgs(f"tcp_{workload}_p", f"_c{hc}"):
            p = c[len(f"tcp_{workload}_p"):-len(f"_c{hc}")]
            r = Runs(recs, c)
            if r:
                parts.setdefault(workload, {})[p] = r
    best = {wl: max((r.lg("events_per_s") for r in d.values()), default=None) for wl, d in parts.items()}
    empty = Runs(recs, f"growth_empty_c{hc}")
    fills = sorted(int(c[len("growth_after_"):-len(f"_c{hc}")]) for c in cfgs("growth_after_", f"_c{hc}"))
    after = {f: Runs(recs, f"growth_after_{f}_c{hc}") for f in fills}
    disks = {r["config"]: r for r in recs if r.get("kind") == "disk"}
    half = Runs(recs, "open_tcp_0.5")
    query_conns = sorted(int(c[len("query_c"):]) for c in cfgs("query_c") if c[len("query_c"):].isdigit())
    batch = Runs(recs, f"batchget_c{hc}")

    w("## Issue 13 goals")
    w("")
    w("Met or not met on this run, and what bounds each (the bound column is hand-written in "
      "`bench/results/bounds.json`, keys `g1` … `g6b`, from the profiles of the same run; re-read it after a run).")
    w("")
    w("| goal | measured (median) | met? | what bounds it |")
    w("|---|---|---|---|")
    e_hot, e_zipf = best.get("hot"), best.get("zipf")
    w(f"| 1. durable TCP ingest ≥ 1,000,000 events/s on both workloads (best P; hot / Zipf) | "
      f"{fmt_int(e_hot)} / {fmt_int(e_zipf)} | "
      f"{yn(None if e_hot is None or e_zipf is None else (e_hot >= G_INGEST and e_zipf >= G_INGEST))} | {bound('g1')} |")
    if fills:
        f = 50_000_000 if 50_000_000 in after else fills[-1]
        a, e = after[f].lg("events_per_s") if after[f] else None, empty.lg("events_per_s") if empty else None
        ratio = a / e if a and e else None
        note = "" if f == 50_000_000 else f" (after {f / 1e6:g} M, not 50 M: `bench/run.sh --long` runs 50 M)"
        w(f"| 2. rate of the hot file after 50 M stored ≥ 0.9 × on an empty store | "
          f"{'—' if ratio is None else f'{ratio:.2f}×'} ({fmt_int(a)} / {fmt_int(e)}){note} | "
          f"{yn(None if ratio is None or f != 50_000_000 else ratio >= G_GROWTH)} | {bound('g2')} |")
    else:
        w("| 2. rate after 50 M stored ≥ 0.9 × empty | not measured | — | — |")
    p99 = half.lat("p99") if half else None
    w(f"| 3. p99 ack ≤ 10 ms at half the peak (open loop, {fmt_int(half.lg('rate_target')) if half else '?'} events/s) | "
      f"{fmt_ms(p99)} ms | {yn(None if p99 is None else p99 <= G_P99_MS)} | {bound('g3')} |")
    if disks:
        d = disks[max(disks, key=lambda k: disks[k]["stored_events"])]
        w(f"| 4. ≤ 120 bytes on disk per stored event (du of the whole state dir, {fmt_int(d['stored_events'])} events "
          f"of {d['event_line_bytes']:.0f} bytes) | {d['bytes_per_event']:.0f} B | "
          f"{yn(d['bytes_per_event'] <= G_BYTES)} | {bound('g4')} |")
    else:
        w("| 4. ≤ 120 bytes per stored event | not measured | — | — |")
    soak30 = [n for n in soaks if "30" in n or "long" in n]
    if mem:
        w(f"| 5a. RssAnon bounded (a function of the config, docs/design.md) | {mem['after_ingest_anon_kb'] / 1024:,.0f} MB "
          f"after ingesting {fmt_int(mem['customers'])} customers, {mem['restart_anon_kb'] / 1024:,.0f} MB after restart | "
          f"see the bound in docs/design.md | {bound('g5')} |")
    verdict = "not run (`bench/run.sh --long` runs `bench/soak.sh --minutes 30`)"
    for name in soak30:
        for line in open(os.path.join(RES, name)):
            if line.startswith("verdict:"):
                verdict = line.split(":", 1)[1].strip()
    w(f"| 5b. RssAnon flat over a 30-minute soak at half the peak | {verdict} | "
      f"{yn(verdict.startswith('flat')) if soak30 else '—'} | {bound('g5b')} |")
    for c in query_conns:
        q, n = Runs(recs, f"query_c{c}"), Runs(recs, f"nginx_query_c{c}", kind="nginx")
        qe, ne = (q.lg("events_per_s") if q else None), (n.lg("events_per_s") if n else None)
        w(f"| 6a. GET /v1/customers/{{id}} ≥ nginx serving the same bytes ({c} conns; rapportd / nginx req/s) | "
          f"{fmt_int(qe)} / {fmt_int(ne)} ({fmt_ratio(qe, ne)}) | {yn(None if not qe or not ne else qe >= ne)} | "
          f"{bound('g6a')} |")
    be = batch.lg("events_per_s") if batch else None
    w(f"| 6b. POST /v1/customers:batchGet ≥ 1,000,000 customers/s ({hc} conns, 1000 ids/request) | {fmt_int(be)} | "
      f"{yn(None if be is None else be >= G_BATCHGET)} | {bound('g6b')} |")
    w("")

    w("### Partitions (`[storage] partitions = P`), TCP, 4 connections, 1000 lines/write, fresh state dir")
    w("")
    w("Workloads: *hot* = the issue's first row (uniform over the customers, then 20 % of the events moved onto "
      "1 % of them: `bench/hot_events.py`); *Zipf* = `rapportctl generate --duplicates 0` (Zipf 1.1), the file of "
      "the other tables.")
    w("")
    w("| workload | P | events/s (min–max) | ack p50 / p99 ms | rapportd CPU-s / M | mean group commit | check |")
    w("|---|---|---|---|---|---|---|")
    for wl in ("hot", "zipf"):
        for p, r in sorted(parts.get(wl, {}).items(), key=lambda kv: (not kv[0].isdigit(), kv[0].zfill(4))):
            lo, hi = r.spread()
            w(f"| {wl} | {p} | {fmt_int(r.lg('events_per_s'))} ({fmt_int(lo)}–{fmt_int(hi)}) | "
              f"{fmt_ms(r.lat('p50'))} / {fmt_ms(r.lat('p99'))} | {r.cpu_per_m():.2f} | {r.commits()} | {r.verify()} |")
    if not parts:
        w("| — | — | not measured | | | | |")
    w("")

    w("### Store growth and bytes per event (default config)")
    w("")
    w("The hot file on a fresh rapportd, and on one that first stored N other events of the same kind (fresh "
      "event ids; generated and sent in files of 2 M). Bytes per event: `du -sb` of the whole state dir after "
      "the run and a clean stop, over `rapport_events_accepted_total`.")
    w("")
    w("| stored before | events/s of the hot file (min–max) | ÷ empty | ack p99 ms | fill rate (events/s, first → last file) | state dir | bytes / event |")
    w("|---|---|---|---|---|---|---|")
    if empty:
        lo, hi = empty.spread()
        w(f"| 0 | {fmt_int(empty.lg('events_per_s'))} ({fmt_int(lo)}–{fmt_int(hi)}) | 1.00× | {fmt_ms(empty.lat('p99'))} | — | — | — |")
    for f in fills:
        r = after[f]
        fill = [x for x in recs if x.get("kind") == "rapport" and x.get("config") == f"growth_fill_{f}" and x.get("loadgen")]
        fill.sort(key=lambda x: x["repeat"])
        fr = (f"{fmt_int(fill[0]['loadgen']['events_per_s'])} → {fmt_int(fill[-1]['loadgen']['events_per_s'])}"
              if fill else "—")
        d = disks.get(f"growth_{f}")
        size = "—" if not d else f"{d['state_dir_bytes'] / 1e9:.2f} GB"
        per = "—" if not d else f"{d['bytes_per_event']:.0f}"
        w(f"| {fmt_int(f)} | {fmt_int(r.lg('events_per_s') if r else None)} | "
          f"{fmt_ratio(r.lg('events_per_s') if r else None, empty.lg('events_per_s') if empty else None)} | "
          f"{fmt_ms(r.lat('p99') if r else None)} | {fr} | {size} | {per} |")
    w("")

    w("### Point queries beside nginx, and batchGet")
    w("")
    w("The same load generator (`rapport-loadgen --mode query`, ids Zipf-skewed like the events) against rapportd "
      "(preloaded with the events) and against nginx (`worker_processes` = cores, its own config in a temp dir) "
      "serving one customer's JSON as a static file for every `/v1/customers/{id}`, alternating in the same run. "
      "batchGet: `--mode batchget`, 1000 ids per request; the rate counts customers (found or missing).")
    w("")
    w("| server | connections | per second (min–max) | latency p50 / p99 ms | check |")
    w("|---|---|---|---|---|")
    for c in query_conns:
        for name, r in (("rapportd GET", Runs(recs, f"query_c{c}")), ("nginx static file", Runs(recs, f"nginx_query_c{c}", kind="nginx"))):
            if r:
                lo, hi = r.spread()
                w(f"| {name} | {c} | {fmt_int(r.lg('events_per_s'))} ({fmt_int(lo)}–{fmt_int(hi)}) | "
                  f"{fmt_ms(r.lat('p50'))} / {fmt_ms(r.lat('p99'))} | {r.verify()} |")
    if batch:
        lo, hi = batch.spread()
        w(f"| rapportd batchGet (customers/s; {fmt_int(batch.lg('requests_per_s'))} requests/s) | {hc} | "
          f"{fmt_int(batch.lg('events_per_s'))} ({fmt_int(lo)}–{fmt_int(hi)}) | "
          f"{fmt_ms(batch.lat('p50'))} / {fmt_ms(batch.lat('p99'))} | {batch.verify()} |")
    w("")


def plots(refs):
    tp = os.path.join(RES, "throughput_vs_connections.dat")
    ref_plot = ""
    for i, (name, v) in enumerate(refs.items()):
        if v:
            ref_plot += f", \\\n     {v} with lines dt {i + 2} lw 1 title '{name} ({v:,.0f})'"
    lat = os.path.join(RES, "latency_vs_load.dat")
    script = f"""
set terminal pngcairo size 1000,640 font "sans,10"
set output '{HERE}/throughput_vs_connections.png'
set title 'rapportd throughput vs connections (fsync, medians)'
set xlabel 'connections'
set ylabel 'events/s (requests/s for single events and queries)'
set logscale x 2
set logscale y
set grid
set key below maxrows 3
set yrange [1000:5e6]
set xrange [0.8:400]
plot '{tp}' index 0 using 1:2 with linespoints lw 2 title 'TCP NDJSON (1000 lines/write)', \\
     '' index 1 using 1:2 with linespoints lw 2 title 'HTTP batched (1000 events/req)', \\
     '' index 2 using 1:2 with linespoints lw 2 title 'HTTP one event/request', \\
     '' index 3 using 1:2 with linespoints lw 2 title 'point queries', \\
     1e6 with lines lw 1 lc rgb 'red' title 'target 1M/s'{ref_plot}
set output '{HERE}/latency_vs_load.png'
set title 'rapportd TCP ack latency vs offered load (open loop, medians)'
set xlabel 'offered events/s'
set ylabel 'ack latency, ms'
unset logscale x
set logscale y
set yrange [*:*]
set xrange [0:*]
set key inside top left
plot '{lat}' using 1:3 with linespoints lw 2 title 'p50', \\
     '' using 1:4 with linespoints lw 2 title 'p99', \\
     '' using 1:5 with linespoints lw 2 title 'p99.9', \\
     10 with lines dt 2 lc rgb 'red' title '10 ms target'
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, capture_output=True)
    except Exception as e:
        print(f"gnuplot failed: {e}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
