package app

import (
	"runtime/debug"

	"github.com/imgedge/imgedge/server/internal/config"
)

// gcPercent is the collector's target unless GOGC sets one. A hot hit on
// versitygw allocates ~60 KB (the S3 SDK's HEAD and gRPC, measured with
// the callers in the same process) over a live heap of 3 MB: at Go's
// default, 100, the collector ran ~70 times a second at 4,500 hits per
// second, each time stopping the world for up to a millisecond on two
// busy cores. At 400 it runs ~16 times: 12–16 % more hits per second, p90
// 3.4 → 2.5 ms and p99 5.8 → 5.1 ms at c = 8 (BENCHMARKS.md). The memory
// limit bounds the heap however far this lets it grow: peak RSS in the
// flood tests moved within their noise.
const gcPercent = 400

// TuneGC sets the garbage collector for the service, leaving alone what
// GOGC and GOMEMLIMIT (read through lookupEnv) already set: the heap may
// grow to gcPercent over what is live, and never past the memory budget.
func TuneGC(cfg config.Config, lookupEnv func(string) (string, bool)) {
	if _, set := lookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	if _, set := lookupEnv("GOMEMLIMIT"); !set {
		// Uploads and sources live on the Go heap: collect their garbage
		// before the heap outgrows the memory budget.
		debug.SetMemoryLimit(int64(cfg.MaxMemory))
	}
}
