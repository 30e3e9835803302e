#!/usr/bin/env bash
# Redis baseline: pipelined hash updates of the same per-customer aggregates
# (HINCRBY count, HINCRBYFLOAT revenue, ZADD GT last_seen), AOF on with
# appendfsync always (durable per reply batch, like rapportd's acks) or
# everysec (may lose up to a second).
#
#   bench/redis_baseline.sh CONVERTED_DIR --fsync always|everysec [--repeats R] [--out FILE]
#
# CONVERTED_DIR is what bench/convert_events.py wrote (redis/part_*.resp,
# expected.json). Starts its own redis-server (temp dir, loopback, a free
# port), runs R repeats on an empty database each (FLUSHALL, AOF rewritten),
# one `redis-cli --pipe` per part in parallel, checks the aggregates, stops
# the server. Prints (and appends to --out) one JSON line per repeat.
set -euo pipefail
dir=$1; shift
FSYNC=always REPEATS=3 OUT=/dev/null
while [ $# -gt 0 ]; do
  case $1 in
    --fsync) FSYNC=$2; shift 2 ;;
    --repeats) REPEATS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
dir=$(realpath "$dir")
tmp=$(mktemp -d /tmp/rapport-redis.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rpid=""
stop() {
  [ -n "$rpid" ] && { redis-cli -p "$PORT" shutdown nosave >/dev/null 2>&1 || kill "$rpid" 2>/dev/null; wait "$rpid" 2>/dev/null || true; }
  rm -rf "$tmp"
}
trap stop EXIT

redis-server --bind 127.0.0.1 --port "$PORT" --dir "$tmp" --appendonly yes --appendfsync "$FSYNC" --save "" \
  --daemonize no --logfile "$tmp/redis.log" &
rpid=$!
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
version=$(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')
mapfile -t parts < <(ls "$dir"/redis/part_*.resp | sort)
read -r exp_events exp_customers exp_revenue < <(python3 -c "
import json; e=json.load(open('$dir/expected.json')); print(e['events'], e['customers'], e['revenue'])")

# Sums the aggregates server-side (SCAN inside a script).
VERIFY='local c="0" local n=0 local s=0 local r=0
repeat
  local res = redis.call("SCAN", c, "MATCH", "c:*", "COUNT", 1000)
  c = res[1]
  for _, k in ipairs(res[2]) do
    n = n + 1
    s = s + tonumber(redis.call("HGET", k, "n"))
    r = r + tonumber(redis.call("HGET", k, "r") or "0")
  end
until c == "0"
return {n, s, string.format("%.2f", r), redis.call("ZCARD", "last_seen")}'

for ((r = 1; r <= REPEATS; r++)); do
  redis-cli -p "$PORT" flushall sync >/dev/null
  redis-cli -p "$PORT" bgrewriteaof >/dev/null
  sleep 1
  t0=$(date +%s.%N)
  pids=()
  for k in "${!parts[@]}"; do
    redis-cli -p "$PORT" --pipe <"${parts[$k]}" >"$tmp/pipe_$k.log" 2>&1 &
    pids+=($!)
  done
  ok=true
  for p in "${pids[@]}"; do wait "$p" || ok=false; done
  t1=$(date +%s.%N)
  if ! $ok || grep -q 'errors: [1-9]' "$tmp"/pipe_*.log; then cat "$tmp"/pipe_*.log >&2; exit 1; fi
  mapfile -t v < <(redis-cli -p "$PORT" eval "$VERIFY" 0)
  customers=${v[0]} events=${v[1]} revenue=${v[2]} zcard=${v[3]}
  verify=$(python3 -c "print('true' if $events == $exp_events and $customers == $exp_customers and $zcard == $exp_customers and abs($revenue - $exp_revenue) < 1 else 'false')")
  line=$(python3 -c "
import json; s=$t1-$t0
print(json.dumps({'system':'redis','version':'$version','appendfsync':'$FSYNC','clients':${#parts[@]},
  'events':$events,'customers':$customers,'seconds':round(s,3),'events_per_s':round($exp_events/s),
  'verify_ok':'$verify'=='true','repeat':$r}))")
  echo "$line"
  echo "$line" >>"$OUT"
  [ "$verify" = true ] || { echo "redis: aggregates do not match expected.json ($customers $events $revenue $zcard)" >&2; exit 1; }
done
