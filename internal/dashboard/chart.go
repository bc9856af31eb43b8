package dashboard

import (
	"fmt"
	"html/template"
	"strconv"
	"strings"

	"github.com/authmilter/authmilter/internal/store"
)

// funcs are the template helpers.
var funcs = template.FuncMap{
	"pct": func(n, of int64) string {
		if of == 0 {
			return "–"
		}
		return strconv.FormatFloat(100*float64(n)/float64(of), 'f', 1, 64) + "%"
	},
	"num": func(n int64) string {
		s := strconv.FormatInt(n, 10)
		var b strings.Builder
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	},
	"date": func(p period) string {
		return p.Since.Format("2 Jan 2006") + " – " + p.Until.AddDate(0, 0, -1).Format("2 Jan 2006")
	},
	"disp":      func(m map[string]int64, k string) int64 { return m[k] },
	"delivered": func(m map[string]int64) int64 { return m["none"] + m["pass"] },
	// periods is the period links' data: the page's query prefix q
	// ("d=example.org&") and the usual lengths.
	"periods": func(p period, q string) map[string]any {
		return map[string]any{"Period": p, "Q": template.URL(q), "Days": []int{7, 30, 90, 365}}
	},
}

// Chart colours: pass and fail, chosen to be told apart by the common
// colour-vision deficiencies (blue and orange).
const (
	passColour = "#1f77b4"
	failColour = "#ff7f0e"
)

// dailyChart draws messages per day as stacked bars, DMARC pass below and
// fail above, as inline SVG that scales to the page width. Everything in it
// is numbers and dates we format: nothing from a report is written.
func dailyChart(days []store.Totals) template.HTML {
	const w, h, left, bottom, top = 720.0, 220.0, 48.0, 24.0, 10.0
	var max int64
	for _, d := range days {
		max = maxInt(max, d.Messages)
	}
	scale := niceCeil(max)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="Messages per day: DMARC pass and fail" xmlns="http://www.w3.org/2000/svg">`, w, h)
	plotH := h - bottom - top
	for i := 0; i <= 4; i++ { // grid lines and labels
		y := top + plotH - plotH*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#ddd" stroke-width="1"/>`, left, y, w, y)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" font-size="11" text-anchor="end" fill="#555">%d</text>`, left-6, y+4, scale*int64(i)/4)
	}
	n := len(days)
	if n > 0 {
		slot := (w - left) / float64(n)
		bw := slot * 0.8
		for i, d := range days {
			x := left + slot*float64(i) + slot*0.1
			pass := plotH * float64(d.DMARCPass) / float64(scale)
			fail := plotH * float64(d.Failing()) / float64(scale)
			fmt.Fprintf(&b, `<g><title>%s: %d messages, %d pass, %d fail</title>`, d.Key, d.Messages, d.DMARCPass, d.Failing())
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`, x, top+plotH-pass, bw, pass, passColour)
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/></g>`, x, top+plotH-pass-fail, bw, fail, failColour)
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" fill="#555">%s</text>`, left, h-6, days[0].Key)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-size="11" text-anchor="end" fill="#555">%s</text>`, w, h-6, days[n-1].Key)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // numbers and dates only
}

func maxInt(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten (at least 4, so
// that the four grid steps are whole numbers).
func niceCeil(n int64) int64 {
	if n <= 4 {
		return 4
	}
	for p := int64(1); ; p *= 10 {
		for _, m := range []int64{1, 2, 5} {
			if v := m * p; v >= n && v%4 == 0 {
				return v
			}
		}
	}
}
