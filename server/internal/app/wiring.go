package app

import (
	"cmp"
	"context"

	"github.com/imgedge/imgedge/client/variant"
	"github.com/imgedge/imgedge/server/internal/config"
	"github.com/imgedge/imgedge/server/internal/imaging"
	"github.com/imgedge/imgedge/server/internal/store/local"
	s3store "github.com/imgedge/imgedge/server/internal/store/s3"
	"github.com/imgedge/imgedge/server/internal/transform"
	"github.com/imgedge/imgedge/server/internal/workpool"
)

// serviceStore is what the server needs of an object store: the service's
// interface plus a readiness probe.
type serviceStore interface {
	transform.Store
	Ping(ctx context.Context) error
}

func openStore(ctx context.Context, cfg config.Config) (serviceStore, error) {
	kind, dir, err := cfg.StoreKind()
	if err != nil {
		return nil, err
	}
	if kind == "file" {
		return local.Open(dir)
	}
	// S3-compatible servers behind a custom endpoint (often an IP address)
	// need path-style addressing: it is on whenever an endpoint is given.
	return s3store.New(ctx, s3store.Config{
		Region: cfg.S3Region, Endpoint: cfg.S3Endpoint, PathStyle: cfg.S3PathStyle || cfg.S3Endpoint != "",
		ReadinessBuckets: cfg.Buckets,
	})
}

// NewProcessor is the libvips processor cfg describes.
func NewProcessor(cfg config.Config) *imaging.Processor {
	ic := imaging.Config{AVIFSpeed: cfg.AVIFSpeed, WebPEffort: cfg.WebPEffort, WebPSharpYUV: true, KeepMetadata: cfg.KeepMetadata}
	if cfg.MozJPEG {
		ic.JPEG = imaging.MozJPEG
	}
	ic.JPEG.Progressive = cfg.JPEGProgressive
	return imaging.New(ic)
}

// NewService is the domain service cfg describes, over st, proc and pool.
func NewService(cfg config.Config, st transform.Store, proc transform.Processor, pool *workpool.Pool, obs transform.Observer) (*transform.Service, error) {
	return transform.New(transform.Config{
		Prefix:        cfg.Prefix,
		Presets:       cfg.PresetSpecs(),
		DefaultPreset: cfg.DefaultPreset,
		Defaults: variant.Defaults{
			Quality: map[variant.Format]int{
				variant.FormatJPEG: cfg.JPEGQuality,
				variant.FormatWebP: cfg.WebPQuality,
				variant.FormatAVIF: cfg.AVIFQuality,
			},
			Negotiation: variant.Negotiation{AVIF: cfg.AutoAVIF, WebP: cfg.AutoWebP, Fallback: variant.FormatJPEG},
		},
		MinSaving:      cfg.MinSaving,
		AllowedBuckets: cfg.Buckets,
		Limits: transform.Limits{
			MaxSourceBytes:  int64(cfg.MaxSourceBytes),
			MaxStreamBytes:  int64(cmp.Or(cfg.MaxStreamBytes, cfg.MaxSourceBytes)),
			MaxSourcePixels: cfg.MaxSourcePixels,
			MaxWidth:        cfg.MaxWidth,
			MaxHeight:       cfg.MaxHeight,
		},
		ProcessTimeout:  cfg.ProcessTimeout,
		KnownVariantTTL: cfg.KnownVariantTTL,
		Observer:        obs,
		Auto:            autoQuality(cfg.AutoQuality),

		VariantCacheControl: cfg.CacheControl,
	}, st, proc, pool)
}

func autoQuality(a config.AutoQuality) transform.AutoQuality {
	targets := map[variant.Format]float64{}
	for name, t := range a.Targets {
		if f, err := variant.ParseFormat(name); err == nil {
			targets[f] = t
		}
	}
	return transform.AutoQuality{
		Targets: targets, MinQuality: a.MinQuality, MaxQuality: a.MaxQuality,
		Steps: a.Steps, SkipJPEGAtOrBelow: a.SkipJPEGAtOrBelow,
	}
}
