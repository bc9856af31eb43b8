package dmarc

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseRecord(t *testing.T) {
	type want struct {
		p, sp, np  Policy
		psd        byte
		testing    bool
		adkim      byte
		aspf       byte
		rua, ruf   []URI
		fo         string
		pct        int
		invalid    []string
		nIgnored   int
		applicable Policy // Applicable(false, false)
	}
	def := func(w want) want {
		if w.psd == 0 {
			w.psd = 'u'
		}
		if w.adkim == 0 {
			w.adkim = 'r'
		}
		if w.aspf == 0 {
			w.aspf = 'r'
		}
		if w.fo == "" {
			w.fo = "0"
		}
		return w
	}
	tests := []struct {
		name string
		txt  string
		err  error
		want want
	}{
		{"minimal", "v=DMARC1; p=none", nil, want{p: "none", pct: -1, applicable: "none"}},
		{"full", "v=DMARC1; p=reject; sp=quarantine; np=reject; psd=n; t=y; adkim=s; aspf=s; fo=1:d; pct=50; rua=mailto:a@example.com; ruf=mailto:f@example.com", nil,
			want{p: "reject", sp: "quarantine", np: "reject", psd: 'n', testing: true, adkim: 's', aspf: 's', fo: "1:d", pct: 50,
				rua: []URI{{Address: "mailto:a@example.com"}}, ruf: []URI{{Address: "mailto:f@example.com"}}, applicable: "reject"}},
		{"no spaces, trailing semicolon", "v=DMARC1;p=quarantine;", nil, want{p: "quarantine", pct: -1, applicable: "quarantine"}},
		{"spaces around equals (RFC 9989 §4.8 equals)", "v = DMARC1 ;  p = reject ", nil, want{p: "reject", pct: -1, applicable: "reject"}},
		{"uppercase tag names and values", "V=DMARC1; P=REJECT; SP=Quarantine; ADKIM=S; PSD=Y; T=Y", nil,
			want{p: "reject", sp: "quarantine", adkim: 's', psd: 'y', testing: true, pct: -1, applicable: "reject"}},
		{"missing p with rua: treated as none (§4.10.1)", "v=DMARC1; rua=mailto:d@example.com", nil,
			want{pct: -1, rua: []URI{{Address: "mailto:d@example.com"}}, applicable: "none"}},
		{"missing p without rua: no processing", "v=DMARC1; adkim=s", nil, want{adkim: 's', pct: -1, applicable: ""}},
		{"invalid p with rua: none", "v=DMARC1; p=bogus; rua=mailto:d@example.com", nil,
			want{pct: -1, rua: []URI{{Address: "mailto:d@example.com"}}, invalid: []string{"p"}, applicable: "none"}},
		{"invalid sp without rua: no processing", "v=DMARC1; p=reject; sp=maybe", nil,
			want{p: "reject", pct: -1, invalid: []string{"sp"}, applicable: ""}},
		{"junk tags ignored", "v=DMARC1; p=reject; foo=bar; x; 9a=1; =z; ri=86400; rf=afrf", nil,
			want{p: "reject", pct: -1, nIgnored: 6, applicable: "reject"}},
		{"duplicate tag: first wins", "v=DMARC1; p=reject; p=none; adkim=s; adkim=r", nil,
			want{p: "reject", adkim: 's', pct: -1, nIgnored: 2, applicable: "reject"}},
		{"invalid values fall back to defaults", "v=DMARC1; p=none; adkim=x; aspf=; psd=maybe; t=1; fo=0:1; pct=101", nil,
			want{p: "none", pct: -1, invalid: []string{"adkim", "aspf", "psd", "t", "fo", "pct"}, applicable: "none"}},
		{"rua with size suffix and several URIs", "v=DMARC1; p=none; rua=mailto:a@example.com!10m, mailto:b@example.net,https://r.example.org/dmarc!50K", nil,
			want{p: "none", pct: -1, applicable: "none", rua: []URI{
				{Address: "mailto:a@example.com", MaxSize: "10m"},
				{Address: "mailto:b@example.net"},
				{Address: "https://r.example.org/dmarc", MaxSize: "50k"}}}},
		{"bad URIs dropped", "v=DMARC1; p=none; rua=not a uri,mailto:ok@example.com,mailto:x@example.com!big", nil,
			want{p: "none", pct: -1, applicable: "none", nIgnored: 2, rua: []URI{{Address: "mailto:ok@example.com"}}}},
		{"fo options", "v=DMARC1; p=none; fo=D:S", nil, want{p: "none", fo: "d:s", pct: -1, applicable: "none"}},
		{"pct zero kept", "v=DMARC1; p=quarantine; pct=0", nil, want{p: "quarantine", pct: 0, applicable: "quarantine"}},
		{"leading whitespace tolerated", "  v=DMARC1; p=none", nil, want{p: "none", pct: -1, applicable: "none"}},
		{"version value is case-sensitive", "v=dmarc1; p=reject", ErrNotDMARC, want{}},
		{"version must be first", "p=reject; v=DMARC1", ErrNotDMARC, want{}},
		{"other version", "v=DMARC2; p=reject", ErrNotDMARC, want{}},
		{"version glued", "v=DMARC10; p=reject", ErrNotDMARC, want{}},
		{"version without separator", "v=DMARC1 p=reject", ErrNotDMARC, want{}},
		{"SPF record", "v=spf1 -all", ErrNotDMARC, want{}},
		{"empty", "", ErrNotDMARC, want{}},
		{"version only", "v=DMARC1", nil, want{pct: -1, applicable: ""}},
		{"second v tag ignored as invalid", "v=DMARC1; v=DMARC1; p=none", nil, want{p: "none", pct: -1, invalid: []string{"v"}, applicable: "none"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := ParseRecord(tt.txt)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("ParseRecord(%q) error = %v, want %v", tt.txt, err, tt.err)
				}
				if IsDMARCRecord(tt.txt) {
					t.Errorf("IsDMARCRecord(%q) = true", tt.txt)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRecord(%q): %v", tt.txt, err)
			}
			w := def(tt.want)
			got := want{p: rec.Policy, sp: rec.SubdomainPolicy, np: rec.NonexistentPolicy, psd: rec.PSD, testing: rec.Testing,
				adkim: rec.ADKIM, aspf: rec.ASPF, rua: rec.RUA, ruf: rec.RUF, fo: rec.FO, pct: rec.Pct, invalid: rec.Invalid,
				nIgnored: len(rec.Ignored), applicable: rec.Applicable(false, false)}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("ParseRecord(%q)\n got %+v\nwant %+v\nignored %q", tt.txt, got, w, rec.Ignored)
			}
			if rec.Raw != tt.txt {
				t.Errorf("Raw = %q", rec.Raw)
			}
		})
	}
}

