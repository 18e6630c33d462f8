package e2e

import (
	"net/http/httptest"
	"testing"

	imgedgev1 "github.com/imgedge/imgedge/proto/imgedge/v1"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/testimages"
	"github.com/imgedge/imgedge/server/internal/transform"
)

// TestNegotiatedFallback: a viewer whose negotiated format the service
// cannot make of an image gets what a viewer of the next format it accepts
// gets, at that variant's key, and that viewer then finds it built: a page
// too long for AVIF and WebP gets the JPEG; a photo whose AVIF the memory
// budget cannot afford (64 MiB: ~48 MiB for pixels, where its AVIF needs
// ~69 MB and its WebP ~33) gets the WebP. Nothing is built twice.
func TestNegotiatedFallback(t *testing.T) {
	stores(t, func(t *testing.T, st transform.Store, put func(string, []byte), get func(string) []byte) {
		h := startServer(t, st, func(c *config.Config) { c.MaxMemory, c.MaxSourceBytes = 64<<20, 8<<20 })
		put("page.jpg", testimages.JPEG(200, 17_000, 92))
		put("photo.jpg", testimages.JPEG(2000, 1500, 92))
		accepting := func(accept string) *imgedgev1.VariantSpec {
			return &imgedgev1.VariantSpec{Format: imgedgev1.Format_FORMAT_AUTO, Viewer: &imgedgev1.VariantSpec_Accept{Accept: accept}}
		}
		for _, tc := range []struct {
			key, variantKey, contentType string
			later                        string // the Accept header of the viewer the variant is made for
		}{
			{"page.jpg", "ProcessedImages/full_q80/page.jpg.jpg", "image/jpeg", "*/*"},
			{"photo.jpg", "ProcessedImages/full_q75/photo.jpg.webp", "image/webp", "image/webp"},
		} {
			runs := h.proc.runs.Load()
			for i, accept := range []string{"image/avif,image/webp,*/*", "image/avif,image/webp,*/*", tc.later} {
				resp := ensure(t, h, &imgedgev1.EnsureVariantRequest{Bucket: bucket, Key: tc.key, Variant: accepting(accept)})
				want := imgedgev1.Outcome_OUTCOME_ALREADY_EXISTED
				if i == 0 {
					want = imgedgev1.Outcome_OUTCOME_CREATED
				}
				if resp.Outcome != want || resp.Key != tc.variantKey || resp.ContentType != tc.contentType {
					t.Fatalf("%s, call %d (Accept %q): %v; want %v at %s", tc.key, i, accept, resp, want, tc.variantKey)
				}
				info, err := h.proc.Probe(get(resp.Key))
				if err != nil || "image/"+info.Format != tc.contentType {
					t.Fatalf("%s: %+v, %v", resp.Key, info, err)
				}
			}
			if n := h.proc.runs.Load() - runs; n != 1 {
				t.Errorf("%s: %d transforms, want 1", tc.key, n)
			}
		}
		// Each build that fell back is counted, by the formats it went from and to.
		rec := httptest.NewRecorder()
		h.metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		m := parseMetrics(t, rec.Body)
		for series, want := range map[string]float64{
			`imgedge_format_fallbacks_total{from="avif",to="jpeg"}`: 1, // the page: WebP cannot hold it either
			`imgedge_format_fallbacks_total{from="avif",to="webp"}`: 1, // the photo
		} {
			if got := m[series]; got != want {
				t.Errorf("%s = %v, want %v", series, got, want)
			}
		}
	})
}
