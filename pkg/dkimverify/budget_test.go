package dkimverify

import (
	"context"
	"errors"
	"testing"

	"github.com/authmilter/authmilter/internal/resolver"
)

// The caller's context is the message budget: once it has ended no more
// body is hashed and no signature is verified, so the budget bounds the
// CPU work as well as the DNS waits (issue 16). The same message passes
// with a live context.
func TestBudgetBoundsCPU(t *testing.T) {
	_, r := newDNS(t, fixtureZone(t), resolver.Config{})
	msg := readFile(t, "rsa2048-relaxed.eml")
	header, body := splitMessage(t, msg)
	for _, tt := range []struct {
		name        string
		endBefore   bool // the budget ends before the body arrives
		endAfter    bool // the budget ends after the body, before Results
		want        Status
		wantTooLate bool
	}{
		{"live", false, false, StatusPass, false},
		{"ended before the body", true, false, StatusTempError, true},
		{"ended before the results", false, true, StatusTempError, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			v := Start(ctx, r, header, nil)
			for _, k := range v.keys { // the key is in: only CPU work is left
				<-k.done
			}
			if tt.endBefore {
				cancel(errors.New("budget"))
			}
			if _, err := v.Write(body); err != nil {
				t.Fatal(err)
			}
			if tt.endAfter {
				cancel(errors.New("budget"))
			}
			res := v.Results()
			if len(res) != 1 || res[0].Status != tt.want || errors.Is(res[0].Err, ErrOverBudget) != tt.wantTooLate {
				t.Fatalf("results %+v, want %s (over budget %v)", res, tt.want, tt.wantTooLate)
			}
			if tt.wantTooLate && res[0].Reason != "time budget exhausted" {
				t.Errorf("reason %q", res[0].Reason)
			}
		})
	}
}
