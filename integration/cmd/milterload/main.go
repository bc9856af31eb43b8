// Command milterload is a milter load generator: it replays a corpus of
// messages with their envelopes against one milter, or a chain of milters
// the way Postfix chains them, through the milter protocol exactly as
// Postfix 3.7 speaks it (as observed with a logging milter: version 6 offered, default
// macros per stage, header values with their leading space and LF folds,
// CRLF body chunks of at most 65535 bytes, Abort after every message,
// several messages per connection), from N concurrent sessions, and
// reports messages per second, end-of-message latency percentiles, errors
// and the verdict mix. For soak runs it can pace itself (-rate), drop a
// share of connections at a random packet as a vanishing client would
// (-drop), and log the queue id of every message whose end-of-message
// reply arrived (-acked), to be checked against the records kept.
//
//	go run ./integration/cmd/milterload -corpus DIR -milter unix:/run/a.sock [-milter inet:127.0.0.1:8893] -c 16 -m 10 -d 25s
//	go run ./integration/cmd/milterload -corpus DIR -milter inet:127.0.0.1:8893 -rate 200 -drop 0.01 -acked acked.tsv -d 30m
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/authmilter/authmilter/integration/internal/acked"
	"github.com/authmilter/authmilter/internal/config"
)

// milterSpec is one milter socket of the chain.
type milterSpec struct {
	label, network, address string
}

// options configure a run.
type options struct {
	milters  []milterSpec
	corpus   []*message
	sessions int           // concurrent SMTP sessions
	perConn  int           // messages per connection
	duration time.Duration // run this long (0: count decides)
	count    int64         // or this many messages (0: duration decides)
	warmup   time.Duration // untimed run first (DNS caches warm)
	timeout  time.Duration // per milter read/write
	mtaHost  string
	trace    io.Writer     // when set, each message's replies and edits are written here
	rate     float64       // messages per second over all sessions (0: as fast as they go)
	drop     float64       // share of connections closed on purpose at a random packet
	seed     uint64        // for -drop
	acked    *acked.Writer // when set, gets every acknowledged message
	qidPre   string        // queue id prefix, to keep ids of several runs apart
}

// Latency summarises a latency distribution in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// Report is the result of a run.
type Report struct {
	Milters     []string         `json:"milters"`
	Sessions    int              `json:"sessions"`
	PerConn     int              `json:"messages_per_connection"`
	Seconds     float64          `json:"seconds"`
	Messages    int64            `json:"messages"`
	Connections int64            `json:"connections"`
	Errors      int64            `json:"errors"`
	Dropped     int64            `json:"dropped"` // connections closed on purpose (-drop)
	ErrorSample []string         `json:"error_sample,omitempty"`
	PerSecond   float64          `json:"messages_per_second"`
	Content     Latency          `json:"latency"`     // end of DATA (first header event) to the final reply
	EOM         Latency          `json:"eom_latency"` // end-of-message events only
	Verdicts    map[string]int64 `json:"verdicts"`
	HeaderAdded int64            `json:"header_added"`
	HeaderEdit  int64            `json:"header_changed"` // messages with a field changed or deleted
	// ByClass is the verdict mix per corpus class (the index's last column).
	ByClass map[string]map[string]int64 `json:"by_class,omitempty"`
}

