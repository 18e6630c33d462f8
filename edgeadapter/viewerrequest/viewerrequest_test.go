package viewerrequest

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/imgedge/imgedge/edgeadapter"
)

var deployDir = filepath.Join("..", "..", "deploy", "cloudformation")

// TestCheckedInCopiesAreCurrent: the standalone function and the
// template's inline copy are what the allow-lists generate today.
func TestCheckedInCopiesAreCurrent(t *testing.T) {
	js, err := Render(edgeadapter.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(filepath.Join(deployDir, "viewer-request.js"))
	if err != nil || !bytes.Equal(onDisk, js) {
		t.Errorf("viewer-request.js is stale (%v): run make generate", err)
	}
	tmpl, err := os.ReadFile(filepath.Join(deployDir, "template.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	inlined, err := Inline(tmpl, js)
	if err != nil || !bytes.Equal(inlined, tmpl) {
		t.Errorf("the template's FunctionCode is stale (%v): run make generate", err)
	}
	// The cache policy keys on exactly the canonical parameter names.
	m := regexp.MustCompile(`QueryStrings: \[([^\]]*)\]`).FindSubmatch(tmpl)
	if m == nil {
		t.Fatal("no QueryStrings in the cache policy")
	}
	keyed := strings.Split(strings.ReplaceAll(string(m[1]), " ", ""), ",")
	var canonical []string
	for _, c := range edgeadapter.QueryParams {
		if !slices.Contains(canonical, c) {
			canonical = append(canonical, c)
		}
	}
	slices.Sort(keyed)
	slices.Sort(canonical)
	if !slices.Equal(keyed, canonical) {
		t.Errorf("the cache policy keys on %v, the adapter reads %v", keyed, canonical)
	}
}

func TestInlineReplacesOnlyTheBlock(t *testing.T) {
	tmpl := "A:\n  B:\n    FunctionCode: |\n        old line\n\n        old two\n  C: 1\n"
	out, err := Inline([]byte(tmpl), []byte("new\n\nline\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := "A:\n  B:\n    FunctionCode: |\n        new\n\n        line\n\n  C: 1\n"
	if string(out) != want {
		t.Errorf("Inline =\n%q\nwant\n%q", out, want)
	}
	if _, err := Inline([]byte("A: 1\n"), []byte("x")); err == nil {
		t.Error("a template without FunctionCode was accepted")
	}
}
