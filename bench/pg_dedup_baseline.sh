#!/usr/bin/env bash
# PostgreSQL doing rapportd's job WITH dedup (issue 13's table, last row): the
# raw NDJSON lines COPYed into a staging table, parsed in SQL (jsonb), new
# (customer_id, event_id) keys inserted into a dedup table (ON CONFLICT DO
# NOTHING), and only the events that were new upserted into the per-customer
# aggregates (count, revenue, last_seen); --batch lines per transaction
# (default 10 000), ONE connection, synchronous_commit=on (durable like
# rapportd's acks). Unlike bench/pg_baseline.sh (aggregate-only, pre-parsed
# CSV, no dedup), nothing is done for it before the clock starts but cutting
# the file into batches.
#
#   bench/pg_dedup_baseline.sh EVENTS.ndjson EXPECTED.json [--batch N] [--repeats R] [--out FILE]
#
# EXPECTED.json is what bench/convert_events.py wrote for the same events
# (events, customers, revenue): checked after every repeat. Starts its own
# PostgreSQL (initdb in a temp dir, loopback, a free port; as user postgres
# when run as root), runs R repeats on empty tables, stops the server and
# removes the temp dir. Prints (and appends to --out) one JSON line per repeat.
set -euo pipefail
events=$(realpath "$1") expected=$(realpath "$2"); shift 2
BATCH=10000 REPEATS=3 OUT=/dev/null
while [ $# -gt 0 ]; do
  case $1 in
    --batch) BATCH=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
tmp=$(mktemp -d /tmp/rapport-pgdedup.XXXXXX)
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
# The same settings as bench/pg_baseline.sh: durable commits, room for WAL.
SETTINGS="-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$tmp -c fsync=on \
-c synchronous_commit=on -c full_page_writes=on -c shared_buffers=1GB -c wal_buffers=64MB -c max_wal_size=8GB \
-c checkpoint_timeout=30min -c work_mem=64MB -c maintenance_work_mem=256MB"
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -o "$SETTINGS" -w start >/dev/null
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
"${PSQL[@]}" -c "CREATE TABLE seen (customer_id text NOT NULL, event_id text NOT NULL, PRIMARY KEY (customer_id, event_id))" \
  -c "CREATE TABLE customer_agg (customer_id text PRIMARY KEY, events bigint NOT NULL,
      revenue double precision NOT NULL, last_seen_ms bigint NOT NULL)"
version=$("${PSQL[@]}" -tA -c "SHOW server_version")

# The batches: the raw lines, cut (not parsed). COPY in CSV with a quote and delimiter byte that JSON never holds
# unescaped takes every line as one text value, backslashes and all.
mkdir -p "$tmp/batches"
split -l "$BATCH" -a 6 -d "$events" "$tmp/batches/b_"
chmod -R a+r "$tmp/batches"
mapfile -t batches < <(ls "$tmp"/batches/b_* | sort)
{
  echo "CREATE TEMP TABLE raw (line text) ON COMMIT DELETE ROWS;"
  for b in "${batches[@]}"; do
    echo "BEGIN;"
    echo "\\copy raw FROM '$b' WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"
    cat <<'SQL'
WITH parsed AS (
  SELECT DISTINCT ON (j->>'customer_id', j->>'event_id')
         j->>'customer_id' AS customer_id, j->>'event_id' AS event_id,
         CASE WHEN jsonb_typeof(j->'ts') = 'number' THEN (j->>'ts')::bigint
              ELSE (extract(epoch FROM (j->>'ts')::timestamptz) * 1000)::bigint END AS ts_ms,
         CASE j->>'type' WHEN 'purchase' THEN coalesce((j->>'amount')::float8, 0)
                         WHEN 'refund' THEN -coalesce((j->>'amount')::float8, 0) ELSE 0 END AS amount
  FROM (SELECT line::jsonb AS j FROM raw WHERE line <> '') s),
new AS (
  INSERT INTO seen (customer_id, event_id) SELECT customer_id, event_id FROM parsed
  ON CONFLICT DO NOTHING RETURNING customer_id, event_id)
INSERT INTO customer_agg AS a
  SELECT p.customer_id, count(*), sum(p.amount), max(p.ts_ms) FROM parsed p JOIN new n USING (customer_id, event_id)
  GROUP BY p.customer_id ORDER BY p.customer_id
  ON CONFLICT (customer_id) DO UPDATE SET events = a.events + excluded.events,
  revenue = a.revenue + excluded.revenue, last_seen_ms = greatest(a.last_seen_ms, excluded.last_seen_ms);
COMMIT;
SQL
  done
} >"$tmp/client.sql"

read -r exp_events exp_customers exp_revenue < <(python3 -c "
import json; e=json.load(open('$expected')); print(e['events'], e['customers'], e['revenue'])")

for ((r = 1; r <= REPEATS; r++)); do
  "${PSQL[@]}" -c "TRUNCATE customer_agg, seen" -c "CHECKPOINT"
  t0=$(date +%s.%N)
  "${PSQL[@]}" -f "$tmp/client.sql" >"$tmp/client.log" 2>&1 || { cat "$tmp/client.log" >&2; exit 1; }
  t1=$(date +%s.%N)
  read -r customers events revenue < <("${PSQL[@]}" -tA -F ' ' -c \
    "SELECT count(*), coalesce(sum(events),0), round(coalesce(sum(revenue),0)::numeric, 2) FROM customer_agg")
  verify=$(python3 -c "print('true' if $events == $exp_events and $customers == $exp_customers and abs($revenue - $exp_revenue) < 1 else 'false')")
  line=$(python3 -c "
import json; s=$t1-$t0
print(json.dumps({'system':'postgresql_dedup','version':'$version','clients':1,'batch':$BATCH,
  'batch_files':${#batches[@]},'events':$events,'customers':$customers,'seconds':round(s,3),
  'events_per_s':round($exp_events/s),'verify_ok':'$verify'=='true','repeat':$r}))")
  echo "$line"
  echo "$line" >>"$OUT"
  [ "$verify" = true ] || { echo "postgresql (dedup): aggregates do not match $expected" >&2; exit 1; }
done
