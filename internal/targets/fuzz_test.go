package targets

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// fuzzMax keeps each fuzz input cheap while still exercising the caps.
const fuzzMax = 2000

// FuzzExpand: Expand never panics, never returns more than the cap, never
// returns an empty list without an error, returns each target once, and
// expand∘fold gives back the same set.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{
		"web[01-20]", "db[1-3,7]", "n[1-10/2]", "rack[1-2]-n[01-04]", "web[01-03]/deploy",
		"user@web[1-3]:4422/s", "ssh://web[1-3]/s", "@web", "@web/s[1-2]", "@a", "@rack[1-2]",
		"web[1-5]!web3", "web[1-5]&web[2-9]", "a,b,,c", "[::1]:4422/s", "n[08-11]", "n[1,01]",
		"web[1-]", "web[3-1]", "web[a-c]", "web[1", "web1]", "web[[1]]", "n[1-100000000]",
		"x[1-3]y[01-03]z[5-6]", "!a", "a!", "a&", "10.0.[0-1].[1-2]", "n[0-99/7]",
	} {
		f.Add(s)
	}
	groups := &Groups{}
	groups.AddExpressions("fuzz", map[string][]string{
		"web": {"web[1-3]"}, "a": {"@b"}, "b": {"@a"}, "rack1": {"r1n[1-2]"}, "big": {"n[1-1500]"},
	})
	f.Fuzz(func(t *testing.T, expr string) {
		if len(expr) > 512 {
			return
		}
		got, err := Expand(expr, Options{Groups: groups, Max: fuzzMax})
		if err != nil {
			var te *Error
			if !errors.As(err, &te) {
				t.Fatalf("Expand(%q): error %v is not a *Error", expr, err)
			}
			return
		}
		if len(got) == 0 || len(got) > fuzzMax {
			t.Fatalf("Expand(%q): %d targets", expr, len(got))
		}
		seen := map[string]bool{}
		for _, s := range got {
			if seen[s] {
				t.Fatalf("Expand(%q): %q twice", expr, s)
			}
			seen[s] = true
		}
		folded := Fold(got)
		back, err := Expand(folded, Options{Max: fuzzMax})
		if err != nil {
			t.Fatalf("Expand(Fold(Expand(%q))) = Expand(%q): %v", expr, folded, err)
		}
		if !sameSet(back, got) {
			t.Fatalf("round trip of %q through %q: got %d targets, want %d", expr, folded, len(back), len(got))
		}
	})
}

// FuzzFold: any list of names built from digits and a few separators
// folds to an expression that expands back to the same set.
func FuzzFold(f *testing.F) {
	f.Add("web01 web02 web7 web10 db1 u@h1:4422/s")
	f.Add("n9 n09 n10 n010 n0 n00")
	f.Add("r1-n01 r1-n02 r2-n01 r3-n03 r2-n02")
	f.Fuzz(func(t *testing.T, in string) {
		var list []string
		for _, w := range strings.Fields(in) {
			// Keep only names Expand could have produced as one literal.
			if len(w) > 40 || strings.ContainsAny(w, "[],!&@") || strings.ContainsFunc(w, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				continue
			}
			list = append(list, w)
		}
		if len(list) == 0 || len(list) > 200 {
			return
		}
		folded := Fold(list)
		back, err := Expand(folded, Options{})
		if err != nil {
			t.Fatalf("Expand(Fold(%q)) = Expand(%q): %v", list, folded, err)
		}
		if !sameSet(back, list) {
			t.Fatalf("Fold(%q) = %q expands to %q", list, folded, back)
		}
	})
}

// FuzzInventory: no inventory text panics the parsers, and every target
// an inventory resolves to is a single expression term.
func FuzzInventory(f *testing.F) {
	f.Add([]byte(iniInventory), "hosts.ini")
	f.Add([]byte(yamlInventory), "hosts.yml")
	f.Add([]byte(`{"all":{"children":["web"]},"web":{"hosts":["a"]},"_meta":{"hostvars":{"a":{"ansible_port":22}}}}`), "list")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		if len(data) > 4096 {
			return
		}
		inv, err := ParseInventory(data, name)
		if err != nil {
			return
		}
		for g, members := range inv.Groups {
			for _, m := range members {
				terms, err := splitTerms(m)
				if err != nil || len(terms) != 1 || strings.HasPrefix(m, "@") {
					t.Fatalf("group %s: member %q is not one target (%v)", g, m, err)
				}
				if got, err := Expand(m, Options{}); err != nil || len(got) != 1 || got[0] != m {
					t.Fatalf("group %s: member %q expands to %q, %v", g, m, got, err)
				}
			}
		}
	})
}

func BenchmarkExpand10000(b *testing.B) {
	for b.Loop() {
		got, err := Expand("n[00001-10000]", Options{})
		if err != nil || len(got) != 10000 {
			b.Fatal(err)
		}
	}
}

func BenchmarkFold10000(b *testing.B) {
	list := make([]string, 10000)
	for i := range list {
		list[i] = fmt.Sprintf("n%05d", i+1)
	}
	b.ResetTimer()
	for b.Loop() {
		if got := Fold(list); got != "n[00001-10000]" {
			b.Fatal(got)
		}
	}
}

func BenchmarkFold10000Sessions2D(b *testing.B) {
	var list []string
	for r := 1; r <= 100; r++ {
		for n := 1; n <= 100; n++ {
			list = append(list, fmt.Sprintf("deploy@rack%03d-n%02d:4422/s", r, n))
		}
	}
	b.ResetTimer()
	for b.Loop() {
		if got := Fold(list); got != "deploy@rack[001-100]-n[01-100]:4422/s" {
			b.Fatal(got)
		}
	}
}
