package variant

// Preset is a named variant.
type Preset struct {
	Name string
	Spec Spec
	// Public presets are the ones viewers may ask for at the edge
	// (?preset=name); the others are for the service's own callers.
	Public bool
}

// Built-in preset names the server and the edge refer to.
const (
	// PresetDefault is the server's default: the original prototype's
	// behaviour, same size JPEG at quality 90.
	PresetDefault = "default"
	// PresetOptimized is the edge's default: same size, format negotiated,
	// each format's default quality.
	PresetOptimized = "optimized"
)

// BuiltinPresets are the presets every server defines unless its
// configuration replaces them. The edge's default allow-list is their
// public names, so the two cannot drift apart.
var BuiltinPresets = []Preset{
	{Name: PresetDefault, Spec: Spec{Format: FormatJPEG, Quality: 90}},
	{Name: PresetOptimized, Spec: Spec{Format: FormatAuto}},
	{Name: "thumbnail", Spec: Spec{Width: 320, Height: 320, Fit: FitCover, Format: FormatAuto}, Public: true},
	{Name: "small", Spec: Spec{Width: 480, Format: FormatAuto}, Public: true},
	{Name: "medium", Spec: Spec{Width: 960, Format: FormatAuto}, Public: true},
	{Name: "large", Spec: Spec{Width: 1920, Format: FormatAuto}, Public: true},
}

// PublicPresetNames lists the built-in presets viewers may ask for.
func PublicPresetNames() []string {
	var names []string
	for _, p := range BuiltinPresets {
		if p.Public {
			names = append(names, p.Name)
		}
	}
	return names
}
