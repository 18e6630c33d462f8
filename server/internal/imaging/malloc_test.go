package imaging

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// arenaChildEnv marks the child process of TestMallocArenasAreLimited,
// trimChildEnv that of TestTrimMallocGivesFreedPixelsBack.
const (
	arenaChildEnv = "IMGEDGE_ARENA_CHILD"
	trimChildEnv  = "IMGEDGE_TRIM_CHILD"
)

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

// TestTrimMallocGivesFreedPixelsBack: after libvips' jobs have ended, and
// with the Go heap already given back, TrimMalloc lowers the process's RSS
// by what glibc kept of the pixels they freed. It runs in a child process,
// whose RSS no other test moves.
func TestTrimMallocGivesFreedPixelsBack(t *testing.T) {
	if os.Getenv(trimChildEnv) != "" {
		before, after := rssAroundTrimAfterJobs(t)
		fmt.Println("rss", before, after)
		return
	}
	if mallocArenas() == -1 {
		t.Skip("not glibc: malloc_trim is not there")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTrimMallocGivesFreedPixelsBack$", "-test.count=1")
	cmd.Env = append(os.Environ(), trimChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var before, after int64
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "rss" {
			before, _ = strconv.ParseInt(f[1], 10, 64)
			after, _ = strconv.ParseInt(f[2], 10, 64)
		}
	}
	if before == 0 {
		t.Fatalf("the child measured nothing:\n%s", out)
	}
	t.Logf("RSS %d MiB before the trim, %d MiB after", before>>20, after>>20)
	if before-after < 16<<20 {
		t.Errorf("the trim gave back %d KiB, want at least 16 MiB", (before-after)>>10)
	}
}

// rssAroundTrimAfterJobs runs same-size transforms of a 12 MP JPEG on two
// threads, gives the Go heap back, and measures RSS around TrimMalloc.
func rssAroundTrimAfterJobs(t *testing.T) (before, after int64) {
	p := New(Config{})
	src := testimages.JPEG(4000, 3000, 90)
	info, err := p.Probe(src)
	if err != nil {
		t.Fatal(err)
	}
	op := transform.Operation{Spec: variant.Spec{Format: variant.FormatJPEG, Quality: 80}, Source: info}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for range 2 {
				if _, err := p.Process(src, op); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	debug.FreeOSMemory()
	before = residentBytes(t)
	TrimMalloc()
	return before, residentBytes(t)
}

// residentBytes is the process's RSS, from /proc/self/statm.
func residentBytes(t *testing.T) int64 {
	raw, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(raw))
	if len(f) < 2 {
		t.Fatalf("statm %q", raw)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		t.Fatalf("statm %q: %v", raw, err)
	}
	return pages * int64(os.Getpagesize())
}
