#!/usr/bin/env bash
# Side-by-side benchmark: authmilter against the OpenDKIM (verify) ->
# OpenDMARC chain, same corpus, same DNS data, same concurrency, both over
# unix sockets, rounds alternating, everything (zone server, milters, load
# generator) inside a private network namespace whose resolv.conf points
# at the zone server on 127.0.0.1:53. Needs root (ip netns). Prints per
# round msgs/s, latency, CPU seconds per 1000 messages (utime+stime of the
# milter processes from /proc/PID/stat) and peak RSS (VmHWM), then the
# medians and the ratio.
#
#   integration/bench/compare.sh                 # 3 rounds each, 25 s, -c 16 -m 10
#   ROUNDS=3 DURATION=25s SESSIONS=16 PERCONN=10 COUNT=2000 integration/bench/compare.sh
#   SRC=/path/to/checkout integration/bench/compare.sh   # build authmilter from another tree
#   STORE_OFF=1 integration/bench/compare.sh     # also a second authmilter with [store] backend = "off",
#                                                # as a third side in the same rounds
#   HALF=1 integration/bench/compare.sh          # then each authmilter side once more, paced at half
#                                                # its median throughput (latency at 50% load)
#
# Results: $RUN/results.json and $RUN/results.md (RUN defaults to
# ${TMPDIR:-/tmp}/authmilter-bench/run).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-25s}"
WARMUP="${WARMUP:-3s}"
SESSIONS="${SESSIONS:-16}"
PERCONN="${PERCONN:-10}"
COUNT="${COUNT:-2000}"
STORE_OFF="${STORE_OFF:-}"
HALF="${HALF:-}"
RUN="${RUN:-${TMPDIR:-/tmp}/authmilter-bench/run}"
NS="amb$$"

