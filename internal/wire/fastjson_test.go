package wire

import (
	"bytes"
	"encoding/json"
	"reflect"
	"runtime"
	"testing"
	"time"
)

// plainRequest is Request without its MarshalJSON: encoding/json's own
// encoding, which the fast path must reproduce byte for byte.
type plainRequest Request

var oddStrings = []string{
	"", "true", "a b", `quote " backslash \ slash /`, "<script>&amp;</script>",
	"tab\tnl\ncr\rbs\bff\f", "\x00\x01\x1f\x7f", "é ü 日本 🙂", "line\u2028para\u2029",
	"ends with \\", "{\"nested\":1}",
}

func TestFastEncodeIsEncodingJSON(t *testing.T) {
	hellos := []Hello{{}, {Proto: 2}, {Proto: 2, Software: "tether 0.1.0-dev (protocol 2, go1.26.8, linux/amd64)"},
		{Proto: -1, User: "alice", Admin: true, RemoteAddr: "127.0.0.1:5555"}}
	reqs := []Request{
		{},
		{Op: OpRun, Session: "work", Client: Client{ID: "3f3893fc8790589c", Host: "vm (client 3f3893)"}, Command: "true", Grace: Duration(4 * time.Minute)},
		{Op: OpRun, Session: "s", Command: "cat >/dev/null", Stdin: true, Detach: true, Reuse: true, EndMark: true, After: 1 << 63, Cmd: 1<<32 - 1},
		{Op: OpNew, IdleTimeout: "1h", Temporary: true, Shell: "bash", NoProfile: true},
		{Op: OpAttach, Session: "s", Cmd: 7, After: 12, All: true, Force: true, Hold: true, Grace: Duration(1500 * time.Millisecond)},
		{Op: OpConfigSet, Key: "IdleTimeout", Value: "2h", Owner: "bob", HelpCommand: "x", Reason: "why", AllUsers: true, Module: "m", ArgvEncoding: "argv:base64"},
		{Grace: Duration(-time.Second)},
		{Op: OpRun, Session: "implicit", Module: "benchmod", Argv: Args{"true", "", "a b", "\xff\x00"}, ArgvEncoding: "argv:base64"},
	}
	for _, s := range oddStrings {
		hellos = append(hellos, Hello{Proto: 2, Software: s, User: s})
		reqs = append(reqs, Request{Op: Op(s), Session: s, Client: Client{ID: s, Host: s}, Command: s, Key: s})
	}
	for _, h := range hellos {
		want, _ := json.Marshal(h)
		got, ok := appendHello(nil, &h)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("hello %+v:\n fast %s (%v)\n json %s", h, got, ok, want)
		}
	}
	for _, r := range reqs {
		want, _ := json.Marshal(plainRequest(r))
		got, ok := appendRequest(nil, &r)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("request %+v:\n fast %s (%v)\n json %s", r, got, ok, want)
		}
		if m, _ := json.Marshal(r); !bytes.Equal(m, want) { // through MarshalJSON
			t.Errorf("json.Marshal(request) = %s, want %s", m, want)
		}
	}
}

// Fields the fast path leaves to encoding/json still encode as before.
func TestFastEncodeLeavesTheRest(t *testing.T) {
	for _, r := range []Request{
		{Op: OpRun, TTY: &TTY{Term: "xterm", Rows: 24, Cols: 80}},
		{Op: OpHash, Files: []HashFile{{Path: "/a", Length: 3}}},
		{Op: OpRun, Limits: &Limits{JournalBytes: 1}},
		{Op: OpRun, Command: "bad \xff utf-8"},
		{Op: OpRun, Session: "bad \xff"},
	} {
		if _, ok := appendRequest(nil, &r); ok {
			t.Errorf("fast path took %+v", r)
		}
		b, err := marshalRequest(r)
		var back Request
		if err != nil || json.Unmarshal(b, &back) != nil {
			t.Fatalf("marshalRequest(%+v) = %s, %v", r, b, err)
		}
	}
	b, _ := marshalRequest(Request{Op: OpRun, Command: "bad \xff utf-8"})
	var back Request
	json.Unmarshal(b, &back)
	if back.Script() != "bad \xff utf-8" {
		t.Fatalf("a command that is not UTF-8 came back as %q", back.Script())
	}
}

