package runspace

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"
)

// Internal command names. The call handler renames calls of builtins that
// interp lacks to these names, which are neither functions nor interp
// builtins, so that the runner hands them to the exec handler.
const (
	umaskCmd   = "\x00tether-umask"
	declareCmd = "\x00tether-declare"
	// externalCmd runs the program named by the next argument from PATH,
	// for interp "builtins" that it does not implement but that exist
	// as programs (kill).
	externalCmd = "\x00tether-external"
)

// callHandler routes umask and query forms of declare/typeset to the
// runspace's implementations.
func (r *Runspace) callHandler(ctx context.Context, args []string) ([]string, error) {
	name := args[0]
	if (name == "builtin" || name == "command") && len(args) > 1 {
		switch args[1] {
		case "umask", "declare", "typeset", "export", "readonly", "kill":
			args, name = args[1:], args[1]
		}
	}
	switch name {
	case "umask":
		// A user function named umask wins, as in bash. (The
		// runner's Funcs; one defined in a subshell is not seen.)
		if r.runner.Funcs["umask"] != nil {
			return args, nil
		}
		return append([]string{umaskCmd}, args[1:]...), nil
	case "kill":
		// interp has no kill builtin; procps' kill does signals by
		// pid (and -l), though not job specs.
		if r.runner.Funcs["kill"] != nil {
			return args, nil
		}
		return append([]string{externalCmd}, args...), nil
	case "declare", "typeset", "export", "readonly":
		// Only reached by a call that the parser did not see as a
		// declaration: our rewritten queries, an alias, or a quoted
		// or expanded command name.
		return append([]string{declareCmd}, args...), nil
	}
	return args, nil
}

// rewriteDecls turns `declare`/`typeset` queries (-p, -f, -F or no
// arguments) and `export`/`readonly` listings (-p or no arguments), which
// interp implements only partly, into plain calls, which
// the call handler routes to builtinDeclare. Printing the rewritten AST
// (declare -f) still shows the original command.
func rewriteDecls(file *syntax.File) {
	syntax.Walk(file, func(node syntax.Node) bool {
		st, ok := node.(*syntax.Stmt)
		if !ok {
			return true
		}
		d, ok := st.Cmd.(*syntax.DeclClause)
		if !ok {
			return true
		}
		query := len(d.Args) == 0
		queryFlags := "pfF"
		switch d.Variant.Value {
		case "declare", "typeset":
		case "export", "readonly":
			queryFlags = "p" // and no arguments: list
		default: // local, nameref
			return true
		}
		words := []*syntax.Word{{Parts: []syntax.WordPart{d.Variant}}}
		for _, as := range d.Args {
			if !as.Naked {
				return true // an assignment: leave it to interp
			}
			if as.Name != nil {
				words = append(words, &syntax.Word{Parts: []syntax.WordPart{as.Name}})
				continue
			}
			if lit := as.Value.Lit(); len(lit) > 1 && (lit[0] == '-' || lit[0] == '+') &&
				strings.ContainsAny(lit, queryFlags) {
				query = true
			}
			words = append(words, as.Value)
		}
		if query {
			st.Cmd = &syntax.CallExpr{Args: words}
		}
		return true
	})
}

// builtinDeclare implements `declare`/`typeset` queries: -p [NAME...]
// prints re-usable declarations of variables (all of them without names,
// optionally filtered by -x, -r, -a, -A, -n), -f [NAME...] prints
// functions and -F [NAME...] their names. args[0] is "declare" or
// "typeset".
func (r *Runspace) builtinDeclare(ctx context.Context, args []string) error {
	hc := interp.HandlerCtx(ctx)
	cmd := args[0]
	var funcs, names bool
	var filter []byte
	switch cmd {
	case "export":
		filter = append(filter, 'x')
	case "readonly":
		filter = append(filter, 'r')
	}
	i := 1
	for ; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			i++
			break
		}
		if len(a) < 2 || a[0] != '-' {
			break
		}
		for _, c := range []byte(a[1:]) {
			switch c {
			case 'p':
			case 'f':
				funcs = true
			case 'F':
				funcs, names = true, true
			case 'x', 'r', 'a', 'A', 'n':
				filter = append(filter, c)
			case 'g', 'l', 'u', 'i', 't':
				// accepted, no effect on queries
			default:
				fmt.Fprintf(hc.Stderr, "tether: %s: -%c: invalid option\n", cmd, c)
				return interp.ExitStatus(2)
			}
		}
	}
	operands := args[i:]
	for _, op := range operands {
		if strings.Contains(op, "=") {
			fmt.Fprintf(hc.Stderr, "tether: %s: %s: assignments cannot be combined with -p/-f/-F in this form\n", cmd, op)
			return interp.ExitStatus(2)
		}
	}
	if funcs {
		return r.printFuncs(hc, operands, names)
	}
	return printVars(hc, cmd, operands, filter)
}

