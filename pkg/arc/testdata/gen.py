"""Builds the ARC test chains with dkimpy (Debian python3-dkim). See gen.sh.

Every ARC set here is made by dkimpy's ARC signer, not by our code: each hop
adds its own Authentication-Results (dkimpy takes the new set's cv= and the
ARC-Authentication-Results from it) and then seals. The damaged cases change
bytes after sealing. Writes chains/NAME.eml (CRLF, byte-exact) and keys.zone;
dkimpy's own verdict for each chain is checked live by verify.py in the Go
test (TestDkimpyAgrees), so it is not written down here.
"""
import base64
import subprocess
import time

T0 = 1767225600  # 2026-01-01T00:00:00Z: the t= of every set
time.time = lambda: T0

import dkim  # noqa: E402
import nacl.encoding  # noqa: E402
import nacl.signing  # noqa: E402


def read(path):
    with open(path, 'rb') as f:
        return f.read()


def rsa_pub(pem):
    der = subprocess.run(['openssl', 'rsa', '-in', pem, '-pubout', '-outform', 'DER'],
                         check=True, capture_output=True).stdout
    return base64.b64encode(der).decode()


RSA = read('keys/rsa2048.pem')
RSA1024 = read('keys/rsa1024.pem')
ED = read('keys/ed25519.key').strip()
ED_PUB = base64.b64encode(nacl.signing.SigningKey(ED, encoder=nacl.encoding.Base64Encoder).verify_key.encode()).decode()

# dkimpy's ARC signer parses every key as PEM RSA (dkim/__init__.py
# ARC.sign); for an Ed25519 sealer the seed is handed over as a nacl key
# instead. Hashing, canonicalisation and the set layout stay dkimpy's.
_parse_pem = dkim.parse_pem_private_key


def _parse_key(data):
    if data == ED:
        return nacl.signing.SigningKey(ED, encoder=nacl.encoding.Base64Encoder)
    return _parse_pem(data)


dkim.parse_pem_private_key = _parse_key

ZONE = [
    ('sel._domainkey.author.example', 'rsa', rsa_pub('keys/rsa2048.pem')),
    ('s1._domainkey.forwarder.example', 'rsa', rsa_pub('keys/rsa2048.pem')),
    ('s2._domainkey.lists.example', 'rsa', rsa_pub('keys/rsa2048.pem')),
    ('s3._domainkey.relay.example', 'rsa', rsa_pub('keys/rsa1024.pem')),
    ('ed._domainkey.edseal.example', 'ed25519', ED_PUB),
    # gone._domainkey.nokey.example has no record: the missing-key case.
]

BASE = (b'From: Alice <alice@author.example>\r\n'
        b'To: list@lists.example\r\n'
        b'Subject: Meeting notes\r\n'
        b'Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n'
        b'Message-ID: <notes-1@author.example>\r\n'
        b'\r\n'
        b'Hello,\r\n'
        b'\r\n'
        b'the notes are attached below.\r\n')

SIGNED = ['from', 'to', 'subject', 'date', 'message-id']

# hop name -> (sealer domain, selector, key, algorithm, client address)
HOPS = {
    'forwarder': (b'forwarder.example', b's1', RSA, b'rsa-sha256', '192.0.2.10'),
    'lists': (b'lists.example', b's2', RSA, b'rsa-sha256', '198.51.100.20'),
    'relay': (b'relay.example', b's3', RSA1024, b'rsa-sha256', '203.0.113.30'),
    'edseal': (b'edseal.example', b'ed', ED, b'ed25519-sha256', '192.0.2.40'),
    'nokey': (b'nokey.example', b'gone', RSA, b'rsa-sha256', '192.0.2.50'),
}


def author_signed():
    sig = dkim.sign(BASE, b'sel', b'author.example', RSA,
                    canonicalize=(b'relaxed', b'relaxed'), include_headers=[h.encode() for h in SIGNED])
    return sig + BASE


def seal(msg, hop, cv=None, dmarc=b'pass'):
    """One hop: its A-R (what it found) on top, then dkimpy's ARC set."""
    dom, sel, key, alg, ip = HOPS[hop]
    if cv is None:
        cv = b'pass' if b'arc-seal' in msg.lower() else b'none'
    ar = (b'Authentication-Results: ' + dom + b'; arc=' + cv +
          b'; spf=pass smtp.mailfrom=author.example; dkim=' + dmarc +
          b' header.d=author.example; dmarc=' + dmarc +
          b' header.from=author.example; iprev=pass policy.iprev=' + ip.encode() + b'\r\n')
    if cv == b'none':
        ar = ar.replace(b'arc=none; ', b'')
    msg = ar + msg
    a = dkim.ARC(msg, signature_algorithm=alg)
    s = a.sign(sel, dom, key, dom, include_headers=[h.encode() for h in SIGNED], timestamp=T0)
    if not s:
        raise SystemExit('dkimpy made no ARC set for ' + hop)
    return b''.join(s) + msg


def footer(msg):
    return msg + b'-- \r\nlist@lists.example: to unsubscribe, write to list-leave@lists.example\r\n'


def tag_subject(msg):
    return msg.replace(b'Subject: Meeting notes', b'Subject: [list] Meeting notes', 1)


