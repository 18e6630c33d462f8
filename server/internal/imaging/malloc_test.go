package imaging

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// arenaChildEnv marks the child process of TestMallocArenasAreLimited.
const arenaChildEnv = "IMGEDGE_ARENA_CHILD"

// TestMallocArenasAreLimited: eight jobs on eight threads of their own make
// at most mallocArenaLimit malloc arenas, unless MALLOC_ARENA_MAX allows
// more, when they make more (so the count can see them). Each case runs in
// a child process: the limit is set as the program loads, from its
// environment.
func TestMallocArenasAreLimited(t *testing.T) {
	if os.Getenv(arenaChildEnv) != "" {
		fmt.Println("arenas", arenasAfterJobsOnThreads(t, 8))
		return
	}
	for _, tc := range []struct {
		env        string // MALLOC_ARENA_MAX, "" for unset
		atMost     int
		atLeastOne bool // more arenas than the default limit
	}{
		{"", mallocArenaLimit, false},
		{"1", 1, false},
		{"16", 16, true},
	} {
		t.Run("MALLOC_ARENA_MAX="+tc.env, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMallocArenasAreLimited$", "-test.count=1")
			cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
				return strings.HasPrefix(kv, "MALLOC_ARENA_MAX=")
			}), arenaChildEnv+"=1")
			if tc.env != "" {
				cmd.Env = append(cmd.Env, "MALLOC_ARENA_MAX="+tc.env)
			}
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			var arenas int
			for line := range strings.Lines(string(out)) {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "arenas "); ok {
					arenas, _ = strconv.Atoi(v)
				}
			}
			switch {
			case arenas == -1:
				t.Skip("not glibc: its malloc arenas cannot be counted")
			case arenas < 1:
				t.Fatalf("the child counted no arenas:\n%s", out)
			}
			if arenas > tc.atMost {
				t.Errorf("%d arenas, want at most %d", arenas, tc.atMost)
			}
			if tc.atLeastOne && arenas <= mallocArenaLimit {
				t.Errorf("%d arenas with MALLOC_ARENA_MAX=%s: the count does not see threads' arenas", arenas, tc.env)
			}
		})
	}
}

// arenasAfterJobsOnThreads runs n small transforms at once, each on an OS
// thread of its own held until all are done, and counts the arenas.
func arenasAfterJobsOnThreads(t *testing.T, n int) int {
	p := New(Config{AVIFSpeed: 8})
	src := testimages.JPEG(320, 240, 90)
	info, err := p.Probe(src)
	if err != nil {
		t.Fatal(err)
	}
	op := transform.Operation{Spec: variant.Spec{Width: 100, Format: variant.FormatJPEG, Quality: 80}, Source: info}
	var done, all sync.WaitGroup
	all.Add(1)
	for range n {
		done.Add(1)
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if _, err := p.Process(src, op); err != nil {
				t.Error(err)
			}
			done.Done()
			all.Wait() // keep the thread until every job has run
		}()
	}
	done.Wait()
	arenas := mallocArenas()
	all.Done()
	return arenas
}