func (r *Runspace) printFuncs(hc interp.HandlerContext, operands []string, namesOnly bool) error {
	all := r.runner.Funcs
	if len(operands) == 0 {
		operands = slices.Sorted(maps.Keys(all))
	}
	status := 0
	printer := syntax.NewPrinter()
	for _, name := range operands {
		body := all[name]
		if body == nil {
			status = 1 // bash is silent here
			continue
		}
		if namesOnly {
			fmt.Fprintf(hc.Stdout, "declare -f %s\n", name)
			continue
		}
		// The body printed on its own is nicely laid out; printed
		// inside a new FuncDecl it would follow the original lines.
		var sb strings.Builder
		sb.WriteString(name + "() ")
		if err := printer.Print(&sb, body); err != nil {
			return err
		}
		sb.WriteByte('\n')
		io.WriteString(hc.Stdout, sb.String())
	}
	if status != 0 {
		return interp.ExitStatus(status)
	}
	return nil
}

func printVars(hc interp.HandlerContext, cmd string, operands []string, filter []byte) error {
	vars := make(map[string]expand.Variable)
	for name, vr := range hc.Env.Each {
		vars[name] = vr
	}
	status := 0
	if len(operands) == 0 {
		operands = slices.Sorted(maps.Keys(vars))
	} else {
		for _, name := range operands {
			if vr, ok := vars[name]; !ok || !vr.Declared() {
				fmt.Fprintf(hc.Stderr, "tether: %s: %s: not found\n", cmd, name)
				status = 1
			}
		}
	}
	var sb strings.Builder
	for _, name := range operands {
		vr, ok := vars[name]
		if !ok || !vr.Declared() || !syntax.ValidName(name) || !matchFilter(vr, filter) {
			continue
		}
		sb.Reset()
		writeDeclaration(&sb, name, vr)
		io.WriteString(hc.Stdout, sb.String())
	}
	if status != 0 {
		return interp.ExitStatus(status)
	}
	return nil
}

func matchFilter(vr expand.Variable, filter []byte) bool {
	for _, c := range filter {
		ok := true
		switch c {
		case 'x':
			ok = vr.Exported
		case 'r':
			ok = vr.ReadOnly
		case 'a':
			ok = vr.Kind == expand.Indexed
		case 'A':
			ok = vr.Kind == expand.Associative
		case 'n':
			ok = vr.Kind == expand.NameRef
		}
		if !ok {
			return false
		}
	}
	return true
}

// writeDeclaration writes a declare command that recreates vr, quoting
// values so that they read back exactly (with $'...' where needed).
func writeDeclaration(sb *strings.Builder, name string, vr expand.Variable) {
	flags := ""
	switch vr.Kind {
	case expand.Indexed:
		flags += "a"
	case expand.Associative:
		flags += "A"
	case expand.NameRef:
		flags += "n"
	}
	if vr.ReadOnly {
		flags += "r"
	}
	if vr.Exported {
		flags += "x"
	}
	// bash prints "declare -- x=..." for no attributes, but interp
	// does not accept "--" in declare.
	if flags != "" {
		flags = "-" + flags + " "
	}
	fmt.Fprintf(sb, "declare %s%s", flags, name)
	// interp leaves an array created by an element assignment (b[5]=x)
	// unset, but it has elements.
	if !vr.IsSet() && len(vr.List) == 0 && len(vr.Map) == 0 {
		sb.WriteByte('\n')
		return
	}
	sb.WriteByte('=')
	switch vr.Kind {
	case expand.Indexed:
		sb.WriteByte('(')
		for i, v := range vr.List {
			if i > 0 {
				sb.WriteByte(' ')
			}
			idx := i
			if vr.Indexes != nil {
				idx = vr.Indexes[i]
			}
			fmt.Fprintf(sb, "[%d]=%s", idx, declareQuote(v))
		}
		sb.WriteByte(')')
	case expand.Associative:
		sb.WriteByte('(')
		for i, k := range slices.Sorted(maps.Keys(vr.Map)) {
			if i > 0 {
				sb.WriteByte(' ')
			}
			fmt.Fprintf(sb, "[%s]=%s", declareQuote(k), declareQuote(vr.Map[k]))
		}
		sb.WriteByte(')')
	default:
		sb.WriteString(declareQuote(vr.Str))
	}
	sb.WriteByte('\n')
}

