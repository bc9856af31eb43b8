package headerblock

import "testing"

func TestAppend(t *testing.T) {
	tests := []struct{ name, value, want string }{
		{"Subject", " hello", "Subject: hello\r\n"},
		{"X-No-Space", "value", "X-No-Space:value\r\n"},
		{"X-Folded", " a\r\n\tb", "X-Folded: a\r\n\tb\r\n"},
		{"X-Empty", "", "X-Empty:\r\n"},
	}
	for _, tt := range tests {
		if got := string(Append([]byte("prefix|"), tt.name, tt.value)); got != "prefix|"+tt.want {
			t.Errorf("Append(%q, %q) = %q", tt.name, tt.value, got)
		}
	}
}

// The limits: a field that takes the block over either one ends it for
// good; CountOnly judges the limits without keeping bytes.
func TestBlockLimits(t *testing.T) {
	tests := []struct {
		name      string
		b         Block
		fields    int    // "X: y" fields added (6 bytes each as counted)
		wantOver  bool   // after all of them
		wantBytes string // Buf afterwards
	}{
		{"within", Block{MaxFields: 2, MaxBytes: 12}, 2, false, "X: y\r\nX: y\r\n"},
		{"too many fields", Block{MaxFields: 1, MaxBytes: 100}, 2, true, "X: y\r\n"},
		{"too many bytes", Block{MaxFields: 10, MaxBytes: 11}, 2, true, "X: y\r\n"},
		{"count only", Block{MaxFields: 10, MaxBytes: 100, CountOnly: true}, 3, false, ""},
		{"count only, over", Block{MaxFields: 2, MaxBytes: 100, CountOnly: true}, 3, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.b
			for range tt.fields {
				b.Add("X", " y")
			}
			if b.Over() != tt.wantOver || string(b.Buf) != tt.wantBytes {
				t.Errorf("over %v buf %q", b.Over(), b.Buf)
			}
			if b.Over() && b.Add("X", " y") {
				t.Error("a field was taken after the block went over")
			}
		})
	}
}
