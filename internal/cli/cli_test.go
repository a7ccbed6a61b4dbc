package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// A cliCase is one command line run in-process through Run with a fake
// Env, as mvdan/sh's interp tests run one script each: its exit status,
// and what stdout and stderr must hold. In args, files, env values and
// expectations, $HOME is the case's home directory, $HOST the test
// agent's address and $PUB the client's public key line.
type cliCase struct {
	args []string
	code int
	// out and err are substrings stdout and stderr must contain; outIs,
	// when set, is the whole stdout. noOut: stdout must be empty.
	out, err []string
	outIs    *string
	noOut    bool
	// jsonKeys: stdout is JSON objects, one a line, and every line has
	// one of these key sets (each entry a comma-separated list of keys).
	jsonKeys []string
	files    map[string]string // written below HOME before the run
	env      map[string]string
}

func str(s string) *string { return &s }

// groupsToml is the groups file every offline case has.
const groupsToml = "web = [\"web[1-3]\"]\ndb = [\"db1\", \"db2\"]\n"

// usageInvoke is the start of invoke's usage line.
const usageInvoke = "usage: tether invoke [--throttle N]"

// offlineCases need no host: usage errors, exit codes, target expressions
// and local files.
var offlineCases = []cliCase{
	// The command tree itself.
	{args: []string{"nosuch"}, code: 255, noOut: true, err: []string{`tether: unknown command "nosuch" for "tether"`}},
	{args: []string{"help", "nosuch"}, code: 255, noOut: true, err: []string{`no help topic "nosuch": it is neither a tether command nor an imported one`}},
	{args: []string{"version"}, code: 0, out: []string{"tether " + Version + " (protocol 2, go", "/"}},
	{args: []string{"version", "extra"}, code: 255, noOut: true, err: []string{`unknown command "extra" for "tether version"`, "usage: tether version"}},
	{args: []string{"--version"}, code: 0, out: []string{"tether version " + Version}},
	{args: []string{"completion", "bash"}, code: 0, out: []string{"# bash completion V2 for tether", "__start_tether"}},
	{args: []string{"config"}, code: 255, noOut: true, err: []string{"config needs a subcommand: get, list, reset, set", "usage: tether config"}},
	{args: []string{"config", "frob"}, code: 255, noOut: true, err: []string{`unknown subcommand "frob" for tether config; use one of: get, list, reset, set`}},
	{args: []string{"mux"}, code: 255, noOut: true, err: []string{"mux needs a subcommand: status, stop"}},
	{args: []string{"new", "--bogus", "web1"}, code: 255, noOut: true, err: []string{"unknown flag: --bogus (tether new --help lists its flags)", "usage: tether new "}},
	{args: []string{"known-hosts"}, code: 255, noOut: true, err: []string{"known-hosts needs a subcommand: remove", "usage: tether known-hosts"}},

	// Missing arguments.
	{args: []string{"new"}, code: 255, noOut: true, err: []string{"no targets: give a target expression, -f FILE or $TETHER_HOSTS", "usage: tether new "}},
	{args: []string{"invoke"}, code: 255, noOut: true, err: []string{"no targets given", usageInvoke}},
	{args: []string{"invoke", "web1"}, code: 255, noOut: true, err: []string{"no command given for web1", usageInvoke}},
	{args: []string{"config", "set", "web1", "IdleTimeout"}, code: 255, noOut: true, err: []string{"accepts 3 arg(s), received 2", "usage: tether config set HOSTS KEY VALUE"}},
	{args: []string{"config", "get", "web1"}, code: 255, noOut: true, err: []string{"accepts 2 arg(s), received 1", "usage: tether config get HOST KEY"}},
	{args: []string{"receive"}, code: 255, noOut: true, err: []string{"accepts 1 arg(s), received 0", "usage: tether receive"}},
	{args: []string{"forget"}, code: 255, noOut: true, err: []string{"requires at least 1 arg(s), only received 0", "usage: tether forget ADDR..."}},
	{args: []string{"known-hosts", "remove"}, code: 255, noOut: true, err: []string{"requires at least 1 arg(s)", "usage: tether known-hosts remove"}},

	// Bad flag values, and flags after the targets.
	{args: []string{"invoke", "--throttle", "x", "web1", "true"}, code: 255, noOut: true, err: []string{`invalid argument "x" for "--throttle" flag`}},
	{args: []string{"invoke", "--throttle", "0", "web1", "true"}, code: 255, noOut: true, err: []string{"bad --throttle 0", "1 or more"}},
	{args: []string{"hosts", "--throttle", "-2", "web1"}, code: 255, noOut: true, err: []string{"unknown flag: --throttle"}},
	{args: []string{"invoke", "--reconnect-timeout", "soon", "web1", "true"}, code: 255, noOut: true, err: []string{`bad --reconnect-timeout "soon": use a Go duration like 30s or 4m`}},
	{args: []string{"invoke", "--fold", "--json", "web1", "true"}, code: 255, noOut: true, err: []string{"--fold and --json do not go together", usageInvoke}},
	{args: []string{"invoke", "web1", "--json", "echo"}, code: 255, noOut: true, err: []string{"--json is an option of tether invoke, and options go before the targets: tether invoke --json web1 ...", "use -- before a remote command"}},
	{args: []string{"invoke", "web1", "-n", "echo"}, code: 255, noOut: true, err: []string{"-n is an option of tether invoke"}},
	{args: []string{"invoke", "web1", "--throttle=3", "echo"}, code: 255, noOut: true, err: []string{"--throttle=3 is an option of tether invoke"}},
	{args: []string{"--connect-timeout", "0", "list"}, code: 255, noOut: true, err: []string{`bad --connect-timeout "0": use seconds`}},
	{args: []string{"--connect-timeout", "soon", "list"}, code: 255, noOut: true, err: []string{`bad --connect-timeout "soon"`}},
	{args: []string{"list", "-o", "tall"}, code: 255, noOut: true, err: []string{`bad -o "tall": the only output format is wide`}},
	{args: []string{"list"}, env: map[string]string{"TETHER_CONTROL_PERSIST": "soon"}, code: 255, noOut: true, err: []string{`bad TETHER_CONTROL_PERSIST "soon": use a Go duration`}},

	// Bad addresses and the wrong kind of address.
	{args: []string{"new", "a b"}, code: 255, noOut: true, err: []string{`bad address list "a b": separate addresses with commas, not spaces (a,b)`}},
	{args: []string{"new", "web1:99999"}, code: 255, noOut: true, err: []string{`bad address "web1:99999": port "99999" is not a number from 1 to 65535`}},
	{args: []string{"new", "web1/work"}, code: 255, noOut: true, err: []string{"web1/work is a session address; this command takes hosts"}},
	{args: []string{"receive", "web1"}, code: 255, noOut: true, err: []string{"web1 is a host, not a session: use HOST/NAME"}},
	{args: []string{"connect", "web[1-2]"}, code: 255, noOut: true, err: []string{"web1 is a host, not a session: use HOST/NAME"}},
	{args: []string{"remove", "web1"}, code: 255, noOut: true, err: []string{"web1 is a host, not a session: use HOST/NAME, or remove --all web1", "usage: tether remove"}},
	{args: []string{"remove", "--all", "web1/work"}, code: 255, noOut: true, err: []string{"--all takes hosts (or HOST/*), not the session web1/work"}},

	// Target expressions: ranges, groups, set operations, exclusions, host files.
	{args: []string{"hosts", "@web"}, code: 0, outIs: str("web1\nweb2\nweb3\n")},
	{args: []string{"hosts", "web[01-03]/deploy,db[1-2]"}, code: 0, outIs: str("web01/deploy\nweb02/deploy\nweb03/deploy\ndb1\ndb2\n")},
	{args: []string{"hosts", "--fold", "web[01-03]", "web07"}, code: 0, outIs: str("web[01-03,07]\n")},
	{args: []string{"hosts", "@web!web2"}, code: 0, outIs: str("web1\nweb3\n")},
	{args: []string{"hosts", "-x", "web2", "@web,@db"}, code: 0, outIs: str("web1\nweb3\ndb1\ndb2\n")},
	{args: []string{"hosts", "-f", "$HOME/hosts.txt"}, files: map[string]string{"hosts.txt": "# two racks\nrack1\nrack2 # the new one\n"}, code: 0, outIs: str("rack1\nrack2\n")},
	{args: []string{"hosts"}, env: map[string]string{"TETHER_HOSTS": "$HOME/hosts.txt"}, files: map[string]string{"hosts.txt": "n[1-2]\n"}, code: 0, outIs: str("n1\nn2\n")},
	{args: []string{"hosts", "--inventory", "$HOME/inv.ini", "@app"}, files: map[string]string{"inv.ini": "[app]\napp[1:2]\n"}, code: 0, outIs: str("app1\napp2\n")},
	{args: []string{"hosts"}, code: 255, noOut: true, err: []string{"no targets: give a target expression", "usage: tether hosts"}},
	{args: []string{"hosts", ""}, code: 255, noOut: true, err: []string{`targets "": matches no targets`}},
	{args: []string{"invoke", ",", "true"}, code: 255, noOut: true, err: []string{`targets ",": matches no targets`}},
	{args: []string{"hosts", "web[3-1]"}, code: 255, noOut: true, err: []string{`targets "web[3-1]": range "3-1" goes backwards; write 1-3`}},
	{args: []string{"new", "web[3-1]"}, code: 255, noOut: true, err: []string{`range "3-1" goes backwards`}},
	{args: []string{"hosts", "@nosuch"}, code: 255, noOut: true, err: []string{`targets "@nosuch": unknown group (groups come from $HOME/.config/tether/groups.toml)`}},
	{args: []string{"invoke", "@nosuch/x", "true"}, code: 255, noOut: true, err: []string{`unknown group`}},
	{args: []string{"hosts", "-f", "$HOME/none.txt"}, code: 255, noOut: true, err: []string{"targets: hosts file: stat $HOME/none.txt: no such file or directory"}},

	// Local files: the registry and known_hosts.
	{args: []string{"list", "--json"}, code: 0, noOut: true},
	{args: []string{"list"}, code: 0, outIs: str("SESSION  STATE  AVAILABILITY  SHELL  HELD BY  CREATED  IDLE  COMMAND\n")},
	{args: []string{"forget", "web9/x"}, code: 1, noOut: true, err: []string{"tether: web9/x: no remembered session matches (tether list shows them)"}},
	{args: []string{"forget", "web9/x,web8"}, code: 1, noOut: true, err: []string{"web9/x: no remembered session matches", "web8: no remembered session matches"}},
	{args: []string{"known-hosts", "remove", "web9"}, code: 255, noOut: true, err: []string{"no key of web9 in $HOME/.config/tether/known_hosts"}},
	{args: []string{"known-hosts", "remove", "web9/x"}, code: 255, noOut: true, err: []string{"web9/x is a session address; known-hosts remove takes HOST[:PORT]"}},
	{args: []string{"known-hosts", "remove", "web9", "web8"}, files: map[string]string{".config/tether/known_hosts": "# mine\nweb9 $PUB\n[web9]:2222 $PUB\n"},
		code: 255, out: []string{"removed 1 key of web9 from $HOME/.config/tether/known_hosts (line 2); the old file is $HOME/.config/tether/known_hosts.old"},
		err: []string{"no key of web8 in"}},
}