// The shapes a fresh invoke reads take the fast path.
func TestFastDecodeTakesTheCommonShapes(t *testing.T) {
	for _, p := range []string{
		`{"proto":2,"software":"tether 0.1.0-dev (protocol 2, go1.26.8, linux/amd64)"}`,
		`{"ok":true,"cmd":3,"start_seq":17}`,
		` { "ok" : false , "cmd" : 0 } `,
		`{}`,
		runResponse,
	} {
		if !flatObject([]byte(p), func(string, []byte, int) bool { return true }) {
			t.Errorf("fast path refused %s", p)
		}
	}
	var fast, slow Response
	if !flatObject([]byte(runResponse), func(string, []byte, int) bool { return true }) {
		t.Fatal("a run's response is not flat")
	}
	if err := unmarshalResponse([]byte(runResponse), &fast); err != nil || json.Unmarshal([]byte(runResponse), &slow) != nil || !reflect.DeepEqual(fast, slow) {
		t.Fatalf("run response: fast %+v (%v), json %+v", fast, err, slow)
	}
	if fast.Session == nil || fast.Session.HeldSince.IsZero() || fast.Session.Pending != 26 {
		t.Fatalf("session not decoded: %+v", fast.Session)
	}
	var r Response
	if err := unmarshalResponse([]byte(`{"ok":true,"cmd":3,"start_seq":17,"stdin_offset":5,"until":9,"max_packet":32768,"cwd":"/h","home":"/h","umask":"022","hash":"xxh3","help":"h","text":"t"}`), &r); err != nil {
		t.Fatal(err)
	}
	want := Response{OK: true, Cmd: 3, StartSeq: 17, StdinOffset: 5, Until: 9, MaxPacket: 32768, Cwd: "/h", Home: "/h", Umask: "022", Hash: "xxh3", Help: "h", Text: "t"}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("decoded %+v, want %+v", r, want)
	}
}

// runResponse is a session host's answer to a run (as read off the wire).
const runResponse = `{"ok":true,"session":{"name":"d8vrgk","user":"root","state":"Opened","availability":"Busy","created":"2026-12-01T20:40:09.968862208Z","command":"true","shell":"builtin","held_by":"vm (client 3f3893)","held_since":"2026-12-01T20:55:42.40882366Z","pending_bytes":26},"cmd":1937,"start_seq":3874}`

var decodeSeeds = []string{
	runResponse, `{"session":{"name":"a"},"session":{"user":"b"}}`, `{"session":{"created":"2026-13-01T00:00:00Z"}}`,
	`{"session":{"created":"2026-12-01T20:40:09+01:00","temporary":true,"closes_at":"2026-12-01T20:40:09.1Z"}}`,
	`{"session":{"name":"a\"}"}}`, `{"session":{"x":{}}}`, `{"session":{}}`, `{"session":{"name":"a"}`, `{"session":"s"}`,
	`{"proto":2,"software":"tether"}`, `{"proto":2,"user":"alice","admin":true,"remote_addr":"1.2.3.4:5"}`,
	`{"ok":true,"cmd":3,"start_seq":17}`, `{"ok":false,"error":{"code":"busy","message":"m"}}`,
	`{"ok":true,"session":{"name":"s","user":"u","state":"running","availability":"Available"}}`,
	`{"OK":true}`, `{"ok":1}`, `{"cmd":-1}`, `{"cmd":4294967296}`, `{"start_seq":18446744073709551616}`,
	`{"proto":1e3}`, `{"ok":true,"ok":false}`, `{"text":"a\"b"}`, `{"text":"\u00e9"}`, `{"help":"\xff"}`,
	`{"cmd":01}`, `{"ok":null}`, `{"ok":true,}`, `{"ok":true}x`, `[]`, `"s"`, ``, `{"proto":2.5}`,
	`{"max_packet":-5}`, `{"admin":"true"}`, `{"unknown":1}`, `{"proto":2, "software":"a\tb"}`,
}

// The fast decoders read what encoding/json reads, and fail where it fails.
func FuzzFastDecode(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var fr, jr Response
		ferr, jerr := unmarshalResponse(p, &fr), json.Unmarshal(p, &jr)
		if (ferr == nil) != (jerr == nil) || (jerr == nil && !reflect.DeepEqual(fr, jr)) {
			t.Fatalf("response %q: fast %+v, %v; json %+v, %v", p, fr, ferr, jr, jerr)
		}
		var fh, jh Hello
		ferr, jerr = unmarshalHello(p, &fh), json.Unmarshal(p, &jh)
		if (ferr == nil) != (jerr == nil) || (jerr == nil && !reflect.DeepEqual(fh, jh)) {
			t.Fatalf("hello %q: fast %+v, %v; json %+v, %v", p, fh, ferr, jh, jerr)
		}
	})
}

