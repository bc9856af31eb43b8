package milter

// The milter wire protocol, as Sendmail's libmilter and Postfix's milter8.c
// speak it (protocol version 6). Every packet in either direction is a
// 4-byte big-endian length, then that many bytes: a command or reply code
// and its data. Strings in the data are NUL-terminated.

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// protoVersion is the highest protocol version we speak; an MTA that offers
// less gets its own version back.
const protoVersion = 6

// maxPacket bounds a packet from the MTA (Postfix body chunks are at most
// 65535 bytes, header fields at most header_size_limit, 100 KiB by default).
const maxPacket = 1 << 20

// keepBuf is the largest packet buffer a connection keeps between packets.
const keepBuf = 128 << 10

// Commands from the MTA (SMFIC_*).
const (
	cmdAbort   = 'A' // reset the message; no reply
	cmdBody    = 'B'
	cmdConnect = 'C'
	cmdMacro   = 'D' // no reply
	cmdEOB     = 'E' // end of message: modifications, then the reply
	cmdHelo    = 'H'
	cmdQuitNC  = 'K' // quit, a new session follows on this connection
	cmdHeader  = 'L'
	cmdMail    = 'M'
	cmdEOH     = 'N'
	cmdOptNeg  = 'O'
	cmdQuit    = 'Q'
	cmdRcpt    = 'R'
	cmdData    = 'T'
	cmdUnknown = 'U'
)

// Replies to the MTA (SMFIR_*).
const (
	repContinue   = 'c'
	repTempFail   = 't'
	repReplyCode  = 'y' // "550 5.7.1 text\0"
	repChgHeader  = 'm' // index, name, value ("" deletes)
	repInsHeader  = 'i' // index, name, value
	repQuarantine = 'q' // reason
	repDiscard    = 'd' // accept and drop the message silently
)

// Actions (SMFIF_*): what the milter may do at end of message.
const (
	actAddHeaders = 0x01 // add and insert header fields (SMFIR_ADDHEADER, SMFIR_INSHEADER)
	actChgHeaders = 0x10 // change and delete header fields
	actQuarantine = 0x20
)

// Protocol flags (SMFIP_*): events the MTA leaves out, and events it sends
// without waiting for a reply (the NR flags, protocol version 6).
const (
	pNRHdr     = 0x00000080
	pNoUnknown = 0x00000100
	pNoData    = 0x00000200
	pNRConn    = 0x00001000
	pNRHelo    = 0x00002000
	pNRMail    = 0x00004000
	pNRRcpt    = 0x00008000
	pNRData    = 0x00010000
	pNRUnknown = 0x00020000
	pNREOH     = 0x00040000
	pNRBody    = 0x00080000
	pLeadSpace = 0x00100000
)

// wantActions are the actions we ask for: the A-R and signature fields
// are inserted at the top, forged A-R fields deleted, DMARC quarantine.
const wantActions = actAddHeaders | actChgHeaders | actQuarantine

// wantProtocol are the protocol flags we ask for, each only if the MTA
// offers it. Header values byte-exact (DKIM c=simple needs the leading
// whitespace: without SMFIP_HDR_LEADSPC Postfix drops one space after the
// colon and c=simple signatures break); no DATA or unknown-command events; and no
// reply to anything before end of message: we never answer early, so the
// MTA need not wait for us per header or body chunk. SMFIP_SKIP is left
// out: DKIM needs the whole body.
const wantProtocol = pLeadSpace | pNoUnknown | pNoData |
	pNRConn | pNRHelo | pNRMail | pNRRcpt | pNRHdr | pNREOH | pNRBody

// errProtocol marks a packet the MTA should never send: the connection is
// closed.
var errProtocol = errors.New("milter protocol error")

// cutString splits the NUL-terminated string at the start of b from the
// rest. Without a NUL the whole of b is the string.
func cutString(b []byte) (s, rest []byte) {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// startPacket appends the header of a packet with code to p; endPacket
// fills in its length once the data is appended.
func startPacket(p []byte, code byte) (out []byte, at int) {
	at = len(p)
	return append(p, 0, 0, 0, 0, code), at
}

func endPacket(p []byte, at int) []byte {
	binary.BigEndian.PutUint32(p[at:], uint32(len(p)-at-4))
	return p
}

// appendField appends s as a NUL-terminated string for the MTA: CRLF line
// ends become LF (Postfix stores LF and would keep a stray CR; recipe
// §2.8) and NUL bytes, which would end the string early, are dropped.
func appendField(p []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0:
			continue
		case c == '\r' && i+1 < len(s) && s[i+1] == '\n':
			continue
		}
		p = append(p, c)
	}
	return append(p, 0)
}

// appendText appends s as a NUL-terminated string as it is, but for NUL
// bytes. SMTP replies keep their CRLF: a multi-line reply is
// "550-5.7.1 a\r\n550 5.7.1 b", which Postfix passes to the client as two
// lines (checked with Postfix 3.7).
func appendText(p []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] != 0 {
			p = append(p, s[i])
		}
	}
	return append(p, 0)
}
