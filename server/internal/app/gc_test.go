package app

import (
	"math"
	"runtime/debug"
	"testing"

	"github.com/imgedge/imgedge/server/internal/config"
)

func TestTuneGCLeavesWhatTheEnvironmentSets(t *testing.T) {
	cfg := config.Default()
	const otherPercent, otherLimit = 77, 123 << 20
	tests := []struct {
		name        string
		env         map[string]string
		wantPercent int
		wantLimit   int64
	}{
		{"neither set", nil, gcPercent, int64(cfg.MaxMemory)},
		{"GOGC set", map[string]string{"GOGC": "77"}, otherPercent, int64(cfg.MaxMemory)},
		{"GOMEMLIMIT set", map[string]string{"GOMEMLIMIT": "123MiB"}, gcPercent, otherLimit},
		{"both set", map[string]string{"GOGC": "77", "GOMEMLIMIT": "123MiB"}, otherPercent, otherLimit},
	}
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// What the runtime took from the environment at start.
			debug.SetGCPercent(otherPercent)
			debug.SetMemoryLimit(otherLimit)
			TuneGC(cfg, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if got := debug.SetGCPercent(100); got != tt.wantPercent {
				t.Errorf("GC percent %d, want %d", got, tt.wantPercent)
			}
			if got := debug.SetMemoryLimit(-1); got != tt.wantLimit {
				t.Errorf("memory limit %d, want %d", got, tt.wantLimit)
			}
		})
	}
}