// The fast encoders write what encoding/json writes, for any strings.
func FuzzFastEncode(f *testing.F) {
	for _, s := range oddStrings {
		f.Add(s, s, uint64(len(s)), int64(len(s))*int64(time.Second))
	}
	f.Fuzz(func(t *testing.T, a, b string, n uint64, grace int64) {
		r := Request{Op: OpRun, Session: a, Client: Client{ID: b, Host: a}, Command: b, After: n, Cmd: uint32(n), Grace: Duration(grace), Key: a, Stdin: n%2 == 0}
		if n%3 == 0 {
			r.Argv = Args{a, "", b}
		}
		if got, ok := appendRequest(nil, &r); ok {
			if want, _ := json.Marshal(plainRequest(r)); !bytes.Equal(got, want) {
				t.Fatalf("request %+v:\n fast %s\n json %s", r, got, want)
			}
		}
		h := Hello{Proto: int(grace), Software: a, User: b, RemoteAddr: a}
		if got, ok := appendHello(nil, &h); ok {
			if want, _ := json.Marshal(h); !bytes.Equal(got, want) {
				t.Fatalf("hello %+v:\n fast %s\n json %s", h, got, want)
			}
		}
	})
}

// testRequests are requests of every shape the fast paths cover, and some
// they leave to encoding/json.
func testRequests() []Request {
	reqs := []Request{
		{},
		{Op: OpRun, Session: "work", Client: Client{ID: "3f3893fc8790589c", Host: "vm (client 3f3893)"}, Command: "true", Grace: Duration(4 * time.Minute), EndMark: true},
		{Op: OpRun, Session: "s", Command: "cat >/dev/null && echo \"done\" | tr a-z A-Z 2>&1", Stdin: true, Detach: true, Reuse: true, After: 1 << 63, Cmd: 1<<32 - 1},
		{Op: OpNew, IdleTimeout: "1h", Temporary: true, Shell: "bash", NoProfile: true},
		{Op: OpAttach, Session: "s", Cmd: 7, After: 12, All: true, Force: true, Hold: true, Grace: Duration(1500 * time.Millisecond)},
		{Op: OpConfigSet, Key: "IdleTimeout", Value: "2h", Owner: "bob", HelpCommand: "x", Reason: "why", AllUsers: true, Module: "m", ArgvEncoding: "argv:base64", FdPass: true},
		{Grace: Duration(-time.Second)},
		{Grace: Duration(time.Microsecond)}, // "1µs"
		{Op: OpRun, Session: "implicit", Module: "benchmod", Argv: Args{"true", "", "a b", "\xff\x00"}, ArgvEncoding: "argv:base64"},
		{Op: OpRun, TTY: &TTY{Term: "xterm", Rows: 24, Cols: 80}},
		{Op: OpRun, Command: "bad \xff utf-8"},
	}
	for _, s := range oddStrings {
		reqs = append(reqs, Request{Op: Op(s), Session: s, Client: Client{ID: s, Host: s}, Command: s, Key: s})
	}
	return reqs
}

// A request decodes as encoding/json decodes it, on the fast path for
// every request the fast encoder writes.
func TestFastRequestDecodeIsEncodingJSON(t *testing.T) {
	for _, r := range testRequests() {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var fast, slow Request
		if err := unmarshalRequest(b, &fast); err != nil || json.Unmarshal(b, &slow) != nil || !reflect.DeepEqual(fast, slow) {
			t.Errorf("%s:\n fast %+v (%v)\n json %+v", b, fast, err, slow)
		}
		_, simple := appendRequest(nil, &r)
		simple = simple && len(r.Argv) == 0 // argv is an array: encoding/json's
		var v Request
		if got := fastRequest(b, &v); got != simple {
			t.Errorf("fastRequest(%s) = %v, want %v", b, got, simple)
		}
	}
}

// A response encodes as encoding/json encodes it; the run's own on the
// fast path.
func TestFastResponseEncodeIsEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 3, 19, 40, 9, 968862208, time.UTC)
	resps := []Response{
		{},
		{OK: true, Session: &SessionInfo{Name: "d8vrgk", User: "root", State: "Opened", Availability: "Busy", Created: at, Command: "true", Shell: "builtin", HeldBy: "vm (client 3f3893)", HeldSince: at.Add(time.Second), Pending: 26}, Cmd: 1937, StartSeq: 3874},
		{OK: true, Session: &SessionInfo{Temporary: true, IdleSince: at.In(time.FixedZone("x", 3600)), ClosesAt: at, ClosedBy: "agent", ClosedAt: at, Reason: "r"}, StdinOffset: 5, Until: 9},
		{Error: &Error{Code: CodeBusy, Message: "session s is busy running \"sleep 9\"; <wait>"}},
		{OK: true, Cwd: "/h", Home: "/h", Umask: "022", MaxPacket: 32768, Hash: "xxh3", Help: "h", Text: "t"},
		{MaxPacket: -1, Sessions: []SessionInfo{}, Config: []ConfigEntry{}},
	}
	for _, s := range oddStrings {
		resps = append(resps, Response{OK: true, Text: s, Error: &Error{Code: s, Message: s}, Session: &SessionInfo{Name: s, Command: s}})
	}
	for _, r := range resps {
		want, _ := json.Marshal(r)
		got, ok := appendResponse(nil, &r)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("response %+v:\n fast %s (%v)\n json %s", r, got, ok, want)
		}
	}
	for _, r := range []Response{
		{Sessions: []SessionInfo{{Name: "a"}}},
		{Hashes: []HashResult{{}}},
		{Text: "\xff"},
		{Session: &SessionInfo{Created: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}},
	} {
		if _, ok := appendResponse(nil, &r); ok {
			t.Errorf("fast path took %+v", r)
		}
		want, werr := json.Marshal(r)
		got, gerr := marshalResponse(&r)
		if !bytes.Equal(got, want) || (werr == nil) != (gerr == nil) {
			t.Errorf("marshalResponse(%+v) = %s, %v; json %s, %v", r, got, gerr, want, werr)
		}
	}
}

