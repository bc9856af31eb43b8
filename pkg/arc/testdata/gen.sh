#!/bin/sh
# Regenerates the ARC test chains with Debian's python3-dkim (dkimpy 1.1.4,
# `apt-get install python3-dkim python3-nacl openssl`): sets sealed by an
# implementation that is not ours. Run from anywhere:
#   sh pkg/arc/testdata/gen.sh
# keys/ holds TEST-ONLY keys (copied from pkg/dkimverify/testdata/keys), so
# the chains come out byte for byte the same (fixed t= in gen.py).
set -eu
cd "$(dirname "$0")"
exec /usr/bin/python3 gen.py
