package e2e

import (
	"fmt"
	"os"
	"testing"

	"github.com/imgedge/imgedge/server/internal/imaging"
)

// TestMain fails the run where GLib complained in this process (the
// servers tests run in process); those run as processes are checked by
// their logs (glibComplained).
func TestMain(m *testing.M) {
	code := m.Run()
	if n := imaging.GLibComplaints(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: GLib printed %d critical warnings or warnings (above)\n", n)
		code = 1
	}
	os.Exit(code)
}
