#!/usr/bin/python3
# Verifies every DKIM-Signature of messages with Debian's python3-dkim
# (dkimpy), a verifier that is not ours, taking the key records from a file
# instead of DNS: one line per record, "<name> <TXT value>", name without
# the trailing dot. Prints one line per signature:
# "<message index> <signature index> pass|fail", or "<message index> none".
# Usage: dkimpy_verify.py RECORDS MESSAGE...
import sys

import dkim

records = {}
with open(sys.argv[1]) as f:
    for line in f:
        line = line.rstrip('\n')
        if line:
            name, _, value = line.partition(' ')
            records[name.lower().rstrip('.')] = value.encode()


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    return records.get(name.lower().rstrip('.'))


for m, path in enumerate(sys.argv[2:]):
    d = dkim.DKIM(open(path, 'rb').read())
    n = sum(1 for k, _ in d.headers if k.lower() == b'dkim-signature')
    if n == 0:
        print(m, 'none')
    for i in range(n):
        print(m, i, 'pass' if d.verify(idx=i, dnsfunc=dnsfunc) else 'fail')
