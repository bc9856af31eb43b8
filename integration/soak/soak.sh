#!/usr/bin/env bash
# Soak run (issue #10): the real `authmilter serve` binary with the SQLite
# store on (sync group commit) takes the mixed benchmark corpus
# (integration/bench) from milterload for a long time at a share of its
# measured maximum throughput, with a share of the connections dropped at a
# random packet. RSS (VmRSS), goroutines (go_goroutines on the metrics
# endpoint) and open fds (/proc/PID/fd) are sampled; at the end soakcheck
# checks that every acknowledged message has its record and that the
# figures stayed flat. Exit status 0 only if both hold.
#
#   integration/soak/soak.sh                       # 30 minutes
#   SOAK_DURATION=30s SOAK_MAX_DURATION=8s SOAK_SAMPLE=3s integration/soak/soak.sh   # short (CI)
#
# Environment (defaults):
#   SOAK_DURATION=30m      the paced run
#   SOAK_MAX_DURATION=30s  the unpaced run that measures the maximum
#   SOAK_LOAD=0.8          paced rate = SOAK_LOAD x measured maximum
#   SOAK_DROP=0.01         share of connections dropped at a random packet
#   SOAK_SESSIONS=16       concurrent sessions (both runs)
#   SOAK_PERCONN=10        messages per connection
#   SOAK_SAMPLE=60s        sampling interval
#   SOAK_CORPUS=2000       corpus size (integration/bench/gen-corpus.sh)
#   SOAK_BIN=              a prebuilt authmilter binary (default: built from this tree)
#   SOAK_OUT=              output directory (default: a new /tmp/authmilter-soak.XXXXXX)
# Loopback only: the zone server, the milter and the metrics endpoint
# listen on 127.0.0.1 ports picked at start.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
DURATION="${SOAK_DURATION:-30m}"
MAXDUR="${SOAK_MAX_DURATION:-30s}"
LOAD="${SOAK_LOAD:-0.8}"
DROP="${SOAK_DROP:-0.01}"
SESSIONS="${SOAK_SESSIONS:-16}"
PERCONN="${SOAK_PERCONN:-10}"
SAMPLE="${SOAK_SAMPLE:-60s}"
OUT="${SOAK_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/authmilter-soak.XXXXXX")}"
mkdir -p "$OUT/bin" "$OUT/state"

secs() { # 90s, 30m, 1h, 45 -> seconds
	case "$1" in
	*h) echo $((${1%h} * 3600)) ;; *m) echo $((${1%m} * 60)) ;; *s) echo "${1%s}" ;; *) echo "$1" ;;
	esac
}
sample_every=$(secs "$SAMPLE")
log() { echo "soak: $(date -u +%H:%M:%S) $*" >&2; }

corpus="$("$repo/integration/bench/gen-corpus.sh" "${SOAK_CORPUS:-2000}")"
log "corpus $corpus, output $OUT"
(cd "$repo" && go build -o "$OUT/bin/" ./integration/cmd/milterload ./integration/bench/zonedns ./integration/soak/soakcheck)
if [ -n "${SOAK_BIN:-}" ]; then
	cp "$SOAK_BIN" "$OUT/bin/authmilter"
else
	(cd "$repo" && go build -o "$OUT/bin/authmilter" ./cmd/authmilter)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
dns_port=$(free_port)
milter_port=$(free_port)
metrics_port=$(free_port)

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

"$OUT/bin/zonedns" -zone "$corpus/zone.txt" -listen "127.0.0.1:$dns_port" 2> "$OUT/zonedns.log" &
pids+=($!)

