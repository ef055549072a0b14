#!/usr/bin/env bash
# make bench, part 4: imgvault-gateway serving thumbnails through share links
# against nginx serving the same thumbnails as plain files from disk, with
# the same wrk load (connections, threads, duration), in one run.  Prints
# requests/s, p50 and p99 latency, the ratio, and the gateway's peak RSS.
#
# The abuse limits are lifted for the run (one client address sends all the
# load); everything else is the gateway as deployed.
set -euo pipefail

BUILD=${1:?usage: bench/gateway.sh BUILD_DIR CORPUS}
CORPUS=${2:?usage: bench/gateway.sh BUILD_DIR CORPUS}
CONNS=${IMGVAULT_BENCH_CONNS:-64}
DURATION=${IMGVAULT_BENCH_SECONDS:-10}
WORK=$(mktemp -d /var/tmp/imgvault-gbench.XXXXXX)
SOCK=$(mktemp -d /tmp/ivgb.XXXXXX)
MNT=$WORK/mnt
DPID= GPID= NPID=

cleanup() {
  [[ -n $GPID ]] && kill "$GPID" 2>/dev/null && wait "$GPID" 2>/dev/null
  [[ -n $NPID ]] && kill "$NPID" 2>/dev/null && wait "$NPID" 2>/dev/null
  [[ -n $DPID ]] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
  mountpoint -q "$MNT" 2>/dev/null && fusermount3 -u -z "$MNT"
  rm -rf "$WORK" "$SOCK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
GW_PORT=$(port) NG_PORT=$(port)
IV=("$BUILD/imgvault" -s "$WORK/store" --passphrase-file "$WORK/pass" -q --no-progress)

printf 'bench passphrase\n' >"$WORK/pass"
"$BUILD/imgvault" init "$WORK/store" --passphrase-file "$WORK/pass" --kdf interactive >/dev/null
"${IV[@]}" import --album corpus "$CORPUS" >/dev/null || true   # waits for the thumbnails
"${IV[@]}" config "share.base-url=http://127.0.0.1:$GW_PORT" >/dev/null

mkdir -p "$MNT" "$WORK/www/t"
"$BUILD/imgvaultd" "$WORK/store" "$MNT" --passphrase-file "$WORK/pass" --control "$SOCK/ctl" -f \
  2>"$WORK/imgvaultd.log" &
DPID=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
"$BUILD/imgvault-gateway" --listen "127.0.0.1:$GW_PORT" --control "$SOCK/ctl" \
  --keys "$SOCK/signing-keys.pub" --rate 1000000 --burst 1000000 --max-per-ip 4096 ${IMGVAULT_GW_ARGS:-} \
  2>"$WORK/gateway.log" &
GPID=$!

# The same thumbnails, as plain files for nginx, and one link for each.
: >"$WORK/gw.paths"
: >"$WORK/ng.paths"
i=0
for f in "$MNT"/corpus/thumb/*; do
  i=$((i + 1))
  name=$(basename "$f")
  cp "$f" "$WORK/www/t/$i"
  url=$("${IV[@]}" share "corpus/$name" --variant thumb --ttl 1h | head -1)
  echo "/s/${url##*/s/}" >>"$WORK/gw.paths"
  echo "/t/$i" >>"$WORK/ng.paths"
done
n=$(wc -l <"$WORK/gw.paths")
bytes=$(du -sb "$WORK/www/t" | cut -f1)

cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/tmp;
  proxy_temp_path $WORK/tmp;
  fastcgi_temp_path $WORK/tmp;
  uwsgi_temp_path $WORK/tmp;
  scgi_temp_path $WORK/tmp;
  server {
    listen 127.0.0.1:$NG_PORT;
    root $WORK/www;
    location /t/ { default_type image/jpeg; }
  }
}
CONF
mkdir -p "$WORK/tmp"
chmod 755 "$WORK" && chmod -R a+rX "$WORK/www"   # nginx's workers are not root
nginx -c "$WORK/nginx.conf" -g 'daemon off;' 2>"$WORK/nginx.log" &
NPID=$!

cat >"$WORK/paths.lua" <<'LUA'
local paths, i = {}, 0
function init(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  i = math.random(#paths)
end
function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
LUA

for _ in $(seq 50); do
  curl -sf "http://127.0.0.1:$GW_PORT/healthz" >/dev/null &&
    curl -sf -o /dev/null "http://127.0.0.1:$NG_PORT/t/1" && break
  sleep 0.1
done
# Every link works before the run: a benchmark of 404s would be worthless.
first=$(head -1 "$WORK/gw.paths")
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GW_PORT$first") == 200 ]] ||
  { echo "gateway does not serve the links" >&2; cat "$WORK/gateway.log" >&2; exit 1; }
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NG_PORT/t/1") == 200 ]] ||
  { echo "nginx does not serve the files" >&2; cat "$WORK/nginx.err" >&2; exit 1; }

run_wrk() { # URL PATHS -> "rps p50ms p99ms non2xx"
  wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/paths.lua" "$1" -- "$2" 2>&1 |
    awk '/Requests\/sec/ {rps=$2}
         /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
         /Non-2xx/ {bad=$5}
         function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
         END {printf "%s %.3f %.3f %d\n", rps, ms(p50), ms(p99), bad + 0}'
}

echo "$n thumbnails, $((bytes / n)) bytes on average; wrk -t2 -c$CONNS -d${DURATION}s"
read -r ng_rps ng_p50 ng_p99 ng_bad < <(run_wrk "http://127.0.0.1:$NG_PORT" "$WORK/ng.paths")
read -r gw_rps gw_p50 gw_p99 gw_bad < <(run_wrk "http://127.0.0.1:$GW_PORT" "$WORK/gw.paths")
gw_rss=$(awk '/VmHWM/ {print $2}' "/proc/$GPID/status")
d_rss=$(awk '/VmHWM/ {print $2}' "/proc/$DPID/status")
awk -v nr="$ng_rps" -v n50="$ng_p50" -v n99="$ng_p99" -v nb="$ng_bad" \
    -v gr="$gw_rps" -v g50="$gw_p50" -v g99="$gw_p99" -v gb="$gw_bad" \
    -v rss="$gw_rss" -v drss="$d_rss" -v c="$CONNS" 'BEGIN{
  printf "%-34s %11s %9s %9s %8s\n", "", "requests/s", "p50 ms", "p99 ms", "non-2xx"
  printf "%-34s %11.0f %9.2f %9.2f %8d\n", "nginx, plain files", nr, n50, n99, nb
  printf "%-34s %11.0f %9.2f %9.2f %8d\n", "imgvault-gateway, signed links", gr, g50, g99, gb
  printf "gateway vs nginx: %.2fx requests/s at %d connections (goal: 0.50x or more), p99 %.2f ms (goal: under 20 ms)\n", gr / nr, c, g99
  printf "gateway peak RSS: %.1f MiB (goal: under 32 MiB); imgvaultd peak RSS %.1f MiB\n", rss / 1024, drss / 1024
}'
grep -c '"GET /s/…" 200' "$WORK/gateway.log" | awk '{print "gateway access log: " $1 " responses 200"}'