def flip_b(msg, name, inst):
    """Changes one character of the b= of the field name with i=inst."""
    lines = msg.split(b'\r\n')
    for n, line in enumerate(lines):
        if line.lower().startswith(name.lower() + b':') and (b'i=%d;' % inst) in line:
            j = n
            while b'b=' not in lines[j] or lines[j].strip().startswith(b'bh='):
                j += 1
                if b' b=' in lines[j] or lines[j].startswith(b'\tb=') or lines[j].startswith(b' b='):
                    break
            k = lines[j].index(b'b=') + 4
            c = lines[j][k:k + 1]
            lines[j] = lines[j][:k] + (b'A' if c != b'A' else b'B') + lines[j][k + 1:]
            return b'\r\n'.join(lines)
    raise SystemExit('no field %s i=%d' % (name, inst))


def relabel(msg, frm, to):
    """Rewrites the i= tags of set frm to to (in all three fields)."""
    out = []
    for line in msg.split(b'\r\n'):
        if line.lower().startswith(b'arc-'):
            line = line.replace(b'i=%d;' % frm, b'i=%d;' % to, 1)
        out.append(line)
    return b'\r\n'.join(out)


def drop_set(msg, inst):
    """Removes the three fields of set inst (and their folded lines)."""
    out, skip = [], False
    for line in msg.split(b'\r\n'):
        if line[:1] in (b' ', b'\t') and out:
            if not skip:
                out.append(line)
            continue
        skip = line.lower().startswith(b'arc-') and (b' i=%d;' % inst) in line
        if not skip:
            out.append(line)
    return b'\r\n'.join(out)


def move_set_up(msg, inst):
    """Moves the three fields of set inst (with their folded lines) to the
    top of the header."""
    head, body = msg.split(b'\r\n\r\n', 1)
    moved, rest, cur = [], [], None
    for line in head.split(b'\r\n'):
        if line[:1] in (b' ', b'\t') and cur is not None:
            cur.append(line)
            continue
        cur = moved if (line.lower().startswith(b'arc-') and (b' i=%d;' % inst) in line) else rest
        cur.append(line)
    return b'\r\n'.join(moved + rest) + b'\r\n\r\n' + body


def set_fields(msg, inst):
    """The three fields of set inst (with their folded lines), as bytes."""
    head = msg.split(b'\r\n\r\n', 1)[0]
    out, keep = [], False
    for line in head.split(b'\r\n'):
        if line[:1] in (b' ', b'\t'):
            if keep:
                out.append(line)
            continue
        keep = line.lower().startswith(b'arc-') and (b' i=%d;' % inst) in line
        if keep:
            out.append(line)
    return b'\r\n'.join(out) + b'\r\n'


def cases():
    m = author_signed()
    one = seal(m, 'forwarder')
    two = seal(one, 'lists')
    three = seal(two, 'relay')
    yield 'none', m
    yield 'one-hop', one
    yield 'two-hops', two
    yield 'three-hops', three
    # A list changes the body and subject after the first hop sealed, then
    # seals: the chain passes, the first AMS no longer does (oldest-pass 2).
    yield 'list-footer', seal(tag_subject(footer(one)), 'lists')
    # A list that changed the message, sealed as the only hop: what a
    # p=reject author's mail looks like after a trusted list.
    yield 'list-only', seal(tag_subject(footer(m)), 'lists')
    # Changed after the most recent hop sealed: its AMS fails.
    yield 'body-after-seal', footer(two)
    yield 'broken-seal', flip_b(two, b'ARC-Seal', 1)
    yield 'broken-newest-seal', flip_b(two, b'ARC-Seal', 2)
    yield 'reordered-instances', relabel(relabel(relabel(two, 1, 9), 2, 1), 9, 2)
    yield 'gap', drop_set(three, 2)
    yield 'cv-fail', seal(one, 'lists', cv=b'fail')
    # A later hop seals after the chain was marked failed: it finds the
    # chain failed too and carries cv=fail forward.
    yield 'cv-fail-carried', seal(seal(one, 'lists', cv=b'fail'), 'relay', cv=b'fail')
    # The sets in another order in the header (set 1 above set 2): ARC
    # orders by i=, not by position (RFC 8617 §4.1 / §5.1.1).
    yield 'sets-moved', move_set_up(two, 1)
    # A replay: the set lists.example sealed on a genuine message, copied
    # onto a forged one (same From, other text, no author signature) and
    # sealed over by another hop. The seals still verify (a seal covers
    # only ARC fields); the copied set's message signature does not.
    list_only = seal(tag_subject(footer(m)), 'lists')
    forged = BASE.replace(b'Meeting notes', b'Urgent: new bank details').replace(
        b'the notes are attached below.', b'please pay the invoice to the new account.')
    yield 'replayed-set', seal(set_fields(list_only, 1) + forged, 'forwarder')
    yield 'ed25519-sealer', seal(m, 'edseal')
    yield 'ed25519-then-rsa', seal(seal(m, 'edseal'), 'lists')
    yield 'missing-key', seal(one, 'nokey')
    yield 'dmarc-fail-aar', seal(tag_subject(footer(m)), 'lists', dmarc=b'fail')


def txt(name, k, p):
    rec = 'v=DKIM1; k=%s; p=%s' % (k, p)
    parts = [rec[i:i + 255] for i in range(0, len(rec), 255)]
    return '%s. 300 IN TXT %s\n' % (name, ' '.join('"%s"' % s for s in parts))


def main():
    with open('keys.zone', 'w') as f:
        f.write('; Public keys of the ARC test chains, written by gen.py. Test-only keys.\n')
        for name, k, p in ZONE:
            f.write(txt(name, k, p))
    for name, msg in cases():
        with open('chains/%s.eml' % name, 'wb') as f:
            f.write(msg)


main()
