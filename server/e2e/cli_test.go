package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imgedge/imgedge/server/internal/testimages"
)

func TestCLI(t *testing.T) {
	bin := buildCLI(t)
	st := newLocalStore(t)
	put := putVia(t, st)
	put("photos/a.jpg", testimages.JPEG(1000, 750, 95))
	put("photos/b.jpg", testimages.JPEG(900, 600, 95))
	put("photos/broken.jpg", []byte("not a jpeg"))
	h := startServer(t, st, nil)
	env := []string{"IMGEDGE_ADDR=" + h.addr, "IMGEDGE_INSECURE=true"}

	t.Run("transform", func(t *testing.T) {
		dir := t.TempDir()
		in, out := filepath.Join(dir, "in.jpg"), filepath.Join(dir, "out.webp")
		if err := os.WriteFile(in, testimages.JPEG(1200, 800, 95), 0o644); err != nil {
			t.Fatal(err)
		}
		r := runCLI(t, bin, env, "transform", in, out, "--width", "600", "--format", "webp")
		if r.code != 0 || !strings.Contains(r.stderr, "image/webp 600×400") {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		data, _ := os.ReadFile(out)
		if info, err := h.proc.Probe(data); err != nil || info.Format != "webp" || info.Width != 600 {
			t.Fatalf("output: %+v, %v", info, err)
		}
		// The usual file mode, not CreateTemp's 0600; and a format chosen
		// without a quality gets that format's default (WebP 75), not the
		// default preset's JPEG 90.
		if fi, err := os.Stat(out); err != nil || fi.Mode().Perm()&0o044 != 0o044 {
			t.Errorf("output mode %v, want group and others to read it", fi.Mode())
		}
		if !strings.Contains(r.stderr, "quality 75") {
			t.Errorf("--format webp: %s, want quality 75", r.stderr)
		}
		// A failure leaves no output file behind.
		bad := filepath.Join(dir, "bad.jpg")
		os.WriteFile(bad, []byte("text"), 0o644)
		r = runCLI(t, bin, env, "transform", bad, filepath.Join(dir, "never.jpg"))
		if r.code != 5 {
			t.Errorf("bad input: exit %d, want 5: %s", r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "never.jpg")); !os.IsNotExist(err) {
			t.Error("a failed transform left an output file")
		}
	})

	t.Run("ensure", func(t *testing.T) {
		r := runCLI(t, bin, env, "ensure", bucket, "photos/a.jpg", "--preset", "small", "--accept", "image/webp", "--json")
		var resp struct {
			Outcome      string `json:"outcome"`
			Key          string `json:"key"`
			Size         string `json:"size"`
			OriginalSize string `json:"originalSize"`
		}
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &resp) != nil || resp.Outcome != "OUTCOME_CREATED" || resp.Key != "ProcessedImages/w480_q75/photos/a.jpg.webp" {
			t.Fatalf("exit %d: %s %s", r.code, r.stdout, r.stderr)
		}
		if r := runCLI(t, bin, env, "ensure", bucket, "photos/a.jpg", "--width", "777", "--format", "avif", "--max-wait", "1ms"); r.code != 0 || !strings.HasPrefix(r.stdout, "pending\tphotos/a.jpg") {
			t.Errorf("--max-wait 1ms on a cold build: exit %d: %q %s", r.code, r.stdout, r.stderr)
		}
		r = runCLI(t, bin, env, "ensure", bucket, "photos/a.jpg", "--preset", "small", "--accept", "image/webp")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "existing\tProcessedImages/w480_q75/photos/a.jpg.webp") {
			t.Errorf("text output: %q", r.stdout)
		}
		if r := runCLI(t, bin, env, "ensure", bucket, "photos/b.jpg", "--width", "300", "--format", "webp", "--auto-quality"); r.code != 0 || !strings.Contains(r.stdout, "ProcessedImages/w300_qauto/photos/b.jpg.webp") || !strings.Contains(r.stdout, "quality ") {
			t.Errorf("--auto-quality: exit %d: %s %s", r.code, r.stdout, r.stderr)
		}
		if r := runCLI(t, bin, env, "ensure", bucket, "photos/b.jpg", "--width", "300", "--format", "webp", "--target-score", "80"); r.code != 0 || !strings.Contains(r.stdout, "ProcessedImages/w300_qauto80/photos/b.jpg.webp") {
			t.Errorf("--target-score: exit %d: %s %s", r.code, r.stdout, r.stderr)
		}
		for _, c := range []struct {
			args []string
			code int
		}{
			{[]string{"ensure", bucket, "photos/missing.jpg"}, 4},
			{[]string{"ensure", bucket, "photos/a.jpg", "--preset", "nope"}, 5},
			{[]string{"ensure", bucket}, 2},
			{[]string{"ensure", bucket, "photos/a.jpg", "--width", "many"}, 2},
			{[]string{"ensure", bucket, "photos/a.jpg", "--target-score", "101"}, 5},
			{[]string{"frobnicate"}, 2},
			{[]string{"ensure", bucket, "photos/a.jpg", "--addr", "127.0.0.1:1", "--timeout", "2s"}, 7},
		} {
			r := runCLI(t, bin, env, c.args...)
			if r.code != c.code {
				t.Errorf("%q: exit %d, want %d: %s", c.args, r.code, c.code, r.stderr)
			}
			if first, _, _ := strings.Cut(r.stderr, "\n"); strings.Count(first, "imgedge") > 1 {
				t.Errorf("%q: the message repeats itself: %s", c.args, r.stderr)
			}
		}
	})

	t.Run("backfill", func(t *testing.T) {
		r := runCLI(t, bin, env, "backfill", bucket, "photos/", "--preset", "thumbnail", "--json")
		if r.code != 3 { // one broken original
			t.Fatalf("exit %d, want 3: %s", r.code, r.stderr)
		}
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		var last struct {
			Summary struct {
				Objects string `json:"objects"`
				Created string `json:"created"`
				Errors  string `json:"errors"`
			} `json:"summary"`
		}
		if len(lines) != 4 || json.Unmarshal([]byte(lines[3]), &last) != nil || last.Summary.Objects != "3" || last.Summary.Created != "2" || last.Summary.Errors != "1" {
			t.Fatalf("json output:\n%s", r.stdout)
		}
		// Progress carries the total the listing counted (camelCase, as
		// grpcurl prints it).
		var progress struct {
			Progress struct {
				Total string `json:"total"`
			} `json:"progress"`
		}
		if json.Unmarshal([]byte(lines[2]), &progress) != nil || progress.Progress.Total != "3" {
			t.Errorf("last progress event %s, want total 3", lines[2])
		}
		// Not a terminal: plain lines and the final table.
		r = runCLI(t, bin, env, "backfill", bucket, "photos/", "--preset", "thumbnail", "--dry-run")
		for _, want := range []string{"existing\tphotos/a.jpg", "error\tphotos/broken.jpg\tInvalidArgument", "dry run", "saving", "would create"} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("plain output lacks %q:\n%s", want, r.stdout)
			}
		}
	})

	t.Run("health", func(t *testing.T) {
		if r := runCLI(t, bin, env, "health"); r.code != 0 || strings.TrimSpace(r.stdout) != "SERVING" {
			t.Errorf("health: exit %d %q", r.code, r.stdout)
		}
		if r := runCLI(t, bin, env, "health", "--addr", "127.0.0.1:1", "--timeout", "1s"); r.code != 7 {
			t.Errorf("health of a dead server: exit %d", r.code)
		}
	})
}

// TestCLIBackfillInterrupted: Ctrl-C stops a backfill and still prints what
// was done so far.
func TestCLIBackfillInterrupted(t *testing.T) {
	bin := buildCLI(t)
	st := newLocalStore(t)
	photo := testimages.JPEG(1200, 900, 95)
	for i := range 20 {
		putVia(t, st)(fmt.Sprintf("many/%02d.jpg", i), photo)
	}
	h := startServer(t, st, nil)
	cmd := exec.Command(bin, "backfill", bucket, "many/", "--concurrency", "1", "--format", "avif")
	cmd.Env = append(os.Environ(), "IMGEDGE_ADDR="+h.addr, "IMGEDGE_INSECURE=true")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(stdout)
	first, err := r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(os.Interrupt)
	rest, _ := io.ReadAll(r)
	cmd.Wait()
	out := first + string(rest)
	if !strings.Contains(out, "interrupted") || !strings.Contains(out, "bytes before") {
		t.Errorf("no partial summary after Ctrl-C:\n%s", out)
	}
}
