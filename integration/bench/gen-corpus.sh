#!/usr/bin/env bash
# Generates (once) the benchmark corpus and zone and prints its directory.
#
#   integration/bench/gen-corpus.sh [COUNT]      (default 2000 messages)
#
# The corpus is deterministic (fixed seed, fixed signing time, committed
# keys): it is cached under ${BENCH_CACHE:-${TMPDIR:-/tmp}/authmilter-bench}
# in a directory named after the generator's hash and COUNT, and reused.
# Needs Debian's python3-dkim and python3-nacl (installed if missing).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
count="${1:-2000}"
if ! /usr/bin/python3 -c 'import dkim, nacl, cryptography' 2>/dev/null; then
	echo "gen-corpus: installing python3-dkim python3-nacl" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-dkim python3-nacl >&2
fi
hash=$(cat "$here/gen-corpus.py" "$here"/keys/*.pem | sha256sum | cut -c1-12)
cache="${BENCH_CACHE:-${TMPDIR:-/tmp}/authmilter-bench}"
dir="$cache/corpus-$hash-$count"
if [ ! -f "$dir/.done" ]; then
	rm -rf "$dir.tmp"
	mkdir -p "$dir.tmp"
	echo "gen-corpus: generating $count messages in $dir" >&2
	/usr/bin/python3 "$here/gen-corpus.py" "$dir.tmp" "$count"
	touch "$dir.tmp/.done"
	rm -rf "$dir"
	mv "$dir.tmp" "$dir"
fi
echo "$dir"
