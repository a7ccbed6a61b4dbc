package journal

import (
	"fmt"
	"strings"
)

// Mode decides what Append does when the journal is full.
type Mode int

const (
	// Block makes Append wait until acknowledgements free enough space.
	Block Mode = iota
	// Drop makes Append discard the oldest unacknowledged segments.
	Drop
)

func (m Mode) String() string {
	switch m {
	case Block:
		return "block"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("mode(%d)", int(m))
}

// ParseMode parses "block" or "drop" (case-insensitive).
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "block":
		return Block, nil
	case "drop":
		return Drop, nil
	}
	return 0, fmt.Errorf("journal: unknown mode %q (want \"block\" or \"drop\")", s)
}