// sessionStats is what one session collected.
type sessionStats struct {
	content, eom []time.Duration
	verdicts     [numVerdicts]int64
	headerAdded  int64
	headerEdit   int64
	byClass      map[string]*[numVerdicts]int64
	errors       int64
	dropped      int64
	conns        int64
	errSample    []string
}

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func cli(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("milterload", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var milters multiFlag
	fl.Var(&milters, "milter", "milter socket (unix:/path, inet:HOST:PORT, inet:PORT@HOST); repeat to chain them in Postfix order")
	corpusDir := fl.String("corpus", "", "corpus directory with index.tsv (see integration/bench/gen-corpus.sh)")
	var o options
	fl.IntVar(&o.sessions, "c", 16, "concurrent sessions")
	fl.IntVar(&o.perConn, "m", 10, "messages per connection")
	fl.DurationVar(&o.duration, "d", 10*time.Second, "run duration (ignored when -n is set)")
	fl.Int64Var(&o.count, "n", 0, "number of messages to send (0: run for -d)")
	fl.DurationVar(&o.warmup, "warmup", 0, "send messages this long first, not counted (warms DNS caches)")
	fl.DurationVar(&o.timeout, "timeout", 30*time.Second, "milter read/write timeout")
	fl.StringVar(&o.mtaHost, "mta-host", "mx.rcpt.test", "the MTA's host name (j macro)")
	asJSON := fl.Bool("json", false, "print the report as JSON")
	byClass := fl.Bool("classes", false, "also print the verdict mix per corpus class")
	trace := fl.Bool("trace", false, "write every message's end-of-message edits and replies to stderr (slow; use with -n)")
	fl.Float64Var(&o.rate, "rate", 0, "send at most this many messages per second in all (0: unpaced)")
	fl.Float64Var(&o.drop, "drop", 0, "share of connections (0 to 1) closed on purpose just before or after a random packet, as by a vanishing client")
	fl.Uint64Var(&o.seed, "seed", 0, "random seed for -drop (0: from the clock)")
	fl.StringVar(&o.qidPre, "qid-prefix", "", "prefix of the queue ids (i macro), e.g. to tell several runs' records apart")
	ackedPath := fl.String("acked", "", "append \"queue-id<TAB>file<TAB>verdict\" of every message whose end-of-message reply arrived to this file")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if len(milters) == 0 || *corpusDir == "" || fl.NArg() > 0 || o.drop < 0 || o.drop > 1 {
		fmt.Fprintln(stderr, "usage: milterload -corpus DIR -milter SOCKET [-milter SOCKET] [-c N] [-m N] [-d DUR | -n N] [-warmup DUR] [-json]")
		return 2
	}
	for _, spec := range milters {
		s, err := config.ParseSocket(spec)
		if err != nil {
			fmt.Fprintln(stderr, "milterload:", err)
			return 2
		}
		o.milters = append(o.milters, milterSpec{label: spec, network: s.Network, address: s.Address})
	}
	if o.count > 0 {
		o.duration = 0
	}
	if *trace {
		o.trace = stderr
	}
	if *ackedPath != "" {
		f, err := acked.Append(*ackedPath)
		if err != nil {
			fmt.Fprintln(stderr, "milterload:", err)
			return 1
		}
		defer func() {
			if err := f.Close(); err != nil {
				fmt.Fprintln(stderr, "milterload:", err)
			}
		}()
		o.acked = f.Writer
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	var err error
	if o.corpus, err = loadCorpus(*corpusDir); err != nil {
		fmt.Fprintln(stderr, "milterload:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "milterload:", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintln(stderr, "milterload:", err)
			return 1
		}
	} else {
		printReport(stdout, rep)
		if *byClass {
			printClasses(stdout, rep)
		}
	}
	if rep.Messages == 0 {
		return 1
	}
	return 0
}

// run performs the optional warm-up and then the measured run.
func run(ctx context.Context, o options) (*Report, error) {
	if len(o.milters) == 0 || len(o.corpus) == 0 {
		return nil, errors.New("no milter or no corpus")
	}
	if o.sessions <= 0 || o.perConn <= 0 {
		return nil, errors.New("sessions and messages per connection must be positive")
	}
	if o.duration <= 0 && o.count <= 0 {
		return nil, errors.New("need a duration or a message count")
	}
	pl := newPlan(o.corpus)
	if o.warmup > 0 {
		w := o
		w.duration, w.count = o.warmup, 0
		phase(ctx, w, pl)
	}
	start := time.Now()
	stats := phase(ctx, o, pl)
	elapsed := time.Since(start)
	return report(o, stats, elapsed), nil
}

// plan hands out messages: each connection starts at the next corpus
// message and goes on with messages from the same client (same IP, name
// and HELO), as one sending MTA would deliver them.
type plan struct {
	corpus   []*message
	byClient map[string][]*message
	pos      []int // index of corpus[i] in its client's list
	next     atomic.Int64
}

func newPlan(corpus []*message) *plan {
	p := &plan{corpus: corpus, byClient: map[string][]*message{}, pos: make([]int, len(corpus))}
	for i, m := range corpus {
		k := m.clientKey()
		p.pos[i] = len(p.byClient[k])
		p.byClient[k] = append(p.byClient[k], m)
	}
	return p
}

// connection returns the messages for the next connection.
func (p *plan) connection(n int) []*message {
	i := int(p.next.Add(1)-1) % len(p.corpus)
	list := p.byClient[p.corpus[i].clientKey()]
	out := make([]*message, n)
	for k := range out {
		out[k] = list[(p.pos[i]+k)%len(list)]
	}
	return out
}

// phase runs the sessions until the duration or count is used up.
func phase(ctx context.Context, o options, pl *plan) []*sessionStats {
	if o.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.duration)
		defer cancel()
	}
	var tickets, paced atomic.Int64
	start := time.Now()
	claim := func() bool {
		if ctx.Err() != nil {
			return false
		}
		if o.count > 0 && tickets.Add(1) > o.count {
			return false
		}
		if o.rate > 0 {
			// The n-th message is due n/rate seconds after the start.
			due := start.Add(time.Duration(float64(paced.Add(1)-1) / o.rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return false
				case <-time.After(d):
				}
			}
		}
		return true
	}
	stats := make([]*sessionStats, o.sessions)
	var wg sync.WaitGroup
	for s := range stats {
		st := &sessionStats{}
		stats[s] = st
		wg.Add(1)
		go func() {
			defer wg.Done()
			session(ctx, o, pl, st, uint16(30000+s), claim)
		}()
	}
	wg.Wait()
	return stats
}

