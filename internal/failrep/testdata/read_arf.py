#!/usr/bin/env python3
"""Reads one failure report (RFC 6591 / RFC 5965 ARF) with Python's email
package, an implementation independent of ours, and prints what it found as
JSON: the top-level type, the report-type, the parts' content types, and the
fields of the message/feedback-report part (lowercased names, all values).
Used by failrep's tests on the real-world samples and on our own reports."""
import email
import email.policy
import json
import sys

with open(sys.argv[1], "rb") as f:
    msg = email.message_from_binary_file(f, policy=email.policy.compat32)

out = {
    "content_type": msg.get_content_type(),
    "report_type": msg.get_param("report-type"),
    "parts": [],
    "feedback": None,
    "headers_part": None,
    "defects": [type(d).__name__ for d in msg.defects],
}
for part in msg.walk():
    ct = part.get_content_type()
    out["parts"].append(ct)
    if ct == "message/feedback-report" and out["feedback"] is None:
        payload = part.get_payload()
        fields = {}
        if isinstance(payload, list) and payload:
            sub = payload[0]
        else:
            sub = email.message_from_string(str(payload))
        for k, v in sub.items():
            fields.setdefault(k.lower(), []).append(" ".join(str(v).split()))
        out["feedback"] = fields
    if ct in ("text/rfc822-headers", "message/rfc822") and out["headers_part"] is None:
        if ct == "text/rfc822-headers":
            h = email.message_from_string(part.get_payload(decode=True).decode("utf-8", "replace"))
        else:
            h = part.get_payload()[0]
        out["headers_part"] = {k.lower(): " ".join(str(v).split()) for k, v in h.items()}
json.dump(out, sys.stdout, sort_keys=True)
