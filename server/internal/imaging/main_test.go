package imaging

import (
	"fmt"
	"os"
	"testing"
)

// TestMain fails the run where GLib complained: a critical warning is a
// check inside GLib that failed (an image header's size out of libvips'
// range was one) and that libvips went on past, so no test would see it.
func TestMain(m *testing.M) {
	code := m.Run()
	if n := GLibComplaints(); n > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: GLib printed %d critical warnings or warnings (above)\n", n)
		code = 1
	}
	os.Exit(code)
}
