package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
)

func runTransform(ctx context.Context, e env, args []string) error {
	var conn connFlags
	var v variantFlags
	fs := newFlagSet("transform", "IN OUT", e)
	conn.register(fs)
	v.register(fs)
	pos, c, err := start(fs, args, e, &conn, 2, 2, "want IN and OUT (use - for stdin or stdout)")
	if err != nil {
		return err
	}
	defer c.Close()
	in, out := pos[0], pos[1]

	r := e.stdin
	if in != "-" {
		f, err := os.Open(in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	w := e.stdout
	var tmp *os.File
	if out != "-" {
		// Write beside OUT and rename, so a failure leaves no half-written file.
		if tmp, err = os.CreateTemp(filepath.Dir(out), ".imgedge-*"); err != nil {
			return err
		}
		defer func() { _ = os.Remove(tmp.Name()) }() // fails harmlessly once renamed
		w = tmp
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	res, err := c.Transform(ctx, &v.spec, r, bw)
	if err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if tmp != nil {
		if err := tmp.Close(); err != nil {
			return err
		}
		// CreateTemp makes 0600 files; an output file gets the usual mode.
		if err := os.Chmod(tmp.Name(), 0o666&^currentUmask()); err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), out); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.stderr, "%s: %s %d×%d, %d bytes%s\n", out, res.GetContentType(), res.GetWidth(), res.GetHeight(), res.GetSize(), qualityNote(res.GetQuality(), res.GetScore()))
	return nil
}

// currentUmask reads the process's umask (setting it back at once).
func currentUmask() os.FileMode {
	mask := syscall.Umask(0)
	syscall.Umask(mask)
	return os.FileMode(mask)
}

// qualityNote names the encoder quality used, chosen or searched.
func qualityNote(q uint32, score float32) string {
	switch {
	case q == 0:
		return ""
	case score > 0:
		return fmt.Sprintf(", quality %d, SSIMULACRA2 %.1f", q, score)
	}
	return fmt.Sprintf(", quality %d", q)
}

func runEnsure(ctx context.Context, e env, args []string) error {
	var conn connFlags
	var v variantFlags
	fs := newFlagSet("ensure", "BUCKET KEY", e)
	conn.register(fs)
	v.register(fs)
	asJSON := fs.Bool("json", false, "print the response as JSON")
	maxWait := fs.Duration("max-wait", 0, "answer pending instead of waiting longer for a build, which goes on (0: wait for it)")
	pos, c, err := start(fs, args, e, &conn, 2, 2, "want BUCKET and KEY")
	if err != nil {
		return err
	}
	defer c.Close()
	req := &imgedgev1.EnsureVariantRequest{Bucket: pos[0], Key: pos[1], Variant: &v.spec}
	if *maxWait > 0 {
		req.MaxWait = durationpb.New(*maxWait)
	}
	resp, err := c.EnsureVariant(ctx, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, resp)
	}
	fmt.Fprintf(e.stdout, "%s\t%s\t%s%s\t%d bytes (original %d, %s)\n", outcomeName(resp.GetOutcome(), false), resp.GetKey(),
		resp.GetContentType(), qualityNote(resp.GetQuality(), resp.GetScore()), resp.GetSize(), resp.GetOriginalSize(), savingOf(resp.GetOriginalSize(), resp.GetSize()))
	return nil
}

