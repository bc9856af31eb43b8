"""Signs the DKIM test fixtures with dkimpy (Debian python3-dkim). See gen.sh.

Writes NAME.eml (CRLF, byte-exact) for each case below and keys.zone with the
public key records (RFC 1035 master-file text, long TXT split in 255-byte
strings). The expected results live in the Go tests.
"""
import base64
import subprocess
import time

T0 = 1767225600  # 2026-01-01T00:00:00Z: the t= of every fixture
time.time = lambda: T0  # dkimpy stamps t= with time.time()

import dkim  # noqa: E402  (after the clock is fixed)
import nacl.encoding  # noqa: E402
import nacl.signing  # noqa: E402


class ExpiringDKIM(dkim.DKIM):
    """dkimpy cannot write x=; this adds it just before b= (RFC 6376 §3.5)."""

    expire = None

    def gen_header(self, fields, *args, **kwargs):
        if self.expire is not None:
            at = [i for i, (k, _) in enumerate(fields) if k == b'b'][0]
            fields.insert(at, (b'x', str(self.expire).encode()))
        return super().gen_header(fields, *args, **kwargs)


def rsa_pub(pem):
    der = subprocess.run(['openssl', 'rsa', '-in', pem, '-pubout', '-outform', 'DER'],
                         check=True, capture_output=True).stdout
    return base64.b64encode(der).decode()


def read(path):
    with open(path, 'rb') as f:
        return f.read()


KEYS = {
    'rsa512': ('rsa', read('keys/rsa512.pem'), rsa_pub('keys/rsa512.pem')),
    'rsa1024': ('rsa', read('keys/rsa1024.pem'), rsa_pub('keys/rsa1024.pem')),
    'rsa2048': ('rsa', read('keys/rsa2048.pem'), rsa_pub('keys/rsa2048.pem')),
    'rsa4096': ('rsa', read('keys/rsa4096.pem'), rsa_pub('keys/rsa4096.pem')),
}
_ed = read('keys/ed25519.key').strip()
KEYS['ed25519'] = ('ed25519', _ed, base64.b64encode(
    nacl.signing.SigningKey(_ed, encoder=nacl.encoding.Base64Encoder).verify_key.encode()).decode())

# selector._domainkey.domain -> key name
RECORDS = [
    ('rsa512._domainkey.example.org', 'rsa512'),
    ('rsa1024._domainkey.example.org', 'rsa1024'),
    ('rsa2048._domainkey.example.org', 'rsa2048'),
    ('rsa4096._domainkey.example.org', 'rsa4096'),
    ('ed25519._domainkey.example.org', 'ed25519'),
    ('esp._domainkey.esp.example.net', 'rsa1024'),
    # The tests replace this one (revoked, missing, SERVFAIL, malformed...).
    ('other._domainkey.example.org', 'rsa2048'),
]


def message(name, extra_headers=b''):
    return (b'Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n'
            b'\tby relay.example.net; Thu, 01 Jan 2026 00:00:00 +0000\r\n'
            b'From: Alice Example <alice@example.org>\r\n'
            b'To: Bob <bob@example.net>\r\n'
            b'Subject: DKIM fixture ' + name.encode() + b'\r\n'
            b'Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n'
            b'Message-ID: <' + name.encode() + b'@example.org>\r\n'
            + extra_headers +
            b'MIME-Version: 1.0\r\n'
            b'Content-Type: text/plain; charset=us-ascii\r\n'
            b'\r\n'
            b'Hello Bob,\r\n'
            b'\r\n'
            b'This body has  two spaces, a\ttab, trailing blanks  \r\n'
            b'and a line that starts with a dot:\r\n'
            b'.like this\r\n'
            b'\r\n'
            b'Alice\r\n'
            b'\r\n'
            b'\r\n')


def sign(msg, key, selector, domain=b'example.org', canon=(b'relaxed', b'relaxed'),
         alg=None, headers=None, identity=None, expire=None, length=False):
    kind, priv, _ = KEYS[key]
    if alg is None:
        alg = b'ed25519-sha256' if kind == 'ed25519' else b'rsa-sha256'
    d = ExpiringDKIM(msg, linesep=b'\r\n')
    d.expire = expire
    sig = d.sign(selector, domain, priv, signature_algorithm=alg, identity=identity,
                 canonicalize=canon, include_headers=headers, length=length)
    return sig + msg


def write(name, data):
    with open(name + '.eml', 'wb') as f:
        f.write(data)


H = [b'from', b'to', b'subject', b'date', b'message-id']

