package bootstrap

import "testing"

func TestAnswerBetweenMarkers(t *testing.T) {
	out := []byte("Welcome!\nos=Evil\nm-begin\nos=Linux\narch=x86_64\nhave=a\nhave=b\nm-end\nos=after\n")
	kv, ok := answer(out, "m")
	if !ok || kv["os"][0] != "Linux" || len(kv["os"]) != 1 || len(kv["have"]) != 2 {
		t.Fatalf("answer = %v %v", kv, ok)
	}
	if _, ok := answer([]byte("m-begin\nos=Linux\n"), "m"); ok {
		t.Fatal("an answer without its end marker was taken")
	}
}

func TestCheckDir(t *testing.T) {
	for _, d := range []string{".local/share/tether/bin", "/srv/t-1.2+x"} {
		if err := CheckDir(d); err != nil {
			t.Errorf("CheckDir(%q): %v", d, err)
		}
	}
	for _, d := range []string{"", "a b", "$HOME/x", "a'b", "-x", "a;b", "~/x"} {
		if CheckDir(d) == nil {
			t.Errorf("CheckDir(%q) accepted", d)
		}
	}
}

func TestGoArch(t *testing.T) {
	for _, c := range []struct{ os, m, arch string }{{"Linux", "x86_64", "amd64"}, {"Linux", "aarch64", "arm64"}, {"Linux", "sparc64", ""}, {"Darwin", "arm64", ""}} {
		_, a, ok := goArch(c.os, c.m)
		if a != c.arch || ok != (c.arch != "") {
			t.Errorf("goArch(%s, %s) = %s %v", c.os, c.m, a, ok)
		}
	}
}
