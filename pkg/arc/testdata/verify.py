"""Prints dkimpy's ARC verdict for each message file named on the command
line, one line each: NAME CV, where CV is pass, fail or none as RFC 8617
names them (dkimpy's "None" for a chain already marked cv=fail is fail:
RFC 8617 §5.2 step 2). DNS answers come from the zone file given first
(only the TXT records gen.py writes), never from the network.
"""
import sys

import dkim

# dkimpy 1.1.4 accepts only rsa-sha256 in ARC sets (ARC_HASH_ALGORITHMS); we
# also accept ed25519-sha256 (RFC 8463), as the issue asks. With --ed25519
# dkimpy is run with that algorithm added, so that its verdict on an Ed25519
# sealer comes from its own Ed25519 verification.
if "--ed25519" in sys.argv:
    sys.argv.remove("--ed25519")
    dkim.ARC_HASH_ALGORITHMS[b"ed25519-sha256"] = dkim.HASH_ALGORITHMS[b"ed25519-sha256"]


def zone(path):
    recs = {}
    for line in open(path):
        if line.startswith(';') or not line.strip():
            continue
        name, rest = line.split(' ', 1)
        txt = rest.split(' TXT ', 1)[1].strip()
        recs[name.lower()] = ''.join(p for p in txt.split('"')[1::2]).encode()
    return recs


def main():
    recs = zone(sys.argv[1])

    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        return recs.get(n.lower())

    for path in sys.argv[2:]:
        msg = open(path, 'rb').read()
        cv, _, why = dkim.arc_verify(msg, dnsfunc=dnsfunc)
        verdict = {dkim.CV_Pass: 'pass', dkim.CV_None: 'none'}.get(cv, 'fail')
        print(path.rsplit('/', 1)[-1], verdict, '#', why)


main()