write('rsa1024-relaxed', sign(message('rsa1024-relaxed'), 'rsa1024', b'rsa1024'))
write('rsa2048-relaxed', sign(message('rsa2048-relaxed'), 'rsa2048', b'rsa2048',
                              identity=b'alice@example.org'))
write('rsa4096-relaxed', sign(message('rsa4096-relaxed'), 'rsa4096', b'rsa4096'))
write('ed25519-relaxed', sign(message('ed25519-relaxed'), 'ed25519', b'ed25519'))
write('rsa2048-simple', sign(message('rsa2048-simple'), 'rsa2048', b'rsa2048',
                             canon=(b'simple', b'simple')))
write('rsa2048-relaxed-simple', sign(message('rsa2048-relaxed-simple'), 'rsa2048', b'rsa2048',
                                     canon=(b'relaxed', b'simple')))
write('rsa-sha1', sign(message('rsa-sha1'), 'rsa2048', b'rsa2048', alg=b'rsa-sha1'))
write('rsa512', sign(message('rsa512'), 'rsa512', b'rsa512'))
write('other-selector', sign(message('other-selector'), 'rsa2048', b'other'))
write('length-tag', sign(message('length-tag'), 'rsa2048', b'rsa2048', length=True))

# x= one hour after t= (expired for any clock after 2026-01-01T01:00Z) and
# x= in 2100.
write('expires-1h', sign(message('expires-1h'), 'rsa2048', b'rsa2048', expire=T0 + 3600))
write('expires-2100', sign(message('expires-2100'), 'rsa2048', b'rsa2048', expire=4102444800))

# Oversigning (RFC 6376 §8.15): From, To and Subject listed once more than
# they occur, so that an added one breaks the signature.
over = H + [b'from', b'to', b'subject']
m = sign(message('oversigned'), 'rsa2048', b'rsa2048', headers=over)
write('oversigned', m)
# The same message with a second Subject added after signing.
write('oversigned-added-subject', m.replace(b'\r\n\r\nHello Bob', b'\r\nSubject: free money\r\n\r\nHello Bob', 1))

# Two signatures: the author domain (Ed25519, over the five basic fields) and
# an ESP (RSA, also over MIME-Version); MIME-Version is then changed, which
# breaks the ESP's signature only.
m = message('two-signatures')
m = sign(m, 'ed25519', b'ed25519', headers=H)
m = sign(m, 'rsa1024', b'esp', domain=b'esp.example.net', headers=H + [b'mime-version'])
write('two-signatures-one-broken', m.replace(b'MIME-Version: 1.0', b'MIME-Version: 1.1', 1))

# Six signatures, all good: the cap (5) must report the sixth, not drop it.
m = message('six-signatures')
for key in ['rsa1024', 'rsa2048', 'ed25519', 'rsa1024', 'rsa2048', 'ed25519']:
    m = sign(m, key, key.encode(), headers=H)
write('six-signatures', m)

# c=simple over header fields with odd whitespace (RFC 6376 §3.4.1 keeps it
# all): no space after the colon, a tab, two spaces, folded lines.
odd = (b'X-No-Space:value\r\n'
       b'X-Tab:\tvalue after a tab\r\n'
       b'X-Two-Spaces:  two spaces  \r\n'
       b'X-Folded: first line\r\n'
       b'\tsecond line after a tab\r\n'
       b'   third line after three spaces\r\n')
write('simple-odd-whitespace', sign(message('simple-odd-whitespace', odd), 'rsa2048', b'rsa2048',
                                    canon=(b'simple', b'simple'),
                                    headers=H + [b'x-no-space', b'x-tab', b'x-two-spaces', b'x-folded']))


# A 160 KB body (cut into 64 KiB milter chunks, it spans three), relaxed/simple.
big = b''.join(b'line %05d: some text,  two spaces and a tab\there, trailing blanks  \r\n' % i
               for i in range(2200))
m = message('large-body').split(b'\r\n\r\n', 1)[0] + b'\r\n\r\n' + big
write('large-body', sign(m, 'rsa2048', b'rsa2048', canon=(b'relaxed', b'simple')))


def txt(record):
    parts = [record[i:i + 255] for i in range(0, len(record), 255)]
    return ' '.join('"%s"' % p for p in parts)


with open('keys.zone', 'w') as f:
    f.write('; Public keys of the fixtures, written by gen.py. Test-only keys.\n')
    for name, key in RECORDS:
        kind, _, pub = KEYS[key]
        f.write('%s. 300 IN TXT %s\n' % (name, txt('v=DKIM1; k=%s; p=%s' % (kind, pub))))
