package fold

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/tether-sh/tether/internal/targets"
)

// Summary is the end of a run on many targets.
type Summary struct {
	Total     int           `json:"total"`
	Succeeded int           `json:"succeeded"`
	Failed    int           `json:"failed"`
	Failures  []Failure     `json:"failures"` // largest first; empty, not null, when none failed
	Elapsed   time.Duration `json:"-"`
	ElapsedMS int64         `json:"elapsed_ms"`
}

// Failure is the targets that failed the same way: one exit status, or one
// error (compared after ErrorText).
type Failure struct {
	Targets    string   `json:"targets"` // folded
	List       []string `json:"-"`
	Count      int      `json:"count"`
	ExitStatus int      `json:"exit_code"`
	Error      string   `json:"error,omitempty"`
}

// Summarize counts results: a target succeeded when its command ran and
// exited 0. Failures are folded by exit status and error.
func Summarize(results []Result, elapsed time.Duration) Summary {
	s := Summary{Total: len(results), Elapsed: elapsed, ElapsedMS: elapsed.Milliseconds(), Failures: []Failure{}}
	type fkey struct {
		status int
		err    string
	}
	idx := map[fkey]int{}
	var firstErr []error
	for _, r := range results {
		if r.Err == nil && r.ExitStatus == 0 {
			s.Succeeded++
			continue
		}
		s.Failed++
		k := fkey{r.ExitStatus, ErrorText(r.Target, r.Err)}
		if i, ok := idx[k]; ok {
			s.Failures[i].List = append(s.Failures[i].List, r.Target)
			continue
		}
		idx[k] = len(s.Failures)
		s.Failures = append(s.Failures, Failure{List: []string{r.Target}, ExitStatus: r.ExitStatus, Error: k.err})
		firstErr = append(firstErr, r.Err)
	}
	for i := range s.Failures {
		f := &s.Failures[i]
		f.Count = len(f.List)
		f.Targets = targets.Fold(f.List)
		if f.Count == 1 && firstErr[i] != nil {
			f.Error = firstErr[i].Error()
		}
	}
	sort.SliceStable(s.Failures, func(i, j int) bool { return s.Failures[i].Count > s.Failures[j].Count })
	return s
}

// Text is the summary for people:
//
//	200 targets: 197 succeeded, 3 failed (1.24s)
//	  web[003,017] (2): exit status 1
//	  web042 (1): error: dial tcp HOST:4422: connection refused
func (s Summary) Text() string {
	var b strings.Builder
	if s.Failed == 0 {
		fmt.Fprintf(&b, "%d targets: all succeeded (%s)\n", s.Total, roundElapsed(s.Elapsed))
		return b.String()
	}
	fmt.Fprintf(&b, "%d targets: %d succeeded, %d failed (%s)\n", s.Total, s.Succeeded, s.Failed, roundElapsed(s.Elapsed))
	for _, f := range s.Failures {
		how := fmt.Sprintf("exit status %d", f.ExitStatus)
		if f.Error != "" {
			how = "error: " + f.Error
		}
		fmt.Fprintf(&b, "  %s (%d): %s\n", f.Targets, f.Count, how)
	}
	return b.String()
}

// WriteJSON writes the summary as one JSON line, the final record of
// --json output: {"summary":{"total":…,"succeeded":…,"failed":…,
// "failures":[{"targets":"web[1-2]","count":2,"exit_code":1}],"elapsed_ms":…}}.
func (s Summary) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(struct {
		Summary Summary `json:"summary"`
	}{s})
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func roundElapsed(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