// declareQuote formats a value for declare -p's listing as bash prints it:
// always quoted, $'...' only where needed. It is a display format (what
// users and scripts compare against bash's output), not the quoter for
// building commands — that is internal/shquote — so it stays apart.
func declareQuote(s string) string {
	q, err := syntax.Quote(s, syntax.LangBash)
	if err != nil { // only NUL bytes, which shell variables cannot hold
		q = "''"
	}
	if q == s {
		q = "'" + s + "'"
	}
	return q
}

// ---- umask ----

// The file mode creation mask is per process. Each runspace keeps its own
// and installs it in the process right before starting a child or
// creating a file for a redirection; in a single-runspace host the process
// umask simply follows the runspace's.
var (
	umaskMu   sync.RWMutex
	procUmask = -1 // last value set by us; -1: unknown
)

// processUmask reads the process umask.
func processUmask() int {
	umaskMu.Lock()
	defer umaskMu.Unlock()
	if procUmask < 0 {
		procUmask = readUmask()
	}
	return procUmask
}

func readUmask() int {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "Umask:"); ok {
				if n, err := strconv.ParseInt(strings.TrimSpace(v), 8, 32); err == nil {
					return int(n)
				}
			}
		}
	}
	old := syscall.Umask(0o22)
	syscall.Umask(old)
	return old
}

// withUmask runs fn with the process umask set to the runspace's.
func (r *Runspace) withUmask(fn func() error) error {
	want := int(r.umaskValue())
	umaskMu.RLock()
	if procUmask == want {
		defer umaskMu.RUnlock()
		return fn()
	}
	umaskMu.RUnlock()
	umaskMu.Lock()
	defer umaskMu.Unlock()
	if procUmask != want {
		syscall.Umask(want)
		procUmask = want
	}
	return fn()
}

func (r *Runspace) umaskValue() int {
	r.umaskMu.Lock()
	defer r.umaskMu.Unlock()
	return r.umask
}

func (r *Runspace) setUmask(m int) {
	r.umaskMu.Lock()
	r.umask = m
	r.umaskMu.Unlock()
	r.withUmask(func() error { return nil })
}

// openHandler opens files for redirections (and source) under the
// runspace's umask. The standard stream names mean the command's streams,
// not the session host's (see stdStream).
func (r *Runspace) openHandler(ctx context.Context, path string, flag int, perm os.FileMode) (io.ReadWriteCloser, error) {
	if f, ok, err := stdStream(interp.HandlerCtx(ctx), path, flag); ok {
		return f, err
	}
	open := interp.DefaultOpenHandler()
	if flag&os.O_CREATE == 0 {
		return open(ctx, path, flag, perm)
	}
	var f io.ReadWriteCloser
	err := r.withUmask(func() error {
		var err error
		f, err = open(ctx, path, flag, perm)
		return err
	})
	return f, err
}

// builtinUmask implements umask [-p] [-S] [MODE], MODE being octal or
// symbolic (u=rwx,g=rx,o=, g-w, a+r ...).
func (r *Runspace) builtinUmask(ctx context.Context, args []string) error {
	hc := interp.HandlerCtx(ctx)
	symbolic, reusable := false, false
	for len(args) > 0 && len(args[0]) > 1 && args[0][0] == '-' {
		if args[0] == "--" {
			args = args[1:]
			break
		}
		for _, c := range args[0][1:] {
			switch c {
			case 'S':
				symbolic = true
			case 'p':
				reusable = true
			default:
				fmt.Fprintf(hc.Stderr, "tether: umask: -%c: invalid option\numask: usage: umask [-p] [-S] [mode]\n", c)
				return interp.ExitStatus(2)
			}
		}
		args = args[1:]
	}
	if len(args) == 0 {
		m := r.umaskValue()
		out := fmt.Sprintf("%04o", m)
		if symbolic {
			out = symbolicMask(m)
		}
		if reusable {
			if symbolic {
				out = "-S " + out
			}
			out = "umask " + out
		}
		fmt.Fprintln(hc.Stdout, out)
		return nil
	}
	mode := args[0]
	var m int
	if mode[0] >= '0' && mode[0] <= '9' {
		n, err := strconv.ParseUint(mode, 8, 32)
		if err != nil || n > 0o777 {
			fmt.Fprintf(hc.Stderr, "tether: umask: %s: octal number out of range\n", mode)
			return interp.ExitStatus(1)
		}
		m = int(n)
	} else {
		var ok bool
		if m, ok = parseSymbolic(mode, r.umaskValue()); !ok {
			fmt.Fprintf(hc.Stderr, "tether: umask: %s: invalid symbolic mode\n", mode)
			return interp.ExitStatus(1)
		}
	}
	r.setUmask(m)
	return nil
}

