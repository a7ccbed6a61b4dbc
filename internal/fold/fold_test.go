package fold

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func res(target, out string, status int) Result {
	return Result{Target: target, Stdout: []byte(out), ExitStatus: status}
}

func TestGroups(t *testing.T) {
	refused := func(h string) error { return fmt.Errorf("dial tcp %s:4422: connect: connection refused", h) }
	results := []Result{
		res("web01/deploy", "ok\n", 0),
		res("web02/deploy", "ok\n", 0),
		res("web05/deploy", "disk full\n", 1),
		res("web03/deploy", "ok\n", 0),
		res("web06/deploy", "disk full\n", 1),
		res("web07/deploy", "ok\n", 0),
		res("web08/deploy", "ok\n", 3),                                             // same output, other status
		{Target: "web09/deploy", Stdout: []byte("ok\n"), Stderr: []byte("warn\n")}, // same stdout, other stderr
		{Target: "db1", ExitStatus: 255, Err: refused("db1")},
		{Target: "db2", ExitStatus: 255, Err: refused("db2")},
		{Target: "u@db3:2222", ExitStatus: 255, Err: refused("db3")},
		{Target: "db4", ExitStatus: 255, Err: errors.New("host key mismatch")},
	}
	got := Groups(results)
	type row struct {
		targets string
		count   int
		out     string
		status  int
		err     string
	}
	var rows []row
	for _, g := range got {
		rows = append(rows, row{g.Targets, g.Count, string(g.Stdout), g.ExitStatus, g.Err})
	}
	want := []row{
		{"web[01-03,07]/deploy", 4, "ok\n", 0, ""},
		{"db[1-2],u@db3:2222", 3, "", 255, "dial tcp HOST:4422: connect: connection refused"},
		{"web[05-06]/deploy", 2, "disk full\n", 1, ""},
		{"web08/deploy", 1, "ok\n", 3, ""},
		{"web09/deploy", 1, "ok\n", 0, ""},
		{"db4", 1, "", 255, "host key mismatch"},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("got\n%v\nwant\n%v", rows, want)
	}
	if !reflect.DeepEqual(got[0].List, []string{"web01/deploy", "web02/deploy", "web03/deploy", "web07/deploy"}) {
		t.Errorf("list %q", got[0].List)
	}

	var b bytes.Buffer
	if err := Write(&b, got[:4]); err != nil {
		t.Fatal(err)
	}
	const text = `---------------
web[01-03,07]/deploy (4)
---------------
ok
---------------
db[1-2],u@db3:2222 (3) error: dial tcp HOST:4422: connect: connection refused
---------------
---------------
web[05-06]/deploy (2) exit status 1
---------------
disk full
---------------
web08/deploy (1) exit status 3
---------------
ok
`
	if b.String() != text {
		t.Fatalf("Write:\n%s", b.String())
	}
	b.Reset()
	Write(&b, []Group{{Targets: "a", Count: 1, Stdout: []byte("no newline"), Stderr: []byte("e")}})
	if !strings.HasSuffix(b.String(), "no newline\n(stderr)\ne\n") {
		t.Fatalf("stderr and newlines: %q", b.String())
	}
}

func TestGroupsSingleErrorKeepsItsWords(t *testing.T) {
	g := Groups([]Result{{Target: "web1", ExitStatus: 255, Err: errors.New("dial web1: no route")}})
	if g[0].Err != "dial web1: no route" {
		t.Fatalf("got %q", g[0].Err)
	}
}

func TestErrorText(t *testing.T) {
	for _, tc := range []struct{ target, err, want string }{
		{"web1", "dial tcp web1:4422: refused", "dial tcp HOST:4422: refused"},
		{"u@web1:2222/s", "session u@web1:2222/s: gone", "session HOST: gone"},
		{"u@web1:2222/s", "dial web1:2222: refused", "dial HOST: refused"},
		{"[::1]:4422", "dial [::1]:4422: refused", "dial HOST: refused"},
		{"a", "a bad thing", "a bad thing"}, // one letter is not replaced
	} {
		if got := ErrorText(tc.target, errors.New(tc.err)); got != tc.want {
			t.Errorf("ErrorText(%q, %q) = %q, want %q", tc.target, tc.err, got, tc.want)
		}
	}
	if ErrorText("x", nil) != "" {
		t.Error("nil error has text")
	}
}

func TestSummary(t *testing.T) {
	var results []Result
	for i := 1; i <= 197; i++ {
		results = append(results, res(fmt.Sprintf("web%03d", i), "ok\n", 0))
	}
	results = append(results,
		res("web198", "", 1), res("web199", "", 1),
		Result{Target: "web200", ExitStatus: 255, Err: errors.New("dial tcp web200:4422: connection refused")})
	s := Summarize(results, 1237*time.Millisecond)
	if s.Total != 200 || s.Succeeded != 197 || s.Failed != 3 {
		t.Fatalf("%+v", s)
	}
	const text = `200 targets: 197 succeeded, 3 failed (1.24s)
  web[198-199] (2): exit status 1
  web200 (1): error: dial tcp web200:4422: connection refused
`
	if s.Text() != text {
		t.Fatalf("Text:\n%s", s.Text())
	}
	var b bytes.Buffer
	if err := s.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	const js = `{"summary":{"total":200,"succeeded":197,"failed":3,"failures":[{"targets":"web[198-199]","count":2,"exit_code":1},{"targets":"web200","count":1,"exit_code":255,"error":"dial tcp web200:4422: connection refused"}],"elapsed_ms":1237}}` + "\n"
	if b.String() != js {
		t.Fatalf("JSON:\n%s", b.String())
	}
	var back map[string]map[string]any
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}

	ok := Summarize(results[:3], 250*time.Millisecond)
	if ok.Text() != "3 targets: all succeeded (250ms)\n" {
		t.Fatalf("all ok: %q", ok.Text())
	}
	b.Reset()
	ok.WriteJSON(&b)
	if !strings.Contains(b.String(), `"failures":[]`) {
		t.Fatalf("no failures must be [], not null: %s", b.String())
	}
}

// BenchmarkGroups10000Identical: 10,000 targets with the same output fold
// into one group (issue 16: ≤ 50 ms with the expansion).
func BenchmarkGroups10000Identical(b *testing.B) {
	results := make([]Result, 10000)
	out := []byte("Linux 6.1.0-18-amd64 x86_64 GNU/Linux\n")
	for i := range results {
		results[i] = Result{Target: fmt.Sprintf("n%05d", i+1), Stdout: out}
	}
	b.ResetTimer()
	for b.Loop() {
		g := Groups(results)
		if len(g) != 1 || g[0].Targets != "n[00001-10000]" {
			b.Fatal(g[0].Targets)
		}
	}
}

func BenchmarkSummarize10000(b *testing.B) {
	results := make([]Result, 10000)
	for i := range results {
		results[i] = Result{Target: fmt.Sprintf("n%05d", i+1), ExitStatus: i % 3}
	}
	b.ResetTimer()
	for b.Loop() {
		if s := Summarize(results, time.Second); len(s.Failures) != 2 {
			b.Fatal(s)
		}
	}
}
