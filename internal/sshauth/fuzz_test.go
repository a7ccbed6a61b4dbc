package sshauth

import (
	"crypto/ed25519"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func fuzzKey(seed byte) ssh.PublicKey {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	pub, err := ssh.NewPublicKey(ed25519.NewKeyFromSeed(s).Public())
	if err != nil {
		panic(err)
	}
	return pub
}

func FuzzParseAuthorizedKeys(f *testing.F) {
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(fuzzKey(1))))
	for _, s := range []string{
		"",
		"# comment\n\n" + line + " user@host\n",
		`restrict,from="10.0.0.0/8,!10.1.2.3",no-pty ` + line + " c",
		`command="echo \"x\"",expiry-time="20301231Z" ` + line,
		`from="` + line,
		"ssh-ed25519 AAAA\nssh-rsa\n\"\n",
		line + "\r\n" + line + "\x00",
		`environment="A=B" cert-authority principals="a,b" ` + line,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, errs := ParseAuthorizedKeys(data)
		for _, k := range keys {
			if k.Key == nil || k.Line < 1 {
				t.Fatalf("bad key %+v", k)
			}
		}
		for _, e := range errs {
			if !strings.HasPrefix(e.Error(), "line ") {
				t.Fatalf("error without line: %v", e)
			}
		}
		remote := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 1}
		for _, k := range keys {
			MatchKey(keys, k.Key, remote, time.Now())
			KeyAllowed(keys, k.Key)
		}
		MatchKey(keys, fuzzKey(1), nil, time.Now())
	})
}

func FuzzKnownHostsLine(f *testing.F) {
	k := fuzzKey(2)
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
	for _, s := range []string{
		"",
		"127.0.0.1 " + line,
		"[127.0.0.1]:4423 " + line,
		knownhosts.HashHostname("127.0.0.1") + " " + line,
		"@cert-authority *.example " + line,
		"@revoked * " + line,
		"@revoked @cert-authority x " + line,
		"!127.0.0.1,* " + line,
		"|1|bm9zYWx0|bm9oYXNo " + line,
		"|2|x|y " + line,
		"[::1 " + line,
		"a\tssh-ed25519 AAAA\n# c\n" + line,
		"127.0.0.1 " + line + "\nno-newline-at-end",
	} {
		f.Add(s, "127.0.0.1:4422")
	}
	f.Add("x "+line, "[::1]:22")
	f.Add("x "+line, "no-port")
	f.Fuzz(func(t *testing.T, content, hostport string) {
		path := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		kh := &KnownHosts{Path: path}
		remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4422}
		cb := kh.HostKeyCallback()
		err1 := cb(hostport, remote, k)
		kh.HostKeyAlgorithms(hostport)
		// Once the callback accepted (possibly adding the host), it accepts
		// again without adding anything.
		if err1 == nil {
			before, _ := os.ReadFile(path)
			if err := cb(hostport, remote, k); err != nil {
				t.Fatalf("accepted, then refused: %v", err)
			}
			after, _ := os.ReadFile(path)
			if string(before) != string(after) {
				t.Fatalf("second check changed the file")
			}
		}
		if ce, ok := isChanged(err1); ok && (ce.Line < 1 || ce.File != path) {
			t.Fatalf("changed error without location: %+v", ce)
		}
	})
}
