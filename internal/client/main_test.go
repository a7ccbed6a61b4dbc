package client

import (
	"testing"

	"github.com/tether-sh/tether/internal/e2e"
)

// TestMain removes the tether binary that e2e.Binary built for the tests.
func TestMain(m *testing.M) { e2e.Main(m) }
