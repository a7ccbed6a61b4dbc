// Package fold gathers the results of one command on many targets: it
// groups targets whose output and exit status are identical, so that 300
// "ok" lines print once under web[001-300] (as dshbak -c and clubak do), and
// it summarises a run (how many succeeded, which failed and how, the time)
// for people and for --json.
package fold

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/tether-sh/tether/internal/targets"
)

// Result is what one target produced.
type Result struct {
	Target     string
	Stdout     []byte
	Stderr     []byte
	ExitStatus int
	Err        error // the command could not run, or its connection was lost
}

// Group is the targets that produced one identical result.
type Group struct {
	Targets    string   // folded, as targets.Fold writes it: web[01-03,07]/deploy
	List       []string // the targets, in the order of the results
	Count      int
	Stdout     []byte
	Stderr     []byte
	ExitStatus int
	Err        string // "" when the command ran; see ErrorText

	first int // index of the first result in the group
}

// Groups groups results with identical stdout, stderr, exit status and
// error (compared after ErrorText), largest group first; groups of the
// same size keep the order in which their first target appears.
func Groups(results []Result) []Group {
	idx := make(map[[32]byte]int)
	var groups []Group
	for ri, r := range results {
		errText := ErrorText(r.Target, r.Err)
		k := key(r, errText)
		if i, ok := idx[k]; ok {
			groups[i].List = append(groups[i].List, r.Target)
			continue
		}
		idx[k] = len(groups)
		groups = append(groups, Group{List: []string{r.Target}, Stdout: r.Stdout, Stderr: r.Stderr, ExitStatus: r.ExitStatus, Err: errText, first: ri})
	}
	for i := range groups {
		g := &groups[i]
		g.Count = len(g.List)
		g.Targets = targets.Fold(g.List)
		if g.Count == 1 && g.Err != "" {
			g.Err = results[g.first].Err.Error() // one target: its own words
		}
	}
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].Count > groups[j].Count })
	return groups
}

// key identifies a result's content; a SHA-256 of the length-prefixed
// fields, so that 10,000 outputs are compared without copying them.
func key(r Result, errText string) [32]byte {
	h := sha256.New()
	var n [8]byte
	for _, b := range [][]byte{r.Stdout, r.Stderr, []byte(errText)} {
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	binary.LittleEndian.PutUint64(n[:], uint64(int64(r.ExitStatus)))
	h.Write(n[:])
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// ErrorText is err's message with the target's own name replaced by HOST,
// so that "dial tcp web1:4422: connection refused" and the same error on
// web2 fold together. It is "" for a nil error.
func ErrorText(target string, err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	addr, hostPort, host := addrHost(target)
	for _, s := range []string{target, addr, hostPort, host} {
		if len(s) >= 2 {
			msg = strings.ReplaceAll(msg, s, "HOST")
		}
	}
	return msg
}

// addrHost is target without its session, that without its user, and the
// bare host name.
func addrHost(t string) (addr, hostPort, host string) {
	rest := t
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	addr = rest
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = rest[i+1:]
	}
	hostPort = rest
	if strings.HasPrefix(rest, "[") {
		if i := strings.IndexByte(rest, ']'); i > 0 {
			return addr, hostPort, rest[1:i]
		}
	}
	if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		rest = rest[:i]
	}
	return addr, hostPort, rest
}

// Write prints groups as clubak does: a header naming the targets and
// their count (and the exit status or error when not a success), then the
// output once.
//
//	---------------
//	web[01-03,07]/deploy (4)
//	---------------
//	ok
func Write(w io.Writer, groups []Group) error {
	for _, g := range groups {
		head := fmt.Sprintf("%s (%d)", g.Targets, g.Count)
		switch {
		case g.Err != "":
			head += " error: " + g.Err
		case g.ExitStatus != 0:
			head += fmt.Sprintf(" exit status %d", g.ExitStatus)
		}
		if _, err := fmt.Fprintf(w, "---------------\n%s\n---------------\n", head); err != nil {
			return err
		}
		if err := writeBody(w, g.Stdout); err != nil {
			return err
		}
		if len(g.Stderr) > 0 {
			if _, err := io.WriteString(w, "(stderr)\n"); err != nil {
				return err
			}
			if err := writeBody(w, g.Stderr); err != nil {
				return err
			}
		}
	}
	return nil
}

func writeBody(w io.Writer, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	if _, err := w.Write(b); err != nil {
		return err
	}
	if b[len(b)-1] != '\n' {
		_, err := io.WriteString(w, "\n")
		return err
	}
	return nil
}
