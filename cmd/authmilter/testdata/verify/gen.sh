#!/bin/sh
# Regenerates the `authmilter verify` fixtures in this directory with
# Debian's python3-dkim (`dkimsign`, a signer that is not ours) and openssl.
# Run from anywhere: sh cmd/authmilter/testdata/verify/gen.sh
#
# rsa2048.pem is a TEST-ONLY key, committed so that the fixtures can be
# regenerated; it signs nothing but these fixtures. Its public key goes to
# keys.zone. The goldens (*.txt, *.json) are then rewritten by
#   go test ./cmd/authmilter -run TestVerifyGolden -update
set -eu
cd "$(dirname "$0")"
[ -f rsa2048.pem ] || openssl genrsa -traditional -out rsa2048.pem 2048 2>/dev/null ||
	openssl genrsa -out rsa2048.pem 2048
pub=$(openssl rsa -in rsa2048.pem -pubout 2>/dev/null | grep -v -- '-----' | tr -d '\n')
# TXT character-strings hold at most 255 octets: split the key as zone files do.
p1=$(printf %s "$pub" | cut -c1-200)
p2=$(printf %s "$pub" | cut -c201-)
{
	echo "; Public key of rsa2048.pem (test-only), written by gen.sh."
	for name in sel._domainkey.example.org. sel._domainkey.evil.test. sel._domainkey.news.example.net.; do
		echo "$name 300 IN TXT \"v=DKIM1; k=rsa; p=$p1\" \"$p2\""
	done
} >keys.zone

sign() { # sign SELECTOR DOMAIN < unsigned > signed (CRLF in, CRLF out)
	/usr/bin/dkimsign --hcanon relaxed --bcanon relaxed "$1" "$2" rsa2048.pem
}

# pass.eml (CRLF): signed by the author domain, sent from its own network.
printf 'From: Alice <alice@example.org>\r\nTo: bob@rcpt.test\r\nSubject: quarterly report\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <pass@example.org>\r\n\r\nHello Bob,\r\nthe report is attached.\r\n' |
	sign sel example.org >pass.eml

# reject.eml (LF line ends, mbox "From " line, a forged A-R with our
# authserv-id): claims to be from bank.example, signed by evil.test, body
# changed after signing; SPF fails.
printf 'From: "Bank" <service@bank.example>\r\nTo: bob@rcpt.test\r\nSubject: verify your account\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <phish@evil.test>\r\n\r\nPlease log in at https://bank.example.evil.test/\r\n' |
	sign sel evil.test >reject.signed
{
	printf 'From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n'
	printf 'Authentication-Results: mx.test;\n\tdkim=pass header.d=bank.example;\n\tdmarc=pass header.from=bank.example\n'
	sed -e 's/\r$//' -e 's/log in at/log in now at/' reject.signed
} >reject.eml
rm reject.signed

# walk.eml (CRLF): a null sender (Return-Path: <>) from a deep subdomain;
# the tree walk skips a name with two DMARC records and finds the
# organizational domain's sp=quarantine. Its signature's key does not exist.
{
	printf 'Return-Path: <>\r\n'
	printf 'From: News <news@a.b.news.example.net>\r\nTo: bob@rcpt.test\r\nSubject: bounce\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <walk@news.example.net>\r\n\r\nUndeliverable.\r\n' |
		sign gone news.example.net
} >walk.eml

# large.eml (LF line ends): a body of several milter chunks (> 64 KiB).
{
	printf 'From: Alice <alice@example.org>\r\nTo: bob@rcpt.test\r\nSubject: large\r\nMessage-ID: <large@example.org>\r\n\r\n'
	i=0
	while [ $i -lt 3000 ]; do
		printf 'line %05d of a body that is streamed in several chunks of at most 65535 bytes\r\n' $i
		i=$((i + 1))
	done
} | sign sel example.org | sed 's/\r$//' >large.eml
