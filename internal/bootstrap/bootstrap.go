// Package bootstrap puts Tether on a host that has nothing but sshd: it
// probes the host with a POSIX script through `ssh HOST sh -s` (answers
// only between random markers, so login banners and noisy profiles cannot
// confuse it), uploads the client's own binary (or a release build for the
// host's architecture) to a per-user, per-version directory under a temp
// name with umask 077, checks its size and SHA-256 on the host, makes it
// executable and renames it into place. Nothing is downloaded on the host.
package bootstrap

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/tether-sh/tether/internal/sshtransport"
)

// DefaultDir is where binaries go on the host, relative to the home
// directory: DIR/VERSION-SHA/tether.
const DefaultDir = ".local/share/tether/bin"

// Options say what to install where.
type Options struct {
	SSH     *sshtransport.Options
	Version string // this client's version (the directory's name starts with it)
	// Exe is this client's binary; empty: os.Executable().
	Exe string
	// ReleaseDir holds builds for other architectures, named
	// tether-linux-amd64 and tether-linux-arm64; empty: Exe's directory.
	ReleaseDir string
	// Dir is the host directory for binaries; relative to the home
	// directory unless absolute; empty: DefaultDir.
	Dir string
	// CacheDir keeps this binary's SHA-256 between runs (keyed by size
	// and modification time); empty: computed each time.
	CacheDir string
}

// Binary is one binary that can be installed.
type Binary struct {
	Path, OS, Arch string
	Size           int64
	Sum            string // hex SHA-256
}

// ID is the directory name on the host: VERSION-first 12 hex digits of the sum.
func (b Binary) ID(version string) string { return version + "-" + b.Sum[:12] }

// Errors a caller acts on (all wrapped in an *Error naming the host).
var (
	ErrUnknownArch = errors.New("unknown architecture")
	ErrNoBinary    = errors.New("no tether build for the host's architecture")
	ErrNoExec      = errors.New("cannot run programs there")
	ErrNoSpace     = errors.New("no space")
	ErrNoShell     = errors.New("no sh")
	ErrChecksum    = errors.New("upload damaged")
)

// Error is a failed bootstrap on one host.
type Error struct {
	Host sshtransport.Host
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func (e *Error) Unwrap() error { return e.Kind }

func (o *Options) dir() string {
	if o.Dir != "" {
		return o.Dir
	}
	return DefaultDir
}

// CheckDir refuses a remote directory whose name a login shell (sh, bash,
// zsh, fish, tcsh) could read as anything but itself.
func CheckDir(d string) error {
	if d == "" {
		return errors.New("empty directory")
	}
	for _, r := range d {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+", r)) {
			return fmt.Errorf("bad host directory %q: use only letters, digits and / . _ - +", d)
		}
	}
	if strings.HasPrefix(d, "-") {
		return fmt.Errorf("bad host directory %q: it cannot start with '-'", d)
	}
	return nil
}

// Self is this client's own binary, with its checksum.
func (o *Options) Self() (Binary, error) {
	exe := o.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return Binary{}, fmt.Errorf("bootstrap: find own binary: %w", err)
		}
	}
	return o.binary(exe, runtime.GOOS, runtime.GOARCH)
}

func (o *Options) binary(path, goos, goarch string) (Binary, error) {
	f, err := os.Open(path)
	if err != nil {
		return Binary{}, fmt.Errorf("bootstrap: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Binary{}, fmt.Errorf("bootstrap: %w", err)
	}
	b := Binary{Path: path, OS: goos, Arch: goarch, Size: fi.Size()}
	key := fmt.Sprintf("%s %d %d", path, fi.Size(), fi.ModTime().UnixNano())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		key += fmt.Sprintf(" %d %d", st.Dev, st.Ino)
	}
	cache := ""
	if o.CacheDir != "" {
		h := sha256.Sum256([]byte(key))
		cache = filepath.Join(o.CacheDir, "sum-"+hex.EncodeToString(h[:8]))
		if s, err := os.ReadFile(cache); err == nil && len(bytes.TrimSpace(s)) == 64 {
			b.Sum = string(bytes.TrimSpace(s))
			return b, nil
		}
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return Binary{}, fmt.Errorf("bootstrap: read %s: %w", path, err)
	}
	b.Sum = hex.EncodeToString(h.Sum(nil))
	if cache != "" {
		// A cache, not state: a lost or torn write only costs a re-hash
		// (and a torn one is refused by the length check above).
		os.MkdirAll(o.CacheDir, 0o700)
		os.WriteFile(cache, []byte(b.Sum+"\n"), 0o600)
	}
	return b, nil
}