func runBackfill(ctx context.Context, e env, args []string) error {
	var conn connFlags
	var v variantFlags
	fs := newFlagSet("backfill", "BUCKET [PREFIX]", e)
	conn.register(fs)
	v.register(fs)
	dryRun := fs.Bool("dry-run", false, "compute outcomes and sizes without writing")
	asJSON := fs.Bool("json", false, "one JSON object per line: a progress event per object, then the summary")
	concurrency := fs.Uint("concurrency", 0, "objects at once (default: the service's workers)")
	pos, c, err := start(fs, args, e, &conn, 1, 2, "want BUCKET and an optional PREFIX")
	if err != nil {
		return err
	}
	defer c.Close()
	prefix := ""
	if len(pos) == 2 {
		prefix = pos[1]
	}

	var bar *progressbar.ProgressBar
	if f, ok := e.stderr.(*os.File); ok && !*asJSON && term.IsTerminal(int(f.Fd())) {
		bar = progressbar.NewOptions64(-1, progressbar.OptionSetWriter(f), progressbar.OptionSetDescription("backfill"),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("objects"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionClearOnFinish())
	}
	// The service streams a running count of the originals to process, so
	// the bar has a total (and a rate and ETA) as soon as the listing runs
	// ahead; counts kept here give a partial summary if the run is cut short.
	var seen imgedgev1.BackfillSummary
	seen.DryRun = *dryRun
	progress := func(p *imgedgev1.BackfillProgress) {
		addToSummary(&seen, p)
		switch {
		case *asJSON:
			_ = printJSON(e.stdout, &imgedgev1.BackfillResponse{Event: &imgedgev1.BackfillResponse_Progress{Progress: p}})
		case bar != nil:
			if p.GetTotal() > bar.GetMax64() {
				bar.ChangeMax64(p.GetTotal())
			}
			_ = bar.Add(1)
			if p.GetError() != "" {
				bar.Describe("last error: " + p.GetKey())
			}
		default:
			printProgress(e.stdout, p, *dryRun)
		}
	}
	req := &imgedgev1.BackfillRequest{Bucket: pos[0], Prefix: prefix, Variant: &v.spec}
	req.DryRun, req.Concurrency = *dryRun, uint32(*concurrency)
	sum, err := c.Backfill(ctx, req, progress)
	if bar != nil {
		_ = bar.Finish()
	}
	if err != nil {
		if ctx.Err() != nil && !*asJSON {
			fmt.Fprintln(e.stdout, "interrupted: the originals below were done, builds in flight finish on the service")
			printSummary(e.stdout, &seen)
		}
		return err
	}
	if *asJSON {
		if err := printJSON(e.stdout, &imgedgev1.BackfillResponse{Event: &imgedgev1.BackfillResponse_Summary{Summary: sum}}); err != nil {
			return err
		}
	} else {
		printSummary(e.stdout, sum)
	}
	if sum.GetErrors() > 0 {
		return partialError{sum.GetErrors()}
	}
	return nil
}

// addToSummary counts one progress event into a running summary.
func addToSummary(s *imgedgev1.BackfillSummary, p *imgedgev1.BackfillProgress) {
	s.Objects++
	if p.GetError() != "" {
		s.Errors++
		return
	}
	s.OriginalBytes += p.GetOriginalSize()
	switch p.GetOutcome() {
	case imgedgev1.Outcome_OUTCOME_CREATED:
		s.Created++
		s.ServedBytes += p.GetVariantSize()
		s.VariantBytes += p.GetVariantSize()
	case imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED:
		s.AlreadyExisted++
		s.ServedBytes += p.GetVariantSize()
		s.VariantBytes += p.GetVariantSize()
	case imgedgev1.Outcome_OUTCOME_ORIGINAL_KEPT:
		s.OriginalKept++
		s.ServedBytes += p.GetOriginalSize()
	default:
		s.OriginalIsSmaller++
		s.ServedBytes += p.GetOriginalSize()
	}
}

func printProgress(w io.Writer, p *imgedgev1.BackfillProgress, dryRun bool) {
	if p.GetError() != "" {
		fmt.Fprintf(w, "error\t%s\t%s: %s\n", p.GetKey(), p.GetErrorCode(), p.GetError())
		return
	}
	served := p.GetVariantSize()
	if o := p.GetOutcome(); o == imgedgev1.Outcome_OUTCOME_ORIGINAL_IS_SMALLER || o == imgedgev1.Outcome_OUTCOME_ORIGINAL_KEPT {
		served = p.GetOriginalSize()
	}
	fmt.Fprintf(w, "%s\t%s\t%d → %d bytes\n", outcomeName(p.GetOutcome(), dryRun), p.GetKey(), p.GetOriginalSize(), served)
}

func printSummary(w io.Writer, s *imgedgev1.BackfillSummary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	title, created := "backfill", "created"
	if s.GetDryRun() {
		title, created = "backfill (dry run: nothing written)", "would create"
	}
	fmt.Fprintln(w, title)
	fmt.Fprintf(tw, "objects\t%s\texisting\tkept original\tskipped\terrors\tbytes before\tbytes after\tsaving\t\n", created)
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", s.GetObjects(), s.GetCreated(), s.GetAlreadyExisted(),
		s.GetOriginalIsSmaller()+s.GetOriginalKept(), s.GetSkipped(), s.GetErrors(), s.GetOriginalBytes(), s.GetServedBytes(),
		savingOf(s.GetOriginalBytes(), s.GetServedBytes()))
	_ = tw.Flush() // a summary on the terminal: nothing to do if it fails
}

func savingOf(before, after int64) string {
	if before <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*(1-float64(after)/float64(before)))
}

// outcomeName labels an outcome; a dry run says what it would do.
func outcomeName(o imgedgev1.Outcome, dryRun bool) string {
	switch o {
	case imgedgev1.Outcome_OUTCOME_CREATED:
		if dryRun {
			return "would-create"
		}
		return "created"
	case imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED:
		return "existing"
	case imgedgev1.Outcome_OUTCOME_ORIGINAL_IS_SMALLER:
		if dryRun {
			return "would-keep-original"
		}
		return "kept-original"
	case imgedgev1.Outcome_OUTCOME_ORIGINAL_KEPT:
		return "kept-animated"
	case imgedgev1.Outcome_OUTCOME_PENDING:
		return "pending"
	}
	return "unknown"
}

func runHealth(ctx context.Context, e env, args []string) error {
	var conn connFlags
	fs := newFlagSet("health", "", e)
	conn.register(fs)
	service := fs.String("service", "", "service name to check (default: the whole server)")
	_, c, err := start(fs, args, e, &conn, 0, 0, "health takes no arguments")
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Health(ctx, *service); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "SERVING")
	return nil
}

func printJSON(w io.Writer, m proto.Message) error {
	// protojson's own field names (camelCase), as grpcurl prints them.
	b, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
