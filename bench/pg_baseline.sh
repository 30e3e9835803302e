#!/usr/bin/env bash
# PostgreSQL baseline: what a user would build instead of rapportd — COPY each
# batch of events into a staging table and upsert the per-customer aggregates
# (count, revenue, last_seen) with INSERT ... ON CONFLICT DO UPDATE, one
# transaction per batch, synchronous_commit=on (durable like rapportd's acks).
#
#   bench/pg_baseline.sh CONVERTED_DIR [--clients C] [--repeats R] [--out FILE]
#
# CONVERTED_DIR is what bench/convert_events.py wrote (pg/batch_*.csv,
# expected.json). Starts its own PostgreSQL (initdb in a temp dir, loopback,
# a free port; as user postgres when run as root), runs R repeats on an empty
# table each, C psql clients in parallel taking the batches round-robin, checks
# the aggregates against expected.json, stops the server and removes the
# temp dir. Prints (and appends to --out) one JSON line per repeat.
set -euo pipefail
dir=$1; shift
CLIENTS=2 REPEATS=3 OUT=/dev/null
while [ $# -gt 0 ]; do
  case $1 in
    --clients) CLIENTS=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
dir=$(realpath "$dir")
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
tmp=$(mktemp -d /tmp/rapport-pg.XXXXXX)
chmod 755 "$tmp"
as_pg=()
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$tmp"
  as_pg=(runuser -u postgres --)
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
stop() {
  "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap stop EXIT

"${as_pg[@]}" "$PGBIN/initdb" -D "$tmp/data" -U postgres --auth=trust -E UTF8 --locale=C >"$tmp/initdb.log" 2>&1
# Settings: durable commits (fsync, synchronous_commit on, the defaults) and
# enough memory and WAL room that checkpoints do not dominate a short run.
SETTINGS="-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$tmp -c fsync=on \
-c synchronous_commit=on -c full_page_writes=on -c shared_buffers=1GB -c wal_buffers=64MB -c max_wal_size=8GB \
-c checkpoint_timeout=30min -c work_mem=64MB -c maintenance_work_mem=256MB"
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -o "$SETTINGS" -w start >/dev/null
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
"${PSQL[@]}" -c "CREATE TABLE customer_agg (customer_id text PRIMARY KEY, events bigint NOT NULL,
                 revenue double precision NOT NULL, last_seen_ms bigint NOT NULL)"
version=$("${PSQL[@]}" -tA -c "SHOW server_version")

# One SQL script per client: its batches, one transaction each.
mapfile -t batches < <(ls "$dir"/pg/batch_*.csv | sort)
for ((c = 0; c < CLIENTS; c++)); do
  {
    echo "CREATE TEMP TABLE staging (customer_id text, ts_ms bigint, amount double precision) ON COMMIT DELETE ROWS;"
    for ((i = c; i < ${#batches[@]}; i += CLIENTS)); do
      echo "BEGIN;"
      echo "\\copy staging FROM '${batches[$i]}' WITH (FORMAT csv)"
      echo "INSERT INTO customer_agg AS a SELECT customer_id, count(*), sum(amount), max(ts_ms) FROM staging"
      echo "  GROUP BY customer_id ORDER BY customer_id"
      echo "  ON CONFLICT (customer_id) DO UPDATE SET events = a.events + excluded.events,"
      echo "  revenue = a.revenue + excluded.revenue, last_seen_ms = greatest(a.last_seen_ms, excluded.last_seen_ms);"
      echo "COMMIT;"
    done
  } >"$tmp/client_$c.sql"
done

read -r exp_events exp_customers exp_revenue < <(python3 -c "
import json,sys; e=json.load(open('$dir/expected.json')); print(e['events'], e['customers'], e['revenue'])")

for ((r = 1; r <= REPEATS; r++)); do
  "${PSQL[@]}" -c "TRUNCATE customer_agg" -c "CHECKPOINT"
  t0=$(date +%s.%N)
  pids=()
  for ((c = 0; c < CLIENTS; c++)); do
    "${PSQL[@]}" -f "$tmp/client_$c.sql" >"$tmp/client_$c.log" 2>&1 &
    pids+=($!)
  done
  ok=true
  for p in "${pids[@]}"; do wait "$p" || ok=false; done
  t1=$(date +%s.%N)
  $ok || { cat "$tmp"/client_*.log >&2; exit 1; }
  read -r customers events revenue < <("${PSQL[@]}" -tA -F ' ' -c \
    "SELECT count(*), coalesce(sum(events),0), round(coalesce(sum(revenue),0)::numeric, 2) FROM customer_agg")
  verify=$(python3 -c "print('true' if $events == $exp_events and $customers == $exp_customers and abs($revenue - $exp_revenue) < 1 else 'false')")
  line=$(python3 -c "
import json; s=$t1-$t0
print(json.dumps({'system':'postgresql','version':'$version','clients':$CLIENTS,'batch_files':${#batches[@]},
  'events':$events,'customers':$customers,'seconds':round(s,3),'events_per_s':round($exp_events/s),
  'verify_ok':'$verify'=='true','repeat':$r}))")
  echo "$line"
  echo "$line" >>"$OUT"
  [ "$verify" = true ] || { echo "postgresql: aggregates do not match expected.json" >&2; exit 1; }
done