// Path is the binary's path on the host (relative to the home directory
// unless Dir is absolute).
func (o *Options) Path(b Binary) string {
	return o.dir() + "/" + b.ID(o.Version) + "/tether"
}

// ServeCommand is the remote command that runs b's stdio agent; it is
// plain words, so every login shell runs it the same way.
func (o *Options) ServeCommand(b Binary) (string, error) {
	if err := CheckDir(o.dir()); err != nil {
		return "", err
	}
	if err := CheckDir(b.ID(o.Version)); err != nil {
		return "", fmt.Errorf("bad version %q: %w", o.Version, err)
	}
	return o.Path(b) + " serve --stdio", nil
}

// Probe is what the probe script found on the host.
type Probe struct {
	OS, Arch string // uname -s, uname -m
	Home     string
	Dir      string   // the binaries' directory, absolute
	Have     []string // IDs installed
}

func marker() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "tether-" + hex.EncodeToString(b)
}

// answer is the key=value lines between the markers in out.
func answer(out []byte, m string) (map[string][]string, bool) {
	s := string(out)
	i := strings.Index(s, m+"-begin\n")
	if i < 0 {
		return nil, false
	}
	s = s[i+len(m)+len("-begin\n"):]
	j := strings.Index(s, m+"-end")
	if j < 0 {
		return nil, false
	}
	kv := map[string][]string{}
	for _, l := range strings.Split(s[:j], "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			kv[k] = append(kv[k], v)
		}
	}
	return kv, true
}

func (o *Options) fail(h sshtransport.Host, kind error, format string, a ...any) *Error {
	return &Error{Host: h, Kind: kind, Msg: fmt.Sprintf(format, a...)}
}

// shell runs a POSIX script on h through `sh -s` and returns its answer.
func (o *Options) shell(ctx context.Context, h sshtransport.Host, m, script string) (map[string][]string, error) {
	out, err := o.SSH.Output(ctx, h, "sh -s", strings.NewReader(script))
	if err != nil {
		var se *sshtransport.Error
		if errors.As(err, &se) && se.Kind == sshtransport.Remote && se.Code == 127 {
			return nil, o.fail(h, ErrNoShell, "%s has no sh (%s): tether needs a POSIX sh on the host", h, se.Line)
		}
		return nil, err
	}
	kv, ok := answer(out, m)
	if !ok {
		return nil, o.fail(h, ErrNoShell, "%s: the probe script's answer is missing (is sh a POSIX shell there?)", h)
	}
	return kv, nil
}