// symbolicMask renders the permissions a mask allows, as in u=rwx,g=rx,o=rx.
func symbolicMask(m int) string {
	perm := ^m & 0o777
	var parts []string
	for i, who := range []string{"u", "g", "o"} {
		bits := perm >> (6 - 3*i) & 7
		s := who + "="
		if bits&4 != 0 {
			s += "r"
		}
		if bits&2 != 0 {
			s += "w"
		}
		if bits&1 != 0 {
			s += "x"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ",")
}

// parseSymbolic applies a symbolic mode (as for chmod, on the permissions
// that the mask allows) to mask m.
func parseSymbolic(mode string, m int) (int, bool) {
	perm := ^m & 0o777
	for clause := range strings.SplitSeq(mode, ",") {
		who := 0
		i := 0
		for ; i < len(clause); i++ {
			switch clause[i] {
			case 'u':
				who |= 0o700
			case 'g':
				who |= 0o070
			case 'o':
				who |= 0o007
			case 'a':
				who |= 0o777
			default:
				goto op
			}
		}
	op:
		if who == 0 {
			who = 0o777
		}
		if i >= len(clause) {
			return 0, false
		}
		for i < len(clause) {
			op := clause[i]
			if op != '+' && op != '-' && op != '=' {
				return 0, false
			}
			i++
			bits := 0
			for ; i < len(clause) && clause[i] != '+' && clause[i] != '-' && clause[i] != '='; i++ {
				switch clause[i] {
				case 'r':
					bits |= 0o444
				case 'w':
					bits |= 0o222
				case 'x':
					bits |= 0o111
				default:
					return 0, false
				}
			}
			bits &= who
			switch op {
			case '+':
				perm |= bits
			case '-':
				perm &^= bits
			case '=':
				perm = perm&^who | bits
			}
		}
	}
	return ^perm & 0o777, true
}

// stdStreamFds maps the names a script uses for its standard streams to
// their descriptor numbers.
var stdStreamFds = map[string]int{
	"/dev/stdin": 0, "/dev/fd/0": 0, "/proc/self/fd/0": 0,
	"/dev/stdout": 1, "/dev/fd/1": 1, "/proc/self/fd/1": 1,
	"/dev/stderr": 2, "/dev/fd/2": 2, "/proc/self/fd/2": 2,
}

// stdStream opens /dev/stdin, /dev/stdout, /dev/stderr (and their /dev/fd,
// /proc/self/fd names) as the command's own streams. The kernel would
// resolve them to the session host's descriptors, so `source /dev/stdin`
// read nothing and `echo x >/dev/stderr` went to the host's log. A stream
// that is a file is duplicated (an external program given it gets the
// very file); any other is wrapped so that closing it leaves the stream
// open. ok is false for other paths and for a direction the stream does
// not have.
func stdStream(hc interp.HandlerContext, path string, flag int) (f io.ReadWriteCloser, ok bool, err error) {
	fd, found := stdStreamFds[path]
	if !found {
		return nil, false, nil
	}
	write := flag&(os.O_WRONLY|os.O_RDWR) != 0
	var stream any
	switch {
	case fd == 0 && !write:
		stream = hc.Stdin
	case fd == 1 && write:
		stream = hc.Stdout
	case fd == 2 && write:
		stream = hc.Stderr
	default:
		return nil, false, nil
	}
	if file, isFile := stream.(*os.File); isFile {
		nfd, err := unix.FcntlInt(file.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, true, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(nfd), path), true, nil
	}
	return &streamFile{stream: stream, path: path}, true, nil
}

// streamFile is a standard stream opened by name that is not a file.
type streamFile struct {
	stream any // io.Reader or io.Writer, or nil (empty stdin, discarded output)
	path   string
}

func (s *streamFile) Read(p []byte) (int, error) {
	if r, ok := s.stream.(io.Reader); ok {
		return r.Read(p)
	}
	return 0, io.EOF
}

func (s *streamFile) Write(p []byte) (int, error) {
	if w, ok := s.stream.(io.Writer); ok {
		return w.Write(p)
	}
	return len(p), nil
}

func (s *streamFile) Close() error { return nil }
