// Package viewerrequest generates the viewer-request CloudFront Function
// from the edge adapter's allow-lists, so the function that bounds the cache
// key and the adapter that reads the query can never disagree: the Go
// configuration is the one source, and the JavaScript (standalone and
// inlined in the CloudFormation template) is derived from it.
package viewerrequest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"strings"
	"text/template"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/edgeadapter"
)

//go:embed viewer-request.js.tmpl
var source string

var tmpl = template.Must(template.New("viewer-request.js").Parse(source))

// Rules are the allow-lists the function applies.
type Rules struct {
	Breakpoints   []int                     `json:"breakpoints"`
	Quality       edgeadapter.QualityBounds `json:"quality"`
	Presets       []string                  `json:"presets"`
	Formats       []string                  `json:"formats"`
	FormatAliases map[string]string         `json:"formatAliases"`
	Fits          []string                  `json:"fits"`
	// Params maps every query name the adapter reads to its canonical one.
	Params map[string]string `json:"params"`
}

// RulesOf derives the rules from an adapter configuration.
func RulesOf(c edgeadapter.Config) Rules {
	var fits []string
	for f := variant.FitInside; f <= variant.FitFill; f++ {
		fits = append(fits, f.String())
	}
	return Rules{
		Breakpoints:   c.Breakpoints,
		Quality:       c.Quality,
		Presets:       c.Presets,
		Formats:       c.Formats,
		FormatAliases: map[string]string{"jpg": "jpeg"},
		Fits:          fits,
		Params:        edgeadapter.QueryParams,
	}
}

// Render returns the function's JavaScript for c.
func Render(c edgeadapter.Config) ([]byte, error) {
	rules, err := json.Marshal(RulesOf(c))
	if err != nil {
		return nil, fmt.Errorf("viewer-request rules: %w", err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, string(rules)); err != nil {
		return nil, fmt.Errorf("viewer-request function: %w", err)
	}
	return buf.Bytes(), nil
}

// functionCodeKey introduces the function's inline copy in the template.
const functionCodeKey = "FunctionCode: |"

// Inline replaces the block scalar after "FunctionCode: |" in a
// CloudFormation template with js, indented as the block was.
func Inline(templateYAML, js []byte) ([]byte, error) {
	lines := strings.SplitAfter(string(templateYAML), "\n")
	start := -1
	for i, l := range lines {
		if strings.TrimSpace(l) == functionCodeKey {
			start = i
			break
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("the template has no %q block", functionCodeKey)
	}
	keyIndent := len(lines[start]) - len(strings.TrimLeft(lines[start], " "))
	indent := strings.Repeat(" ", keyIndent+4)
	end := start + 1
	for end < len(lines) {
		l := lines[end]
		if strings.TrimSpace(l) != "" && len(l)-len(strings.TrimLeft(l, " ")) <= keyIndent {
			break
		}
		end++
	}
	var block strings.Builder
	for l := range strings.Lines(string(js)) {
		if strings.TrimSpace(l) == "" {
			block.WriteString("\n")
			continue
		}
		block.WriteString(indent + l)
	}
	block.WriteString("\n")
	out := strings.Join(lines[:start+1], "") + block.String() + strings.Join(lines[end:], "")
	return []byte(out), nil
}