// TestApplicable checks the p / sp / np choice of RFC 9989 §4.10.1 and the
// np → sp → p fallback of §4.7.
func TestApplicable(t *testing.T) {
	tests := []struct {
		txt                    string
		subdomain, nonexistent bool
		want                   Policy
	}{
		{"v=DMARC1; p=reject; sp=quarantine; np=none", false, false, "reject"},
		{"v=DMARC1; p=reject; sp=quarantine; np=none", false, true, "reject"}, // np is for subdomains only
		{"v=DMARC1; p=reject; sp=quarantine; np=none", true, false, "quarantine"},
		{"v=DMARC1; p=reject; sp=quarantine; np=none", true, true, "none"},
		{"v=DMARC1; p=reject; sp=quarantine", true, true, "quarantine"},
		{"v=DMARC1; p=reject", true, true, "reject"},
		{"v=DMARC1; p=none; np=reject", true, false, "none"},
		{"v=DMARC1; p=none; np=reject", true, true, "reject"},
	}
	for _, tt := range tests {
		rec, err := ParseRecord(tt.txt)
		if err != nil {
			t.Fatal(err)
		}
		if got := rec.Applicable(tt.subdomain, tt.nonexistent); got != tt.want {
			t.Errorf("%q Applicable(sub=%v, nx=%v) = %q, want %q", tt.txt, tt.subdomain, tt.nonexistent, got, tt.want)
		}
	}
}
