#!/bin/sh
# Regenerates this directory's DKIM fixtures with Debian's python3-dkim
# (`dkimsign`, a signer that is not ours), using the TEST-ONLY key of
# pkg/dkimverify/testdata/keys (its public key is in keys.zone there).
set -eu
cd "$(dirname "$0")"
key=../../../pkg/dkimverify/testdata/keys/rsa2048.pem
# From a subdomain, signed by the parent: DMARC passes under relaxed
# alignment only (RFC 9989 §4.4.1).
printf 'From: News <news@news.example.org>\r\nTo: bob@rcpt.test\r\nSubject: parent domain signature\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <parent@news.example.org>\r\n\r\nSigned by example.org for news.example.org.\r\n' >parent.unsigned
/usr/bin/dkimsign --hcanon relaxed --bcanon relaxed rsa2048 example.org "$key" <parent.unsigned >parent-domain.eml
rm parent.unsigned