func TestCLIOffline(t *testing.T) {
	if len(offlineCases) < 25 {
		t.Fatalf("only %d cases", len(offlineCases))
	}
	for _, tc := range offlineCases {
		name := strings.Join(tc.args, " ")
		t.Run(name, func(t *testing.T) {
			ce := newCLIEnv(t)
			ce.writeFile(t, ".config/tether/groups.toml", groupsToml)
			checkCase(t, ce, "", tc)
		})
	}
}

// checkCase runs tc in ce and checks its exit status and output.
func checkCase(t *testing.T, ce *cliEnv, host string, tc cliCase) {
	t.Helper()
	expand := strings.NewReplacer("$HOME", ce.home, "$HOST", host, "$PUB", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ce.pub)))).Replace
	for rel, data := range tc.files {
		ce.writeFile(t, rel, expand(data))
	}
	for k, v := range tc.env {
		ce.vars[k] = expand(v)
	}
	defer func() {
		for k := range tc.env {
			delete(ce.vars, k)
		}
	}()
	args := make([]string, len(tc.args))
	for i, a := range tc.args {
		args[i] = expand(a)
	}
	code := ce.run(t, args...)
	stdout, stderr := ce.out.String(), ce.errOut.String()
	report := func(format string, a ...any) {
		t.Helper()
		t.Errorf("tether %s: "+format+"\nexit %d\nstdout:\n%s\nstderr:\n%s", append(append([]any{strings.Join(args, " ")}, a...), code, stdout, stderr)...)
	}
	if code != tc.code {
		report("exit status %d, want %d", code, tc.code)
	}
	for _, w := range tc.out {
		if w = expand(w); !strings.Contains(stdout, w) {
			report("stdout lacks %q", w)
		}
	}
	for _, w := range tc.err {
		if w = expand(w); !strings.Contains(stderr, w) {
			report("stderr lacks %q", w)
		}
	}
	if tc.outIs != nil && stdout != expand(*tc.outIs) {
		report("stdout is %q, want %q", stdout, expand(*tc.outIs))
	}
	if tc.noOut && stdout != "" {
		report("stdout should be empty")
	}
	if len(tc.jsonKeys) > 0 {
		checkJSONLines(t, stdout, tc.jsonKeys, report)
	}
}