// Probe runs the probe script on h; ids are the installs to look for.
func (o *Options) Probe(ctx context.Context, h sshtransport.Host, ids []string) (*Probe, error) {
	if err := CheckDir(o.dir()); err != nil {
		return nil, err
	}
	m := marker()
	var b strings.Builder
	fmt.Fprintf(&b, "M=%s\nd=%s\n", m, o.dir())
	b.WriteString(`case $d in /*) ;; *) d="$HOME/$d" ;; esac
echo "$M-begin"
echo "os=$(uname -s 2>/dev/null)"
echo "arch=$(uname -m 2>/dev/null)"
echo "home=$HOME"
echo "dir=$d"
`)
	for _, id := range ids {
		if CheckDir(id) == nil {
			fmt.Fprintf(&b, "[ -x \"$d/%s/tether\" ] && echo have=%s\n", id, id)
		}
	}
	b.WriteString("echo \"$M-end\"\n")
	kv, err := o.shell(ctx, h, m, b.String())
	if err != nil {
		return nil, err
	}
	first := func(k string) string {
		if v := kv[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return &Probe{OS: first("os"), Arch: first("arch"), Home: first("home"), Dir: first("dir"), Have: kv["have"]}, nil
}

// goArch maps uname -s/-m onto Go's names; ok is false for what Tether
// has no build for.
func goArch(osName, machine string) (goos, goarch string, ok bool) {
	if osName != "Linux" {
		return "", "", false
	}
	switch machine {
	case "x86_64", "amd64":
		return "linux", "amd64", true
	case "aarch64", "arm64", "armv8l":
		return "linux", "arm64", true
	}
	return "", "", false
}

// Candidates are the binaries this client can install: itself, and the
// release builds it finds.
func (o *Options) Candidates() ([]Binary, error) {
	self, err := o.Self()
	if err != nil {
		return nil, err
	}
	out := []Binary{self}
	dir := o.ReleaseDir
	if dir == "" {
		dir = filepath.Dir(self.Path)
	}
	for _, arch := range []string{"amd64", "arm64"} {
		if arch == self.Arch && self.OS == "linux" {
			continue
		}
		p := filepath.Join(dir, "tether-linux-"+arch)
		if _, err := os.Stat(p); err != nil {
			continue
		}
		b, err := o.binary(p, "linux", arch)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// Ensure makes sure a Tether of this version runs on h and returns the
// binary to run there (Path(b) is where it is).
func (o *Options) Ensure(ctx context.Context, h sshtransport.Host) (Binary, error) {
	cands, err := o.Candidates()
	if err != nil {
		return Binary{}, err
	}
	var ids []string
	for _, c := range cands {
		ids = append(ids, c.ID(o.Version))
	}
	p, err := o.Probe(ctx, h, ids)
	if err != nil {
		return Binary{}, err
	}
	goos, goarch, ok := goArch(p.OS, p.Arch)
	if !ok {
		return Binary{}, o.fail(h, ErrUnknownArch, "%s: unknown architecture %q/%q (uname -s/-m): tether runs on linux/amd64 and linux/arm64",
			h, p.OS, p.Arch)
	}
	var bin *Binary
	for i := range cands {
		if cands[i].OS == goos && cands[i].Arch == goarch {
			bin = &cands[i]
			break
		}
	}
	if bin == nil {
		dir := o.ReleaseDir
		if dir == "" {
			dir = filepath.Dir(cands[0].Path)
		}
		return Binary{}, o.fail(h, ErrNoBinary, "%s is %s/%s and this tether is %s/%s: put the %s/%s build (make release) at %s",
			h, goos, goarch, cands[0].OS, cands[0].Arch, goos, goarch, filepath.Join(dir, "tether-"+goos+"-"+goarch))
	}
	for _, id := range p.Have {
		if id == bin.ID(o.Version) {
			return *bin, nil // there, but would not run: the caller says why
		}
	}
	return *bin, o.Install(ctx, h, p, *bin)
}

// Install uploads b to h (p is the probe's answer) and checks it there.
func (o *Options) Install(ctx context.Context, h sshtransport.Host, p *Probe, b Binary) error {
	dir := o.dir() + "/" + b.ID(o.Version)
	tmp := ".tether-" + marker()[7:19] + ".tmp"
	f, err := os.Open(b.Path)
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	defer f.Close()
	// sh -c with single-quoted words: the same in sh, bash, zsh, fish and
	// tcsh (nothing in them is special to any of those shells).
	up := fmt.Sprintf(`sh -c 'umask 077; mkdir -p "$1" || exit 3; cat > "$1/$2" || { rm -f "$1/$2"; exit 4; }' sh %s %s`, dir, tmp)
	if _, err := o.SSH.Output(ctx, h, up, io.LimitReader(f, b.Size)); err != nil {
		var se *sshtransport.Error
		if errors.As(err, &se) && se.Kind == sshtransport.Remote {
			where := p.Dir + "/" + b.ID(o.Version)
			if strings.Contains(se.Line, "No space") || strings.Contains(se.Line, "quota") {
				return o.fail(h, ErrNoSpace, "%s: no space to upload tether (%d MB) to %s: %s; free some, or set TETHER_REMOTE_DIR to a directory on the host with room",
					h, (b.Size+1<<20-1)>>20, where, se.Line)
			}
			return o.fail(h, ErrNoSpace, "%s: cannot upload tether to %s: %s", h, where, se.Line)
		}
		return err
	}
	m := marker()
	script := fmt.Sprintf(`M=%s
f=%s/%s
final=%s/tether
out() { echo "$M-begin"; echo "$1"; echo "$M-end"; }
size=$(wc -c < "$f" 2>/dev/null | tr -d ' ')
if [ "$size" != %d ]; then rm -f "$f"; out "error=size $size"; exit 0; fi
sum=$(sha256sum "$f" 2>/dev/null || shasum -a 256 "$f" 2>/dev/null || openssl dgst -sha256 -r "$f" 2>/dev/null)
sum=${sum%%%% *}
if [ -z "$sum" ]; then rm -f "$f"; out "error=nosum"; exit 0; fi
if [ "$sum" != %s ]; then rm -f "$f"; out "error=sum $sum"; exit 0; fi
chmod 700 "$f" || { rm -f "$f"; out "error=chmod"; exit 0; }
"$f" version >/dev/null 2>&1
rc=$?
if [ $rc -ne 0 ]; then rm -f "$f"; out "error=exec $rc"; exit 0; fi
mv -f "$f" "$final" || { rm -f "$f"; out "error=rename"; exit 0; }
out "ok=$sum"
`, m, dir, tmp, dir, b.Size, b.Sum)
	kv, err := o.shell(ctx, h, m, script)
	if err != nil {
		return err
	}
	where := p.Dir + "/" + b.ID(o.Version)
	if e := kv["error"]; len(e) > 0 {
		word, detail, _ := strings.Cut(e[0], " ")
		switch word {
		case "size":
			return o.fail(h, ErrNoSpace, "%s: the upload to %s is %s bytes, not %d (disk full or quota?); free space or set TETHER_REMOTE_DIR", h, where, detail, b.Size)
		case "sum":
			return o.fail(h, ErrChecksum, "%s: the upload to %s has SHA-256 %s, not %s; nothing was installed", h, where, detail, b.Sum)
		case "nosum":
			return o.fail(h, ErrChecksum, "%s: no sha256sum, shasum or openssl on the host to check the upload; nothing was installed", h)
		case "exec":
			if detail == "126" {
				return o.fail(h, ErrNoExec, "%s: cannot run programs from %s (mounted noexec?): set TETHER_REMOTE_DIR to a host directory that allows it", h, where)
			}
			return o.fail(h, ErrNoExec, "%s: the uploaded tether in %s does not run (exit %s)", h, where, detail)
		default:
			return o.fail(h, ErrNoSpace, "%s: installing tether in %s failed (%s)", h, where, e[0])
		}
	}
	if ok := kv["ok"]; len(ok) == 0 || ok[0] != b.Sum {
		return o.fail(h, ErrChecksum, "%s: the host did not confirm the upload's checksum", h)
	}
	return nil
}

// Pruned is what Prune did on a host.
type Pruned struct {
	Removed []string // VERSION-SHA directories removed
	Running []string // kept: a process (a session host) runs from them
	Kept    []string // kept: this client's own
}

// Prune removes the VERSION-SHA directories under the binaries' directory
// on h from which no process of the user runs (their session hosts ended),
// keeping keep (this client's). Only directories named as Install names
// them are touched; it runs as the user, in the user's own directory.
func (o *Options) Prune(ctx context.Context, h sshtransport.Host, keep []string) (*Pruned, error) {
	if err := CheckDir(o.dir()); err != nil {
		return nil, err
	}
	m := marker()
	var b strings.Builder
	fmt.Fprintf(&b, "M=%s\nd=%s\n", m, o.dir())
	b.WriteString("keep=' ")
	for _, k := range keep {
		if CheckDir(k) == nil {
			b.WriteString(k + " ")
		}
	}
	b.WriteString("'\n")
	// /proc/PID/exe of the user's processes says which binaries run; a
	// directory is only removed when none of them is in it.
	b.WriteString(`case $d in /*) ;; *) d="$HOME/$d" ;; esac
echo "$M-begin"
running=$(for p in /proc/[0-9]*; do readlink "$p/exe" 2>/dev/null; done)
for t in "$d"/*/tether; do
  [ -e "$t" ] || continue
  dir=${t%/tether}
  id=${dir##*/}
  case $id in *-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]) ;; *) continue ;; esac
  case $keep in *" $id "*) echo "kept=$id"; continue ;; esac
  if printf '%s\n' "$running" | grep -F -q -e "$dir/tether"; then echo "running=$id"; continue; fi
  if rm -rf -- "$dir"; then echo "removed=$id"; else echo "running=$id"; fi
done
echo "$M-end"
`)
	kv, err := o.shell(ctx, h, m, b.String())
	if err != nil {
		return nil, err
	}
	return &Pruned{Removed: kv["removed"], Running: kv["running"], Kept: kv["kept"]}, nil
}
