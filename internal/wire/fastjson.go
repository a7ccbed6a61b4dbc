package wire

import (
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// The fresh CLI process sends a Hello and a Request and reads a Hello and a
// Response, once each: through encoding/json that was 5–8 % of a fresh
// `tether invoke`'s CPU, nearly all of it reflection building the types'
// encoders and field tables on first use (#18). These hand-written codecs
// cover the shapes a run, attach or status exchange has (flat objects of
// strings, numbers and booleans); anything else — a nested object, an
// array, an escape in a string, a key spelt differently — goes to
// encoding/json, so the bytes on the wire and the values read are exactly
// encoding/json's (fastjson_test.go checks both, and fuzzes them).

// appendHello appends h as encoding/json would encode it.
func appendHello(b []byte, h *Hello) ([]byte, bool) {
	ok := true
	b = append(b, `{"proto":`...)
	b = strconv.AppendInt(b, int64(h.Proto), 10)
	b, ok = appendStringField(b, ok, `,"software":`, h.Software)
	b, ok = appendStringField(b, ok, `,"user":`, h.User)
	b = appendBoolField(b, `,"admin":`, h.Admin)
	b, ok = appendStringField(b, ok, `,"remote_addr":`, h.RemoteAddr)
	return append(b, '}'), ok
}

// appendRequest appends r as encoding/json would encode it (after
// MarshalJSON's CommandBytes rule); false when r has a field it leaves to
// encoding/json (tty, files, limits, command bytes, a string that is not
// UTF-8).
func appendRequest(b []byte, r *Request) ([]byte, bool) {
	if len(r.CommandBytes) > 0 || r.TTY != nil || len(r.Files) > 0 || r.Limits != nil {
		return b, false
	}
	ok := true
	b = append(b, `{"op":`...)
	b, ok = appendString(b, ok, string(r.Op))
	b, ok = appendStringField(b, ok, `,"session":`, r.Session)
	b = append(b, `,"client":{"id":`...)
	b, ok = appendString(b, ok, r.Client.ID)
	b = append(b, `,"host":`...)
	b, ok = appendString(b, ok, r.Client.Host)
	b = append(b, '}')
	b, ok = appendStringField(b, ok, `,"idle_timeout":`, r.IdleTimeout)
	b = appendBoolField(b, `,"temporary":`, r.Temporary)
	b, ok = appendStringField(b, ok, `,"shell":`, r.Shell)
	b = appendBoolField(b, `,"no_profile":`, r.NoProfile)
	b, ok = appendStringField(b, ok, `,"command":`, r.Command)
	if len(r.Argv) > 0 { // Args.MarshalJSON: each word as base64 bytes
		b = append(b, `,"argv":[`...)
		for i, a := range r.Argv {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, []byte(a))
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	b, ok = appendStringField(b, ok, `,"module":`, r.Module)
	b, ok = appendStringField(b, ok, `,"argv_encoding":`, r.ArgvEncoding)
	b = appendBoolField(b, `,"stdin":`, r.Stdin)
	b = appendBoolField(b, `,"detach":`, r.Detach)
	b = appendBoolField(b, `,"reuse":`, r.Reuse)
	b = appendBoolField(b, `,"end_mark":`, r.EndMark)
	if r.Grace != 0 {
		b = append(b, `,"grace":"`...)
		b = append(b, time.Duration(r.Grace).String()...)
		b = append(b, '"')
	}
	b = appendUintField(b, `,"after":`, r.After)
	b = appendUintField(b, `,"cmd":`, uint64(r.Cmd))
	b = appendBoolField(b, `,"all":`, r.All)
	b = appendBoolField(b, `,"force":`, r.Force)
	b = appendBoolField(b, `,"hold":`, r.Hold)
	b, ok = appendStringField(b, ok, `,"key":`, r.Key)
	b, ok = appendStringField(b, ok, `,"value":`, r.Value)
	b, ok = appendStringField(b, ok, `,"owner":`, r.Owner)
	b, ok = appendStringField(b, ok, `,"help_command":`, r.HelpCommand)
	b, ok = appendStringField(b, ok, `,"reason":`, r.Reason)
	b = appendBoolField(b, `,"all_users":`, r.AllUsers)
	b = appendBoolField(b, `,"fd_pass":`, r.FdPass)
	return append(b, '}'), ok
}

// appendResponse appends r as encoding/json would encode it; false when r
// has a field it leaves to encoding/json (lists: sessions, config,
// modules, hashes; a string that is not UTF-8; a time it cannot write).
// A session host writes one per command.
func appendResponse(b []byte, r *Response) ([]byte, bool) {
	if len(r.Sessions) > 0 || len(r.Config) > 0 || len(r.Modules) > 0 || len(r.Hashes) > 0 {
		return b, false
	}
	ok := true
	b = append(b, `{"ok":`...)
	b = strconv.AppendBool(b, r.OK)
	if e := r.Error; e != nil {
		b = append(b, `,"error":{"code":`...)
		b, ok = appendString(b, ok, e.Code)
		b = append(b, `,"message":`...)
		b, ok = appendString(b, ok, e.Message)
		b = append(b, '}')
	}
	if s := r.Session; s != nil {
		b = append(b, `,"session":{"name":`...)
		b, ok = appendString(b, ok, s.Name)
		b = append(b, `,"user":`...)
		b, ok = appendString(b, ok, s.User)
		b = append(b, `,"state":`...)
		b, ok = appendString(b, ok, s.State)
		b = append(b, `,"availability":`...)
		b, ok = appendString(b, ok, s.Availability)
		b, ok = appendTimeField(b, ok, `,"created":`, s.Created)
		b, ok = appendTimeField(b, ok, `,"idle_since":`, s.IdleSince)
		b, ok = appendStringField(b, ok, `,"command":`, s.Command)
		b = appendBoolField(b, `,"temporary":`, s.Temporary)
		b, ok = appendStringField(b, ok, `,"shell":`, s.Shell)
		b, ok = appendStringField(b, ok, `,"held_by":`, s.HeldBy)
		b, ok = appendTimeField(b, ok, `,"held_since":`, s.HeldSince)
		b, ok = appendTimeField(b, ok, `,"closes_at":`, s.ClosesAt)
		b, ok = appendStringField(b, ok, `,"closed_by":`, s.ClosedBy)
		b, ok = appendTimeField(b, ok, `,"closed_at":`, s.ClosedAt)
		b, ok = appendStringField(b, ok, `,"reason":`, s.Reason)
		b = appendUintField(b, `,"pending_bytes":`, s.Pending)
		b = append(b, '}')
	}
	b = appendUintField(b, `,"cmd":`, uint64(r.Cmd))
	b = appendUintField(b, `,"start_seq":`, r.StartSeq)
	b = appendUintField(b, `,"stdin_offset":`, r.StdinOffset)
	b = appendUintField(b, `,"until":`, r.Until)
	b, ok = appendStringField(b, ok, `,"help":`, r.Help)
	b, ok = appendStringField(b, ok, `,"text":`, r.Text)
	b, ok = appendStringField(b, ok, `,"cwd":`, r.Cwd)
	b, ok = appendStringField(b, ok, `,"home":`, r.Home)
	b, ok = appendStringField(b, ok, `,"umask":`, r.Umask)
	if r.MaxPacket != 0 {
		b = strconv.AppendInt(append(b, `,"max_packet":`...), int64(r.MaxPacket), 10)
	}
	b, ok = appendStringField(b, ok, `,"hash":`, r.Hash)
	return append(b, '}'), ok
}

// appendTimeField appends a time as encoding/json does (omitzero; the
// time's own MarshalJSON, which refuses years it cannot write).
func appendTimeField(b []byte, ok bool, key string, t time.Time) ([]byte, bool) {
	if t.IsZero() {
		return b, ok
	}
	tb, err := t.MarshalJSON()
	if err != nil {
		return b, false
	}
	return append(append(b, key...), tb...), ok
}

// marshalHello and marshalRequest encode with the fast path or encoding/json.
func marshalHello(h Hello) ([]byte, error) {
	if b, ok := appendHello(make([]byte, 0, 128), &h); ok {
		return b, nil
	}
	return json.Marshal(h)
}

func marshalResponse(r *Response) ([]byte, error) {
	if b, ok := appendResponse(make([]byte, 0, 384), r); ok {
		return b, nil
	}
	return json.Marshal(r)
}

func marshalRequest(r Request) ([]byte, error) {
	if b, ok := appendRequest(make([]byte, 0, 256), &r); ok {
		return b, nil
	}
	return json.Marshal(r)
}

func appendStringField(b []byte, ok bool, key, s string) ([]byte, bool) {
	if s == "" {
		return b, ok
	}
	b = append(b, key...)
	return appendString(b, ok, s)
}

func appendBoolField(b []byte, key string, v bool) []byte {
	if !v {
		return b
	}
	return append(append(b, key...), "true"...)
}

func appendUintField(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	return strconv.AppendUint(append(b, key...), v, 10)
}

const hexDigits = "0123456789abcdef"

// appendString appends s quoted as encoding/json quotes it (HTML-safe);
// ok turns false for a string that is not UTF-8, which encoding/json
// would change.
func appendString(b []byte, ok bool, s string) ([]byte, bool) {
	if !utf8.ValidString(s) {
		return b, false
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			start = i + size
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"'), ok
}

// Raw value kinds flatObject hands its callback.
const (
	kindString  = iota // the string's bytes, without quotes (no escapes)
	kindEscaped        // a string whose escapes were undone: its value
	kindNumber         // a non-negative integer's digits
	kindBool           // true or false
	kindObject         // an object's text, braces included, for a nested flatObject
)

// flatObject scans a JSON object whose values are plain strings (no
// escapes), non-negative integers, booleans or objects: field is called
// with each key, raw value and its kind. false when the text is anything
// else, or field refuses a value.
func flatObject(p []byte, field func(key string, val []byte, kind int) bool) bool {
	i := skipSpace(p, 0)
	if i >= len(p) || p[i] != '{' {
		return false
	}
	i = skipSpace(p, i+1)
	if i < len(p) && p[i] == '}' {
		return skipSpace(p, i+1) == len(p)
	}
	for {
		key, n, ok := plainString(p, i)
		if !ok {
			return false
		}
		i = skipSpace(p, n)
		if i >= len(p) || p[i] != ':' {
			return false
		}
		i = skipSpace(p, i+1)
		if i >= len(p) {
			return false
		}
		var val []byte
		var kind int
		switch c := p[i]; {
		case c == '"':
			s, n, ok := plainString(p, i)
			if !ok {
				return false
			}
			kind = kindString
			if n-i > len(s)+2 { // the text is longer than the value
				kind = kindEscaped
			}
			val, i = s, n
		case c >= '0' && c <= '9':
			j := i
			for j < len(p) && p[j] >= '0' && p[j] <= '9' {
				j++
			}
			if j < len(p) && (p[j] == '.' || p[j] == 'e' || p[j] == 'E') {
				return false
			}
			if j-i > 1 && p[i] == '0' {
				return false // a leading zero: not JSON
			}
			val, kind, i = p[i:j], kindNumber, j
		case hasWord(p, i, "true"):
			val, kind, i = p[i:i+4], kindBool, i+4
		case hasWord(p, i, "false"):
			val, kind, i = p[i:i+5], kindBool, i+5
		case c == '{':
			j, ok := objectEnd(p, i)
			if !ok {
				return false
			}
			val, kind, i = p[i:j], kindObject, j
		default: // null, an array, a negative number
			return false
		}
		if !field(string(key), val, kind) {
			return false
		}
		i = skipSpace(p, i)
		if i >= len(p) {
			return false
		}
		switch p[i] {
		case ',':
			i = skipSpace(p, i+1)
		case '}':
			return skipSpace(p, i+1) == len(p)
		default:
			return false
		}
	}
}

// objectEnd is the index after the object that starts at p[i], found by
// its braces outside strings (the nested flatObject checks the rest).
func objectEnd(p []byte, i int) (int, bool) {
	depth, inString := 0, false
	for j := i; j < len(p); j++ {
		c := p[j]
		switch {
		case inString && c == '\\':
			j++
		case c == '"':
			inString = !inString
		case inString:
		case c == '{':
			depth++
		case c == '}':
			if depth--; depth == 0 {
				return j + 1, true
			}
		}
	}
	return 0, false
}

// isString reports whether a value is a string. A field whose type reads
// the raw JSON text itself (time.Time, Duration) takes only kindString:
// encoding/json hands such a decoder the text with its escapes.
func isString(kind int) bool { return kind == kindString || kind == kindEscaped }

// isBool reports whether a raw value is true or false.
func isBool(kind int) bool { return kind == kindBool }

func hasWord(p []byte, i int, w string) bool {
	return len(p)-i >= len(w) && string(p[i:i+len(w)]) == w
}

func skipSpace(p []byte, i int) int {
	for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string at p[i] (a quote), returning its
// value and the index after its closing quote: the text itself when it has
// no escapes, else a copy with them undone as encoding/json undoes them.
// false for what it leaves to encoding/json: a control character, bytes
// that are not UTF-8 (encoding/json replaces them), a \u escape of a
// surrogate (encoding/json pairs or replaces them), a bad escape.
func plainString(p []byte, i int) ([]byte, int, bool) {
	if i >= len(p) || p[i] != '"' {
		return nil, 0, false
	}
	for j := i + 1; j < len(p); j++ {
		switch c := p[j]; {
		case c == '"':
			s := p[i+1 : j]
			return s, j + 1, utf8.Valid(s)
		case c == '\\':
			return unescapeString(p, i+1, j)
		case c < 0x20:
			return nil, 0, false
		}
	}
	return nil, 0, false
}

// unescapeString is plainString past the first backslash, at p[esc], of
// the string whose text starts at p[start].
func unescapeString(p []byte, start, esc int) ([]byte, int, bool) {
	if !utf8.Valid(p[start:esc]) {
		return nil, 0, false
	}
	// Sized to this string, not to the rest of the frame: a frame of many
	// short escaped strings must not cost the square of its length.
	end := escapedStringEnd(p, esc)
	if end < 0 {
		return nil, 0, false
	}
	out := append(make([]byte, 0, end-start), p[start:esc]...)
	plain := esc // start of the run of bytes not yet copied
	for j := esc; j < len(p); {
		c := p[j]
		switch {
		case c == '"':
			if !utf8.Valid(p[plain:j]) {
				return nil, 0, false
			}
			return append(out, p[plain:j]...), j + 1, true
		case c < 0x20:
			return nil, 0, false
		case c != '\\':
			j++
			continue
		}
		if !utf8.Valid(p[plain:j]) || j+1 >= len(p) {
			return nil, 0, false
		}
		out = append(out, p[plain:j]...)
		switch e := p[j+1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if j+6 > len(p) {
				return nil, 0, false
			}
			r, err := strconv.ParseUint(string(p[j+2:j+6]), 16, 16)
			if err != nil || utf16.IsSurrogate(rune(r)) {
				return nil, 0, false
			}
			out = utf8.AppendRune(out, rune(r))
			j += 4
		default:
			return nil, 0, false
		}
		j += 2
		plain = j
	}
	return nil, 0, false
}

// escapedStringEnd is the index of the closing quote of the string whose
// first backslash is at p[esc], or -1 when the frame ends first. The text
// it spans is at least as long as the string it decodes to.
func escapedStringEnd(p []byte, esc int) int {
	for j := esc; j < len(p); j++ {
		switch p[j] {
		case '\\':
			j++
		case '"':
			return j
		}
	}
	return -1
}

// unmarshalHello and unmarshalResponse decode with the fast path or
// encoding/json. On the fast path v is set only when the whole text is
// read: a refusal half-way leaves it for encoding/json, from zero.
func unmarshalHello(p []byte, v *Hello) error {
	h := *v // as encoding/json, keep what the text does not set
	if flatObject(p, func(key string, val []byte, kind int) bool {
		switch key {
		case "proto":
			return decodeInt(val, kind, &h.Proto)
		case "software":
			h.Software = string(val)
		case "user":
			h.User = string(val)
		case "admin":
			h.Admin = string(val) == "true"
			return isBool(kind)
		case "remote_addr":
			h.RemoteAddr = string(val)
		default:
			return false
		}
		return isString(kind)
	}) {
		*v = h
		return nil
	}
	return json.Unmarshal(p, v)
}

// unmarshalRequest decodes a request with the fast path or encoding/json:
// every agent and session host reads one per command.
func unmarshalRequest(p []byte, v *Request) error {
	if fastRequest(p, v) {
		return nil
	}
	return json.Unmarshal(p, v)
}

// fastRequest is unmarshalRequest's fast path; false (v untouched) for
// what it leaves to encoding/json.
func fastRequest(p []byte, v *Request) bool {
	r := *v
	if flatObject(p, func(key string, val []byte, kind int) bool {
		var str *string
		var flag *bool
		switch key {
		case "op":
			if !isString(kind) {
				return false
			}
			r.Op = Op(val)
			return true
		case "client":
			return kind == kindObject && flatObject(val, func(key string, val []byte, kind int) bool {
				switch key {
				case "id":
					r.Client.ID = string(val)
				case "host":
					r.Client.Host = string(val)
				default:
					return false
				}
				return isString(kind)
			})
		case "grace":
			if kind != kindString {
				return false
			}
			d, err := time.ParseDuration(string(val))
			r.Grace = Duration(d)
			return err == nil
		case "after":
			return decodeUint(val, kind, 64, &r.After)
		case "cmd":
			var n uint64
			ok := decodeUint(val, kind, 32, &n)
			r.Cmd = uint32(n)
			return ok
		case "session":
			str = &r.Session
		case "idle_timeout":
			str = &r.IdleTimeout
		case "shell":
			str = &r.Shell
		case "command":
			str = &r.Command
		case "module":
			str = &r.Module
		case "argv_encoding":
			str = &r.ArgvEncoding
		case "key":
			str = &r.Key
		case "value":
			str = &r.Value
		case "owner":
			str = &r.Owner
		case "help_command":
			str = &r.HelpCommand
		case "reason":
			str = &r.Reason
		case "temporary":
			flag = &r.Temporary
		case "no_profile":
			flag = &r.NoProfile
		case "stdin":
			flag = &r.Stdin
		case "detach":
			flag = &r.Detach
		case "reuse":
			flag = &r.Reuse
		case "end_mark":
			flag = &r.EndMark
		case "all":
			flag = &r.All
		case "force":
			flag = &r.Force
		case "hold":
			flag = &r.Hold
		case "all_users":
			flag = &r.AllUsers
		case "fd_pass":
			flag = &r.FdPass
		default: // argv, tty, files, limits, command_bytes, a key spelt otherwise
			return false
		}
		if str != nil {
			*str = string(val)
			return isString(kind)
		}
		*flag = string(val) == "true"
		return isBool(kind)
	}) {
		*v = r
		return true
	}
	return false
}

func unmarshalResponse(p []byte, v *Response) error {
	r := *v
	var si *SessionInfo // a "session" object, stored into r only at the end
	if flatObject(p, func(key string, val []byte, kind int) bool {
		switch key {
		case "ok":
			r.OK = string(val) == "true"
			return isBool(kind)
		case "session":
			if kind != kindObject {
				return false
			}
			var s SessionInfo
			if si != nil { // a second "session": on top of the first
				s = *si
			} else if r.Session != nil {
				s = *r.Session
			}
			if !decodeSessionInfo(val, &s) {
				return false
			}
			si = &s
			return true
		case "cmd":
			var n uint64
			ok := decodeUint(val, kind, 32, &n)
			r.Cmd = uint32(n)
			return ok
		case "start_seq":
			return decodeUint(val, kind, 64, &r.StartSeq)
		case "stdin_offset":
			return decodeUint(val, kind, 64, &r.StdinOffset)
		case "until":
			return decodeUint(val, kind, 64, &r.Until)
		case "max_packet":
			return decodeInt(val, kind, &r.MaxPacket)
		case "help":
			r.Help = string(val)
		case "text":
			r.Text = string(val)
		case "cwd":
			r.Cwd = string(val)
		case "home":
			r.Home = string(val)
		case "umask":
			r.Umask = string(val)
		case "hash":
			r.Hash = string(val)
		default:
			return false
		}
		return isString(kind)
	}) {
		if si != nil {
			if r.Session != nil {
				*r.Session = *si // encoding/json decodes into what the pointer holds
			} else {
				r.Session = si
			}
		}
		*v = r
		return nil
	}
	return json.Unmarshal(p, v)
}

// decodeSessionInfo reads a flat SessionInfo object into s.
func decodeSessionInfo(p []byte, s *SessionInfo) bool {
	return flatObject(p, func(key string, val []byte, kind int) bool {
		var t *time.Time
		switch key {
		case "name":
			s.Name = string(val)
		case "user":
			s.User = string(val)
		case "state":
			s.State = string(val)
		case "availability":
			s.Availability = string(val)
		case "command":
			s.Command = string(val)
		case "shell":
			s.Shell = string(val)
		case "held_by":
			s.HeldBy = string(val)
		case "closed_by":
			s.ClosedBy = string(val)
		case "reason":
			s.Reason = string(val)
		case "temporary":
			s.Temporary = string(val) == "true"
			return isBool(kind)
		case "pending_bytes":
			return decodeUint(val, kind, 64, &s.Pending)
		case "created":
			t = &s.Created
		case "idle_since":
			t = &s.IdleSince
		case "held_since":
			t = &s.HeldSince
		case "closes_at":
			t = &s.ClosesAt
		case "closed_at":
			t = &s.ClosedAt
		default:
			return false
		}
		if t != nil {
			if kind != kindString {
				return false
			}
			// time.Time's own decoder, on the quoted text, as encoding/json calls it
			q := make([]byte, 0, len(val)+2)
			q = append(append(append(q, '"'), val...), '"')
			return t.UnmarshalJSON(q) == nil
		}
		return isString(kind)
	})
}

func decodeUint(val []byte, kind, bits int, dst *uint64) bool {
	n, err := strconv.ParseUint(string(val), 10, bits)
	if kind != kindNumber || err != nil {
		return false
	}
	*dst = n
	return true
}

func decodeInt(val []byte, kind int, dst *int) bool {
	n, err := strconv.ParseInt(string(val), 10, 0)
	if kind != kindNumber || err != nil {
		return false
	}
	*dst = int(n)
	return true
}
