package e2e

import "testing"

// TestMain removes the binary the tests built.
func TestMain(m *testing.M) { Main(m) }