// checkJSONLines checks that out is one JSON object a line, each with one
// of the key sets shapes (comma-separated key lists, "!" before a key
// that must be absent).
func checkJSONLines(t *testing.T, out string, shapes []string, report func(string, ...any)) {
	t.Helper()
	if out == "" {
		report("no JSON on stdout")
		return
	}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			report("line %q is not a JSON object: %v", line, err)
			continue
		}
		if shapeOf(obj, shapes) == "" {
			report("line %q has none of the shapes %q", line, shapes)
		}
	}
}

// shapeOf is the first of shapes obj has, or "".
func shapeOf(obj map[string]any, shapes []string) string {
	for _, s := range shapes {
		ok := true
		for _, k := range strings.Split(s, ",") {
			if absent, isNot := strings.CutPrefix(k, "!"); isNot {
				if _, has := obj[absent]; has {
					ok = false
				}
			} else if _, has := obj[k]; !has {
				ok = false
			}
		}
		if ok {
			return s
		}
	}
	return ""
}

// agentSteps run in order against one in-process agent, with one client
// home: each step sees what the ones before it did (the registry, the
// sessions on the host, known_hosts).
var agentSteps = []cliCase{
	// First contact trusts the host key and says so on stderr.
	{args: []string{"new", "--name", "work", "$HOST"}, code: 0, outIs: str("$HOST/work\n"), err: []string{"permanently added", "to the list of known hosts ($HOME/.config/tether/known_hosts)"}},
	{args: []string{"new", "--name", "work", "$HOST"}, code: 255, noOut: true, err: []string{"tether: $HOST: cannot open session:", "work"}},
	{args: []string{"new", "--idle-timeout", "soon", "$HOST"}, code: 255, noOut: true, err: []string{"tether: $HOST: cannot open session:", "soon"}},
	{args: []string{"list", "--json"}, code: 0, jsonKeys: []string{"address,name,state,availability"}, out: []string{`"address":"$HOST/work"`, `"state":"Opened"`}},
	{args: []string{"list", "--json", "$HOST"}, code: 0, jsonKeys: []string{"address,name,state,availability"}, out: []string{`"address":"$HOST/work"`}},
	{args: []string{"list", "-o", "wide"}, code: 0, out: []string{"SESSION", "STATE", "$HOST/work", "Opened", "Available"}},
	{args: []string{"invoke", "$HOST/work", "echo", "hi"}, code: 0, outIs: str("hi\n")},
	{args: []string{"invoke", "$HOST/work", "exit 3"}, code: 3, noOut: true},
	{args: []string{"invoke", "$HOST/work", "--", "echo", "-n", "x"}, code: 0, outIs: str("x")},
	{args: []string{"invoke", "$HOST/work", "echo oops >&2; exit 4"}, code: 4, noOut: true, err: []string{"oops\n"}},
	{args: []string{"invoke", "--json", "$HOST/work", "echo hi; exit 5"}, code: 5,
		jsonKeys: []string{"target,stream,data", "target,exit_code,duration_ms"}, out: []string{`"stream":"stdout"`, `"data":"hi`, `"exit_code":5`}},
	// Several targets: prefixed lines, the largest status, a summary.
	{args: []string{"invoke", "$HOST/work,$HOST", "echo hi; exit 2"}, code: 2, out: []string{"$HOST/work: hi\n", "$HOST: hi\n"}, err: []string{"2 failed"}},
	{args: []string{"invoke", "--json", "$HOST/work,$HOST", "exit 6"}, code: 6,
		jsonKeys: []string{"target,exit_code,duration_ms", "summary"}, out: []string{`"summary":{`, `"failed":2`}},
	{args: []string{"invoke", "--fold", "$HOST/work,$HOST", "echo same"}, code: 0, out: []string{"same\n", "(2)"}},
	{args: []string{"config", "get", "$HOST", "MaxShellsPerUser"}, code: 0, outIs: str("30\n")},
	{args: []string{"config", "list", "--json", "$HOST"}, code: 0, jsonKeys: []string{"host,key,value,default,source"}, out: []string{`"key":"IdleTimeout"`}},
	{args: []string{"config", "get", "$HOST", "NoSuchKey"}, code: 255, noOut: true, err: []string{"tether: $HOST:", "NoSuchKey"}},
	{args: []string{"receive", "$HOST/nosuch"}, code: 255, err: []string{"nosuch"}},
	{args: []string{"disconnect", "$HOST/work"}, code: 0, noOut: true},
	{args: []string{"connect", "$HOST/work"}, code: 0, outIs: str("$HOST/work: Opened\n")},
	{args: []string{"remove", "$HOST/work"}, code: 0, noOut: true},
	{args: []string{"list", "--json"}, code: 0, noOut: true},
	{args: []string{"forget", "$HOST/work"}, code: 1, err: []string{"$HOST/work: no remembered session matches"}},
	{args: []string{"invoke", "$HOST/work", "true"}, code: 255, err: []string{"$HOST/work", "closed"}},
}

func TestCLIAgainstAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("starts session hosts (builds the tether binary)")
	}
	ce := newCLIEnv(t)
	host := startCLIAgent(t, ce.pub)
	for _, tc := range agentSteps {
		checkCase(t, ce, host, tc)
	}
}