cat > "$OUT/authmilter.toml" <<TOML
authserv_id = "mx.rcpt.test"
[milter]
listen = ["inet:$milter_port@127.0.0.1"]
[dns]
servers = ["127.0.0.1:$dns_port"]
[metrics]
listen = "127.0.0.1:$metrics_port"
[store]
backend = "sqlite"
dir = "$OUT/state"
commit = "sync"
[log]
level = "warn"
TOML
"$OUT/bin/authmilter" check-config "$OUT/authmilter.toml" >&2
"$OUT/bin/authmilter" serve -config "$OUT/authmilter.toml" 2> "$OUT/authmilter.log" &
daemon=$!
pids+=($daemon)
started=$(date +%s)
# get PATH: the body of a 200 answer from the metrics endpoint (bash's
# /dev/tcp, no curl needed).
get() {
	local reply
	exec 3<> "/dev/tcp/127.0.0.1/$metrics_port" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3
	reply=$(cat <&3)
	exec 3<&-
	case "$reply" in "HTTP/1."?" 200 "*) ;; *) return 1 ;; esac
	printf '%s\n' "${reply#*$'\r\n\r\n'}"
}
for _ in $(seq 100); do
	get /readyz > /dev/null 2>&1 && break
	sleep 0.1
done
get /readyz > /dev/null

printf '# time\tseconds\tphase\trss_kib\tgoroutines\tfds\n' > "$OUT/samples.tsv"
sample() {
	local rss gor fds
	rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$daemon/status")
	fds=$(find "/proc/$daemon/fd" -mindepth 1 -maxdepth 1 | wc -l)
	gor=$(get /metrics | awk '$1 == "go_goroutines" {print $2}')
	case "$1" in idle-*) ls -l "/proc/$daemon/fd" > "$OUT/fds-$1.txt" ;; esac # what they are, if they grew
	printf '%s\t%d\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" $(($(date +%s) - started)) "$1" "$rss" "$gor" "$fds" | tee -a "$OUT/samples.tsv" >&2
}
sample idle-start

load=("$OUT/bin/milterload" -corpus "$corpus" -milter "inet:$milter_port@127.0.0.1" -c "$SESSIONS" -m "$PERCONN" -acked "$OUT/acked.tsv" -json)
log "maximum: $MAXDUR unpaced, $SESSIONS sessions"
"${load[@]}" -qid-prefix M -warmup 3s -d "$MAXDUR" > "$OUT/max.json"
sample max
max=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["messages_per_second"])' "$OUT/max.json")
rate=$(python3 -c "print(round($max * $LOAD, 1))")
log "maximum $max msg/s; soak at $rate msg/s for $DURATION, drop $DROP"

touch "$OUT/.loading"
(
	rc=0
	"${load[@]}" -qid-prefix L -rate "$rate" -drop "$DROP" -d "$DURATION" > "$OUT/load.json" 2> "$OUT/load.err" || rc=$?
	echo "$rc" > "$OUT/load.rc"
	rm -f "$OUT/.loading"
) &
loader=$!
pids+=($loader)
next=$(($(date +%s) + sample_every)) # on a fixed schedule, however long a sample takes
while [ -e "$OUT/.loading" ]; do
	while [ -e "$OUT/.loading" ] && [ "$(date +%s)" -lt "$next" ]; do
		sleep 0.2
	done
	next=$((next + sample_every))
	[ -e "$OUT/.loading" ] && sample load
done
wait "$loader"
if [ "$(cat "$OUT/load.rc")" != 0 ]; then
	log "milterload failed: $(cat "$OUT/load.err")"
	exit 1
fi
# Idle again: wait (up to 30 s) for the sessions' goroutines to end; a
# leak stays and fails the idle comparison.
base=$(awk -F'\t' '$3 == "idle-start" {print $5}' "$OUT/samples.tsv")
for _ in $(seq 30); do
	sleep 1
	g=$(get /metrics | awk '$1 == "go_goroutines" {print $2}')
	[ "${g:-0}" -le $((base + 4)) ] && break
done
sample idle-end

kill -TERM "$daemon"
wait "$daemon" || { log "authmilter exited with $?"; exit 1; }
if grep -q 'level=ERROR' "$OUT/authmilter.log"; then
	log "errors in the daemon's log:"
	grep 'level=ERROR' "$OUT/authmilter.log" | head -5 >&2
fi
"$OUT/bin/soakcheck" -corpus "$corpus" -acked "$OUT/acked.tsv" -state "$OUT/state" -samples "$OUT/samples.tsv" \
	-max "$OUT/max.json" -load "$OUT/load.json" -summary "$OUT/summary.json" > "$OUT/summary.txt" || rc=$?
cat "$OUT/summary.txt"
log "output in $OUT"
exit "${rc:-0}"