[ "$(id -u)" -eq 0 ] || { echo "compare.sh: needs root (network namespace)" >&2; exit 1; }
need=()
command -v opendkim >/dev/null 2>&1 || need+=(opendkim)
command -v opendmarc >/dev/null 2>&1 || need+=(opendmarc)
[ -f /usr/share/publicsuffix/public_suffix_list.dat ] || need+=(publicsuffix)
if [ ${#need[@]} -gt 0 ]; then
	echo "== installing ${need[*]}" >&2
	apt-get update -q >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >&2
fi

rm -rf "$RUN"
mkdir -p "$RUN/bin"
echo "== building" >&2
(cd "${SRC:-$repo}" && go build -o "$RUN/bin/" ./cmd/authmilter)
(cd "$repo" && go build -o "$RUN/bin/" ./integration/cmd/milterload ./integration/bench/zonedns)
echo "authmilter $("$RUN/bin/authmilter" version)" >&2
corpus="$("$here/gen-corpus.sh" "$COUNT")"
for f in opendkim.conf opendmarc.conf authmilter.toml; do
	sed "s|@RUN@|$RUN|g" "$here/$f" > "$RUN/$f"
done
if [ -n "$STORE_OFF" ]; then
	# The same configuration, its own socket, and no records.
	sed -e 's|authmilter.sock|authmilter-nostore.sock|' "$RUN/authmilter.toml" > "$RUN/authmilter-nostore.toml"
	printf '\n[store]\nbackend = "off"\n' >> "$RUN/authmilter-nostore.toml"
fi

pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for _ in $(seq 50); do
		alive=0
		for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "/etc/netns/$NS"
}
trap cleanup EXIT
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
# A second loopback address for OpenDKIM's libunbound, which refuses
# 127.0.0.0/8 (see opendkim.conf).
ip netns exec "$NS" ip addr add 10.53.0.1/32 dev lo
mkdir -p "/etc/netns/$NS"
echo "nameserver 127.0.0.1" > "/etc/netns/$NS/resolv.conf"
nsx() { ip netns exec "$NS" "$@"; }

# ip netns exec execs the command: $! is the daemon's own PID (not with
# the nsx function, which would fork a subshell).
ip netns exec "$NS" "$RUN/bin/zonedns" -zone "$corpus/zone.txt" -listen 127.0.0.1:53,10.53.0.1:53 2> "$RUN/zonedns.log" &
dns_pid=$!; pids+=("$dns_pid")
ip netns exec "$NS" /usr/sbin/opendkim -f -x "$RUN/opendkim.conf" 2> "$RUN/opendkim.log" &
odkim_pid=$!; pids+=("$odkim_pid")
ip netns exec "$NS" /usr/sbin/opendmarc -f -c "$RUN/opendmarc.conf" 2> "$RUN/opendmarc.log" &
odmarc_pid=$!; pids+=("$odmarc_pid")
ip netns exec "$NS" "$RUN/bin/authmilter" serve -config "$RUN/authmilter.toml" 2> "$RUN/authmilter.log" &
am_pid=$!; pids+=("$am_pid")
sockets=(opendkim.sock opendmarc.sock authmilter.sock)
sides=("opendkim.sock opendmarc.sock" "authmilter.sock")
if [ -n "$STORE_OFF" ]; then
	ip netns exec "$NS" "$RUN/bin/authmilter" serve -config "$RUN/authmilter-nostore.toml" 2> "$RUN/authmilter-nostore.log" &
	amns_pid=$!; pids+=("$amns_pid")
	sockets+=(authmilter-nostore.sock)
	sides+=("authmilter-nostore.sock")
fi
for s in "${sockets[@]}"; do
	for _ in $(seq 100); do [ -S "$RUN/$s" ] && break; sleep 0.1; done
	[ -S "$RUN/$s" ] || { echo "compare.sh: $s did not appear; logs in $RUN" >&2; tail "$RUN"/*.log >&2; exit 1; }
done
nsx getent hosts mx.org00.example >/dev/null || { echo "compare.sh: the namespace's resolver does not answer" >&2; exit 1; }
# Smoke test: both sides answer every message (a daemon that died after
# creating its socket, or a broken configuration, stops the run here).
for side in "${sides[@]}"; do
	args=()
	for s in $side; do args+=(-milter "unix:$RUN/$s"); done
	if ! nsx "$RUN/bin/milterload" -corpus "$corpus" "${args[@]}" -c 4 -m 5 -n 100 > "$RUN/smoke.txt" 2>&1 ||
		grep -q '^error' "$RUN/smoke.txt"; then
		echo "compare.sh: smoke test of $side failed:" >&2
		cat "$RUN/smoke.txt" >&2
		tail -n 5 "$RUN"/*.log >&2
		exit 1
	fi
done

ticks() { # utime+stime of the given PIDs, in clock ticks
	local t=0 p
	for p in "$@"; do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$t"
}
hwm() { # sum of VmHWM in KiB
	local t=0 p
	for p in "$@"; do
		t=$((t + $(awk '/^VmHWM:/ {print $2}' "/proc/$p/status")))
	done
	echo "$t"
}
hz=$(getconf CLK_TCK)

round() { # name round sockets... ; appends one JSON line to $RUN/rounds.jsonl
	# RATE (messages per second, all sessions) paces the load when set.
	local name=$1 r=$2; shift 2
	local procs args=() s
	case "$name" in
	chain) procs=("$odkim_pid" "$odmarc_pid") ;;
	authmilter-nostore*) procs=("$amns_pid") ;;
	*) procs=("$am_pid") ;;
	esac
	for s in "$@"; do args+=(-milter "unix:$RUN/$s"); done
	local t0 d0 out t1 d1
	t0=$(ticks "${procs[@]}"); d0=$(ticks "$dns_pid")
	nsx "$RUN/bin/milterload" -corpus "$corpus" "${args[@]}" -c "$SESSIONS" -m "$PERCONN" \
		-d "$DURATION" -warmup "$WARMUP" ${RATE:+-rate "$RATE"} -json > "$RUN/$name-$r.json"
	t1=$(ticks "${procs[@]}"); d1=$(ticks "$dns_pid")
	python3 - "$RUN/$name-$r.json" "$name" "$r" "$((t1 - t0))" "$((d1 - d0))" "$hz" "$(hwm "${procs[@]}")" >> "$RUN/rounds.jsonl" <<'PY'
import json, sys
path, name, r, ticks, dticks, hz, hwm = sys.argv[1:]
rep = json.load(open(path))
print(json.dumps({"side": name, "round": int(r), "report": rep, "cpu_s": int(ticks) / int(hz),
                  "dns_cpu_s": int(dticks) / int(hz), "hwm_kib": int(hwm)}))
PY
}

: > "$RUN/rounds.jsonl"
echo "== $ROUNDS rounds each, $DURATION per round (+$WARMUP warm-up), -c $SESSIONS -m $PERCONN, corpus $corpus" >&2
for r in $(seq "$ROUNDS"); do
	echo "-- round $r: OpenDKIM -> OpenDMARC" >&2
	round chain "$r" opendkim.sock opendmarc.sock
	echo "-- round $r: authmilter" >&2
	round authmilter "$r" authmilter.sock
	if [ -n "$STORE_OFF" ]; then
		echo "-- round $r: authmilter, store off" >&2
		round authmilter-nostore "$r" authmilter-nostore.sock
	fi
done
if [ -n "$HALF" ]; then
	for side in authmilter ${STORE_OFF:+authmilter-nostore}; do
		rate=$(python3 -c '
import json, statistics, sys
r = [json.loads(l) for l in open(sys.argv[1])]
print("%.0f" % (statistics.median(x["report"]["messages_per_second"] for x in r if x["side"] == sys.argv[2]) / 2))' "$RUN/rounds.jsonl" "$side")
		echo "-- half load: $side paced at $rate msgs/s" >&2
		RATE=$rate round "$side-half" 1 "$side.sock"
	done
fi

python3 - "$RUN" "$DURATION" "$WARMUP" <<'PY'
import json, statistics, sys, os
run, duration, warmup = sys.argv[1:]
def secs(s):
    return float(s[:-2]) / 1000 if s.endswith("ms") else float(s[:-1]) * (60 if s.endswith("m") else 1)
rows = [json.loads(l) for l in open(os.path.join(run, "rounds.jsonl"))]
measured = secs(duration)
total = measured + secs(warmup)
lines = ["| side | round | msgs/s | p50 ms | p90 ms | p99 ms | CPU s / 1000 msgs | DNS server CPU s / 1000 | peak RSS MiB | errors | accept / reject / tempfail / quarantine |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
agg = {}
for x in rows:
    rep = x["report"]
    # CPU was sampled over warm-up + run; messages in the warm-up are
    # estimated at the measured rate (warm-up is short and also warm).
    msgs_all = rep["messages_per_second"] * total
    cpu = 1000 * x["cpu_s"] / msgs_all if msgs_all else 0
    dns = 1000 * x["dns_cpu_s"] / msgs_all if msgs_all else 0
    v = rep["verdicts"]
    lines.append("| %s | %d | %.0f | %.2f | %.2f | %.2f | %.2f | %.3f | %.1f | %d | %d / %d / %d / %d |" % (
        x["side"], x["round"], rep["messages_per_second"], rep["latency"]["p50_ms"], rep["latency"]["p90_ms"],
        rep["latency"]["p99_ms"], cpu, dns, x["hwm_kib"] / 1024, rep["errors"],
        v.get("accept", 0), v.get("reject", 0), v.get("tempfail", 0), v.get("quarantine", 0)))
    a = agg.setdefault(x["side"], {"rate": [], "p50": [], "p99": [], "cpu": [], "hwm": 0})
    a["rate"].append(rep["messages_per_second"]); a["p50"].append(rep["latency"]["p50_ms"])
    a["p99"].append(rep["latency"]["p99_ms"]); a["cpu"].append(cpu); a["hwm"] = max(a["hwm"], x["hwm_kib"] / 1024)
med = {k: {m: statistics.median(v[m]) for m in ("rate", "p50", "p99", "cpu")} | {"hwm": v["hwm"]} for k, v in agg.items()}
lines += ["", "| median | msgs/s | p50 ms | p99 ms | CPU s / 1000 msgs | peak RSS MiB |", "|---|---|---|---|---|---|"]
for k in ("chain", "authmilter", "authmilter-nostore", "authmilter-half", "authmilter-nostore-half"):
    if k in med:
        m = med[k]
        lines.append("| %s | %.0f | %.2f | %.2f | %.2f | %.1f |" % (k, m["rate"], m["p50"], m["p99"], m["cpu"], m["hwm"]))
if "chain" in med and "authmilter" in med:
    c, a = med["chain"], med["authmilter"]
    lines.append("")
    lines.append("ratio authmilter / chain: throughput %.2fx, p50 %.2fx, p99 %.2fx, CPU per message %.2fx, peak RSS %.2fx" % (
        a["rate"] / c["rate"], a["p50"] / c["p50"], a["p99"] / c["p99"], a["cpu"] / c["cpu"], a["hwm"] / c["hwm"]))
if "chain" in med and "authmilter-nostore" in med:
    c, a = med["chain"], med["authmilter-nostore"]
    lines.append("ratio authmilter (store off) / chain: throughput %.2fx, p50 %.2fx, p99 %.2fx, CPU per message %.2fx, peak RSS %.2fx" % (
        a["rate"] / c["rate"], a["p50"] / c["p50"], a["p99"] / c["p99"], a["cpu"] / c["cpu"], a["hwm"] / c["hwm"]))
# What each side decided per corpus class, summed over the rounds: the two
# should agree (same DNS data, same policies), or the comparison is off.
classes = {}
for x in rows:
    for c, vs in (x["report"].get("by_class") or {}).items():
        for v, n in vs.items():
            classes.setdefault(c, {}).setdefault(x["side"], {}).setdefault(v, 0)
            classes[c][x["side"]][v] += n
lines += ["", "| class (kind/policy) | chain verdicts | authmilter verdicts |", "|---|---|---|"]  # store off decides as authmilter
def mix(d):
    tot = sum(d.values()) or 1
    return ", ".join("%s %.0f%%" % (v, 100 * n / tot) for v, n in sorted(d.items(), key=lambda kv: -kv[1]))
for c in sorted(classes):
    lines.append("| %s | %s | %s |" % (c, mix(classes[c].get("chain", {})), mix(classes[c].get("authmilter", {}))))
text = "\n".join(lines) + "\n"
open(os.path.join(run, "results.md"), "w").write(text)
json.dump({"rounds": rows, "median": med}, open(os.path.join(run, "results.json"), "w"), indent=1)
print(text)
PY
