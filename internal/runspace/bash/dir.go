package bash

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Dir is bash's current directory now, read from /proc/PID/cwd: bash's own
// idea of it ($PWD) could be stale or a lie, the kernel's is what a relative
// path opened by bash would use. The session host runs as bash's user, so
// the link is readable.
func (s *Shell) Dir() (string, error) {
	s.mu.Lock()
	pid := 0
	if s.p != nil {
		pid = s.p.pid
	}
	s.mu.Unlock()
	if pid == 0 {
		return "", errors.New("bash is not running (it is being restarted); try again")
	}
	dir, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	if err != nil {
		return "", fmt.Errorf("bash's current directory: %w", err)
	}
	if d, ok := strings.CutSuffix(dir, " (deleted)"); ok {
		return "", fmt.Errorf("the session's current directory %s was removed; cd somewhere else in the session first", d)
	}
	return dir, nil
}
