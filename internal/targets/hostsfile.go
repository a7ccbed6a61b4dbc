package targets

import (
	"fmt"
	"os"
	"strings"
)

// maxHostsFile bounds a host file (pdsh's WCOLL, Tether's -f): a file that
// large is a mistake (a binary, a log), not a list of hosts.
const maxHostsFile = 16 << 20

// ReadHostsFile reads a host file: one target expression per line; blank
// lines and everything from '#' to the end of a line are ignored.
func ReadHostsFile(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("targets: hosts file: %w", err)
	}
	if fi.Size() > maxHostsFile {
		return nil, fmt.Errorf("targets: hosts file %s: %d bytes is more than the %d a host file may have", path, fi.Size(), maxHostsFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("targets: hosts file: %w", err)
	}
	exprs := ParseHostsFile(data)
	if len(exprs) == 0 {
		return nil, fmt.Errorf("targets: hosts file %s names no targets", path)
	}
	return exprs, nil
}

// ParseHostsFile is ReadHostsFile of data.
func ParseHostsFile(data []byte) []string {
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}
