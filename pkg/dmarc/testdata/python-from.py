#!/usr/bin/env python3
"""Records how Python's email package (email.headerregistry, policy default)
reads tricky From fields, for pkg/dmarc's differential test
(TestParseFromAgainstPython). Regenerate with:

    python3 python-from.py > python-from.json

Each case: the raw From value, the addresses Python found (display name,
local part, domain) and the defects it reported. Only facts about Python's
behaviour are recorded; no Python code is used by the Go test.
"""
import email.headerregistry
import json
import platform

CASES = [
    "user@example.com",
    " user@Example.COM",
    '"Jane Doe" <jane@example.org>',
    "Jane Doe\r\n\t<jane@example.org>",
    "john@example.com (John)",
    '(c1) "q" (c2) <a@EXAMPLE.com> (c3)',
    "ceo@bank. example",
    "ceo@bank(x).example",
    "ceo @ bank.example",
    "ceo . x @ bank . example",
    "ceo@bank.\r\n example",
    "CEO <ceo@\r\n\tbank.example>",
    "ceo(x)@bank.example",
    'john."q q".doe@example.org',
    "<@relay.example:alice@example.org>",
    "Alice <@a.example,@b.example:alice@example.org>",
    "John Q. Public <jqp@example.org>",
    '"a@b"@example.com',
    "a@example.com.",
    "=?UTF-8?B?SsO2cmc=?= <j@example.de>",
    "=?UTF-8?Q?J=C3=B6rg?=\r\n =?UTF-8?Q?_M=C3=BCller?= <j@example.de>",
    "=?utf-8?q?ceo=40bank.example?= <evil@attacker.example>",
    "=?utf-8?B?PGFkbWluQHZpY3RpbS5leGFtcGxlPg==?= <x@attacker.example>",
    '"ceo@bank.example" <x@attacker.example>',
    "x@attacker.example (ceo@bank.example)",
    "Friends: a@x.example, \"b c\" <b@y.example>;",
    "a@example.com, b@example.net",
    "J\u00f6rg <user@B\u00fccher.example>",
    "j\u00f6rg@example.de",
    "John@Doe <john@example.com>",
    "<a@evil.example> <b@bank.example>",
    "<a@evil.example>b@bank.example",
    '"Bank" <a@bank.example>, <b@evil.example',
    '"Bank <a@bank.example>',
    "a@bank.example (x",
    '\\"x\\" <a@evil.example>',
    "a@evil.example\x0b<b@bank.example>",
    'a@"bank.example"',
    "hello world",
    "user@",
    "ceo@bank;example",
    "a@example..com",
    "undisclosed-recipients:;",
    "<john@[192.0.2.1]>",
    "a@evil.example, ceo@bank.example",
    "ceo@bank.example <a@evil.example>",
    "a@evil.example <ceo@bank.example>",
    "\"a@evil.example\" <ceo@bank.example>",
    "ceo@bank.example@evil.example",
    "<ceo@bank.example@evil.example>",
    "ceo@bank.example>evil.example",
    "ceo@bank\\.example",
    '"ceo\\"@bank.example" <x@evil.example>',
    "ceo@bank.example\u00a0<x@evil.example>",
    "Bank <ceo@bank.example>, <x@evil.example>",
    "<ceo@bank.example>,",
    ",<ceo@bank.example>",
    "ceo@(comment)bank.example",
    "ceo@bank.example(comment",
    "=?utf-8?q?ceo=40bank.example?=@attacker.example",
    "Group: ;, ceo@bank.example",
]

out = []
for v in CASES:
    # As email.policy.EmailPolicy.header_fetch_parse does: unfold first.
    unfolded = "".join(v.splitlines())
    rec = {"from": v}
    try:
        h = email.headerregistry.HeaderRegistry()("From", unfolded)
        rec["addresses"] = [{"display_name": a.display_name, "username": a.username, "domain": a.domain}
                            for a in h.addresses]
        rec["defects"] = sorted({type(d).__name__ for d in h.defects})
    except Exception as e:  # noqa: BLE001 - record whatever Python does
        rec["error"] = type(e).__name__ + ": " + str(e)
    out.append(rec)

print(json.dumps({"python": platform.python_version(), "module": "email.headerregistry (HeaderRegistry()(\"From\", value))",
                  "cases": out}, indent=1, ensure_ascii=False))
