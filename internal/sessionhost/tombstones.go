package sessionhost

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// MaxTombstones is how many tombstones a user's .closed directory keeps:
// every temporary session leaves one, so without a bound a user's state
// would grow by one file per `tether invoke HOST`. The oldest go first.
const MaxTombstones = 256

// pruneTombstones removes the oldest tombstones beyond MaxTombstones from
// dir. It runs in the session host, as the user who owns dir.
func pruneTombstones(dir string, keep int) {
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) <= keep {
		return
	}
	type stone struct {
		name string
		mod  int64
	}
	var stones []stone
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		stones = append(stones, stone{e.Name(), fi.ModTime().UnixNano()})
	}
	if len(stones) <= keep {
		return
	}
	sort.Slice(stones, func(i, j int) bool { return stones[i].mod < stones[j].mod })
	for _, s := range stones[:len(stones)-keep] {
		os.Remove(filepath.Join(dir, s.name))
	}
}