var requestSeeds = []string{
	`{"op":"run","session":"s","client":{"id":"a","host":"b"},"command":"echo \"hi\" \u003e/dev/null \u0026\u0026 true","grace":"4m0s","end_mark":true}`,
	`{"op":"run","client":{"id":"a"},"client":{"host":"b"}}`, `{"client":{"id":1}}`, `{"client":"x"}`, `{"client":{"ID":"a"}}`,
	`{"grace":"4m\u0030s"}`, `{"grace":"1µs"}`, `{"grace":"x"}`, `{"grace":5}`, `{"cmd":4294967296}`, `{"after":18446744073709551615}`,
	`{"op":"r\u00e9n"}`, `{"command":"\ud83d\ude00"}`, `{"command":"\ud83d"}`, `{"command":"a\/b\b\f\n\r\t"}`, `{"command":"\x"}`,
	`{"command":"\u00zz"}`, `{"command":"tail\\"}`, `{"Op":"run"}`, `{"stdin":1}`, `{"stdin":true,"stdin":false}`,
	`{"argv":["dHJ1ZQ=="]}`, `{"tty":{"term":"x"}}`, `{"op":"run"`, `{"op":"run"}}`, `{"\u006fp":"run"}`, `{"op":"\xff"}`,
}

// The request decoder reads what encoding/json reads, and fails where it fails.
func FuzzFastRequestDecode(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	for _, r := range testRequests() {
		b, _ := json.Marshal(r)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		var fr, jr Request
		ferr, jerr := unmarshalRequest(p, &fr), json.Unmarshal(p, &jr)
		if (ferr == nil) != (jerr == nil) || (jerr == nil && !reflect.DeepEqual(fr, jr)) {
			t.Fatalf("request %q: fast %+v, %v; json %+v, %v", p, fr, ferr, jr, jerr)
		}
	})
}

// The response encoder writes what encoding/json writes, for any strings.
func FuzzFastResponseEncode(f *testing.F) {
	for _, s := range oddStrings {
		f.Add(s, s, uint64(len(s)), int64(len(s))*int64(time.Second))
	}
	f.Fuzz(func(t *testing.T, a, b string, n uint64, nanos int64) {
		at := time.Unix(0, nanos).In(time.FixedZone(a, int(n%50000)))
		r := Response{OK: n%2 == 0, Cmd: uint32(n), StartSeq: n, Text: a, Cwd: b, MaxPacket: int(nanos),
			Session: &SessionInfo{Name: a, User: b, Created: at, HeldSince: at, Command: b, Pending: n}}
		if n%3 == 0 {
			r.Error = &Error{Code: a, Message: b}
		}
		if got, ok := appendResponse(nil, &r); ok {
			if want, _ := json.Marshal(r); !bytes.Equal(got, want) {
				t.Fatalf("response %+v:\n fast %s\n json %s", r, got, want)
			}
		}
	})
}

// A frame of many short escaped strings (hostile: a client sends what it
// likes) costs the decoder memory in proportion to the frame, not to its
// square: each escaped string once allocated the rest of the frame.
func TestFastRequestDecodeAllocatesLinearly(t *testing.T) {
	var b bytes.Buffer
	b.WriteString(`{"op":"run"`)
	for b.Len() < 1<<20 {
		b.WriteString(`,"op":"\n","\u0073ession":"\t"`)
	}
	b.WriteString(`}`)
	frame := b.Bytes()

	var want Request
	if err := json.Unmarshal(frame, &want); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var got Request
	if err := unmarshalRequest(frame, &got); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded %+v, encoding/json %+v", got, want)
	}
	// Linear is a few bytes per escaped string; the square of 1 MiB is
	// gigabytes.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16*uint64(len(frame)) {
		t.Errorf("decoding a %d-byte frame allocated %d bytes", len(frame), alloc)
	}
}
