#!/usr/bin/python3
# Verifies every DKIM-Signature of a message with Debian's python3-dkim
# (dkimpy), a verifier that is not ours, taking the key records from a file
# instead of DNS: one line per record, "<name> <TXT value>", name without
# the trailing dot. Prints one line per signature: "<index> pass|fail".
# Usage: dkimpy_verify.py MESSAGE RECORDS
import sys

import dkim

msg = open(sys.argv[1], 'rb').read()
records = {}
with open(sys.argv[2]) as f:
    for line in f:
        line = line.rstrip('\n')
        if line:
            name, _, value = line.partition(' ')
            records[name.lower().rstrip('.')] = value.encode()


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    return records.get(name.lower().rstrip('.'))


d = dkim.DKIM(msg)
n = sum(1 for k, _ in d.headers if k.lower() == b'dkim-signature')
if n == 0:
    print('no signature')
    sys.exit(1)
for i in range(n):
    ok = d.verify(idx=i, dnsfunc=dnsfunc)
    print(i, 'pass' if ok else 'fail')
