#!/usr/bin/python3
# Verifies every DKIM-Signature of messages with Debian's python3-dkim
# (dkimpy), a verifier that is not ours. Key records come from a file, one
# per line, "<name> <TXT value>", instead of DNS. Prints one line per
# signature, "<message index> <signature index> pass|fail[:reason]", or
# "<message index> none".
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
    with open(path, 'rb') as f:
        d = dkim.DKIM(f.read())
    n = sum(1 for k, _ in d.headers if k.lower() == b'dkim-signature')
    if n == 0:
        print(m, 'none')
    for i in range(n):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
            print(m, i, 'pass' if ok else 'fail')
        except dkim.DKIMException as e:
            # dkimpy raises for some failures (body hash mismatch).
            print(m, i, 'fail:' + str(e).replace(' ', '_'))
