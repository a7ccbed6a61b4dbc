package runspace

import (
	"os"
	"testing"
)

func TestUmask(t *testing.T) {
	dir := t.TempDir()
	r := newRunspace(t, Options{Dir: dir})
	runSteps(t, r, []step{
		{script: "umask 022; umask", out: "0022\n"},
		{script: "umask -S", out: "u=rwx,g=rx,o=rx\n"},
		{script: "umask -p", out: "umask 0022\n"},
		{script: "umask -p -S", out: "umask -S u=rwx,g=rx,o=rx\n"},
		{script: "umask u=rwx,g=rx,o=; umask", out: "0027\n"},
		{script: "umask g-x; umask", out: "0037\n"},
		{script: "umask a+r,o+x; umask", out: "0032\n"},
		{script: "umask 0077; builtin umask; command umask", out: "0077\n0077\n"},
		{script: "umask 027; echo x > redirected; touch touched; stat -c %a redirected touched", out: "640\n640\n"},
		{script: "umask 8", code: 1, errSub: "octal number out of range"},
		{script: "umask u=q", code: 1, errSub: "invalid symbolic mode"},
		{script: "umask -z", code: 2, errSub: "invalid option"},
		{script: "umask", out: "0027\n"},
		{script: "umask() { echo mine; }; umask; unset -f umask", out: "mine\n"},
	})
}

func TestSymbolicMask(t *testing.T) {
	tests := []struct {
		mode   string
		before int
		want   int
	}{
		{"u=rwx,g=rx,o=rx", 0o077, 0o022},
		{"a=", 0o022, 0o777},
		{"go-w", 0o000, 0o022},
		{"+x", 0o777, 0o666},
		{"u=rw,g=r,o=", 0o000, 0o137},
		{"o=rwx,g+w-r", 0o027, 0o040},
	}
	for _, tt := range tests {
		got, ok := parseSymbolic(tt.mode, tt.before)
		if !ok || got != tt.want {
			t.Errorf("parseSymbolic(%q, %04o) = %04o, %v; want %04o", tt.mode, tt.before, got, ok, tt.want)
		}
		if back, _ := parseSymbolic(symbolicMask(tt.want), 0); back != tt.want {
			t.Errorf("symbolicMask(%04o) = %q does not read back (%04o)", tt.want, symbolicMask(tt.want), back)
		}
	}
	for _, bad := range []string{"", "u", "u=z", "x=r", "u=r,"} {
		if _, ok := parseSymbolic(bad, 0); ok {
			t.Errorf("parseSymbolic(%q) accepted", bad)
		}
	}
}

const declSetup = `
s='plain'; q="it's \"quoted\" \$x"; nl=$'tab\there\nnewline\x01'
export EXP=exported
arr=(one 'two words' '' $'\t'); sparse[3]=x; sparse[10]=y
declare -A assoc=([k]=v ['key with space']='val ue' [empty]=)
declare -n ref=s
empty=
f1() { echo "f1 $1"; }
f2() {
	local l=1
	for i in 1 2; do
		if [ "$i" = 2 ]; then echo "$l$i" | cat; fi
	done
	case $1 in a|b) echo ab ;; *) echo other ;; esac
	declare -p l
	cat <<EOF
heredoc $1
EOF
}
f3() ( cd / && pwd )
`

const declNames = "s q nl EXP arr sparse assoc ref empty"

func TestDeclareRoundTrip(t *testing.T) {
	a := newRunspace(t, Options{})
	if code, _, errs := run(t, a, declSetup); code != 0 {
		t.Fatalf("setup: %d %q", code, errs)
	}
	code, dump, errs := run(t, a, "declare -p "+declNames+"; declare -f")
	if code != 0 || errs != "" {
		t.Fatalf("dump: %d %q", code, errs)
	}
	t.Logf("dump:\n%s", dump)

	b := newRunspace(t, Options{})
	if code, _, errs := run(t, b, dump); code != 0 {
		t.Fatalf("re-evaluating the dump: %d %q", code, errs)
	}
	check := "declare -p " + declNames + "; typeset -f; declare -F; f1 x; f2 a; f3"
	_, wantOut, _ := run(t, a, check)
	code, gotOut, errs := run(t, b, check)
	if code != 0 || gotOut != wantOut {
		t.Errorf("state differs after re-evaluation (code %d, stderr %q)\nwant:\n%s\ngot:\n%s", code, errs, wantOut, gotOut)
	}
	// The value of a few variables, checked directly.
	_, got, _ := run(t, b, `printf '%s|' "$s" "$q" "$nl" "${arr[@]}" "${assoc['key with space']}" "$ref" "${sparse[10]}"; sh -c 'echo "$EXP"'`)
	if want := "plain|it's \"quoted\" $x|tab\there\nnewline\x01|one|two words||\t|val ue|plain|y|exported\n"; got != want {
		t.Errorf("values: got %q, want %q", got, want)
	}
}

func TestDeclareQueries(t *testing.T) {
	r := newRunspace(t, Options{Env: []string{"PATH=" + os.Getenv("PATH")}})
	runSteps(t, r, []step{
		{script: "x=1; export y=2; f() { :; }; g() { :; }"},
		{script: "declare -p x y", out: "declare x='1'\ndeclare -x y='2'\n"},
		{script: "declare -p nope", code: 1, errSub: "declare: nope: not found"},
		{script: "declare -px | grep -c '^declare -x'", out: "2\n"}, // PATH and y
		{script: "declare -p | grep -E '^declare x='", out: "declare x='1'\n"},
		{script: "declare -F", out: "declare -f f\ndeclare -f g\n"},
		{script: "typeset -f f", out: "f() { :; }\n"},
		{script: "declare -f nope", code: 1},
		{script: "h() { local z=3; declare -p z; }; h", out: "declare z='3'\n"},
		{script: "alias dp='declare -p'; dp x", out: "declare x='1'\n"},
		{script: "declare -r x=5; echo $x", out: "5\n"}, // assignments are still interp's
		{script: "declare -p x", out: "declare -r x='5'\n"},
		{script: "export -p | grep -v PATH=", out: "declare -x y='2'\n"},
		{script: "export | grep -v PATH=", out: "declare -x y='2'\n"},
		{script: "readonly -p | grep -E ' (x|y)='", out: "declare -r x='5'\n"},
		{script: "export z=9; sh -c 'echo $z'", out: "9\n"},
	})
}

func TestKill(t *testing.T) {
	r := newRunspace(t, Options{})
	runSteps(t, r, []step{
		{script: "kill -l 15", out: "TERM\n"},
		{script: "kill -0 $$; echo $?", out: "0\n"},
		{script: "sh -c 'kill -TERM $$; sleep 5'", code: 143},
		{script: "sh -c 'echo $$ > pid; exec sleep 100' & until [ -s pid ]; do sleep 0.01; done; kill $(cat pid); wait $!", code: 143},
	})
}

func TestDeclareInsideFunctionPrintsOriginal(t *testing.T) {
	r := newRunspace(t, Options{})
	_, out, _ := run(t, r, "f() { declare -p HOME; typeset -F; }; declare -f f")
	if want := "f() {\n\tdeclare -p HOME\n\ttypeset -F\n}\n"; out != want {
		t.Errorf("got %q, want %q", out, want)
	}
	if dir, _ := r.Dir(); dir == "" {
		t.Fatal("no dir")
	} else if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}