// session is one SMTP client delivering messages connection after
// connection.
func session(ctx context.Context, o options, pl *plan, st *sessionStats, port uint16, claim func() bool) {
	rng := rand.New(rand.NewPCG(o.seed, uint64(port)))
	fail := func(err error) {
		if errors.Is(err, errDropped) {
			st.dropped++
			return
		}
		st.errors++
		if len(st.errSample) < 3 {
			st.errSample = append(st.errSample, err.Error())
		}
	}
	for ctx.Err() == nil {
		if !claim() {
			return
		}
		msgs := pl.connection(o.perConn)
		var drop *dropper
		if o.drop > 0 && rng.Float64() < o.drop {
			// Just before or just after a packet anywhere in the
			// connection: option negotiation to the final Quit.
			drop = &dropper{left: 1 + rng.IntN(packetEstimate(msgs, len(o.milters))), after: rng.IntN(2) == 0}
		}
		c, err := openConn(o.milters, o.timeout, o.mtaHost, msgs[0], port, drop)
		if errors.Is(err, errDropped) {
			fail(err)
			continue
		}
		if err != nil {
			fail(err)
			select { // do not spin on a dead socket
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		st.conns++
		c.trace = o.trace != nil
		c.qidPre = o.qidPre
		ok := true
		for k, m := range msgs {
			if k > 0 && !claim() {
				break
			}
			out, err := c.send(m)
			if out.acked && o.acked != nil {
				if err := o.acked.Write(acked.Entry{QueueID: out.queueID, File: m.file, Verdict: verdictNames[out.verdict]}); err != nil {
					fail(err)
				}
			}
			if err != nil && !(out.acked && errors.Is(err, errDropped)) {
				fail(err)
				ok = false
				break
			}
			if o.trace != nil {
				traceMu.Lock()
				fmt.Fprintf(o.trace, "%s %s %s\n\t%s\n", m.file, m.class, verdictNames[out.verdict], strings.Join(out.trace, "\n\t"))
				traceMu.Unlock()
			}
			st.verdicts[out.verdict]++
			if m.class != "" {
				if st.byClass == nil {
					st.byClass = map[string]*[numVerdicts]int64{}
				}
				if st.byClass[m.class] == nil {
					st.byClass[m.class] = new([numVerdicts]int64)
				}
				st.byClass[m.class][out.verdict]++
			}
			if out.headerAdded {
				st.headerAdded++
			}
			if out.headerEdit {
				st.headerEdit++
			}
			st.content = append(st.content, out.content)
			st.eom = append(st.eom, out.eom)
			if err != nil { // dropped after the reply: the message counts
				fail(err)
				ok = false
				break
			}
		}
		if ok {
			if err := c.quit(drop); err != nil {
				fail(err)
			}
		} else {
			c.close()
		}
	}
}

var traceMu sync.Mutex

// packetEstimate is about how many packets a connection carrying msgs
// sends to each milter (macros and event per step, body chunks, Abort),
// so that a drop point drawn below it falls anywhere in the connection.
func packetEstimate(msgs []*message, milters int) int {
	n := 1 + 4 + 2 // OPTNEG, CONNECT and HELO with their macros, Abort and Quit
	for _, m := range msgs {
		n += 2 * (1 + len(m.rcpts) + 1 + len(m.fields) + 1 + (len(m.body)+maxBodyChunk-1)/maxBodyChunk + 1)
		n++ // Abort
	}
	return n * milters
}

func report(o options, stats []*sessionStats, elapsed time.Duration) *Report {
	r := &Report{Sessions: o.sessions, PerConn: o.perConn, Seconds: elapsed.Seconds(), Verdicts: map[string]int64{}}
	for _, m := range o.milters {
		r.Milters = append(r.Milters, m.label)
	}
	var content, eom []time.Duration
	for _, st := range stats {
		content = append(content, st.content...)
		eom = append(eom, st.eom...)
		for v, n := range st.verdicts {
			r.Verdicts[verdictNames[v]] += n
			r.Messages += n
		}
		r.HeaderAdded += st.headerAdded
		r.HeaderEdit += st.headerEdit
		for class, counts := range st.byClass {
			if r.ByClass == nil {
				r.ByClass = map[string]map[string]int64{}
			}
			if r.ByClass[class] == nil {
				r.ByClass[class] = map[string]int64{}
			}
			for v, n := range counts {
				if n > 0 {
					r.ByClass[class][verdictNames[v]] += n
				}
			}
		}
		r.Errors += st.errors
		r.Dropped += st.dropped
		r.Connections += st.conns
		for _, e := range st.errSample {
			if len(r.ErrorSample) < 5 {
				r.ErrorSample = append(r.ErrorSample, e)
			}
		}
	}
	if elapsed > 0 {
		r.PerSecond = float64(r.Messages) / elapsed.Seconds()
	}
	r.Content = summarise(content)
	r.EOM = summarise(eom)
	return r
}

func summarise(d []time.Duration) Latency {
	if len(d) == 0 {
		return Latency{}
	}
	slices.Sort(d)
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	at := func(q float64) float64 { return ms(d[min(len(d)-1, int(q*float64(len(d))))]) }
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return Latency{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(d[len(d)-1]), Mean: ms(sum / time.Duration(len(d)))}
}

func printReport(w io.Writer, r *Report) {
	fmt.Fprintf(w, "milters      %s\n", strings.Join(r.Milters, " -> "))
	fmt.Fprintf(w, "sessions     %d, %d messages per connection, %d connections\n", r.Sessions, r.PerConn, r.Connections)
	fmt.Fprintf(w, "messages     %d in %.1f s = %.1f msg/s, errors %d, dropped connections %d\n", r.Messages, r.Seconds, r.PerSecond, r.Errors, r.Dropped)
	lat := func(name string, l Latency) {
		fmt.Fprintf(w, "%-12s p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  mean %.2f ms\n", name, l.P50, l.P90, l.P99, l.Max, l.Mean)
	}
	lat("latency", r.Content)
	lat("eom latency", r.EOM)
	fmt.Fprintf(w, "verdicts    ")
	for _, n := range verdictNames {
		fmt.Fprintf(w, " %s %d", n, r.Verdicts[n])
	}
	fmt.Fprintf(w, "; header added %d, changed %d\n", r.HeaderAdded, r.HeaderEdit)
	for _, e := range r.ErrorSample {
		fmt.Fprintf(w, "error        %s\n", e)
	}
}

func printClasses(w io.Writer, r *Report) {
	classes := make([]string, 0, len(r.ByClass))
	for c := range r.ByClass {
		classes = append(classes, c)
	}
	slices.Sort(classes)
	for _, c := range classes {
		fmt.Fprintf(w, "class %-22s", c)
		for _, n := range verdictNames {
			if k := r.ByClass[c][n]; k > 0 {
				fmt.Fprintf(w, " %s %d", n, k)
			}
		}
		fmt.Fprintln(w)
	}
}
