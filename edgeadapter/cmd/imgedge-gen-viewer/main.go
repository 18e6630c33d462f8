// Command imgedge-gen-viewer writes the viewer-request CloudFront Function
// from the edge adapter's allow-lists: the standalone file the node tests
// load, and its inline copy in the CloudFormation template. `make generate`
// runs it; `make checkgenerate` fails when the checked-in copies drift.
//
//	go run ./edgeadapter/cmd/imgedge-gen-viewer [--config edge.json] \
//	    --js deploy/cloudformation/viewer-request.js \
//	    --template deploy/cloudformation/template.yaml
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/imgedge/imgedge/edgeadapter"
	"github.com/imgedge/imgedge/edgeadapter/viewerrequest"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "imgedge-gen-viewer:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("imgedge-gen-viewer", flag.ContinueOnError)
	config := fs.String("config", "", "edge adapter configuration `file` whose allow-lists to use (default: the built-in defaults)")
	jsPath := fs.String("js", "", "write the function to this `file`")
	templatePath := fs.String("template", "", "replace the FunctionCode block of this CloudFormation `file`")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := edgeadapter.DefaultConfig()
	if *config != "" {
		var err error
		if cfg, err = edgeadapter.LoadConfig(*config); err != nil {
			return err
		}
	}
	js, err := viewerrequest.Render(cfg)
	if err != nil {
		return err
	}
	if *jsPath != "" {
		if err := os.WriteFile(*jsPath, js, 0o644); err != nil {
			return err
		}
	}
	if *templatePath != "" {
		tmpl, err := os.ReadFile(*templatePath)
		if err != nil {
			return err
		}
		out, err := viewerrequest.Inline(tmpl, js)
		if err != nil {
			return fmt.Errorf("%s: %w", *templatePath, err)
		}
		if err := os.WriteFile(*templatePath, out, 0o644); err != nil {
			return err
		}
	}
	return nil
}
