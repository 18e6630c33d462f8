package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// cfnTemplate is what the reference check reads of a CloudFormation template.
type cfnTemplate struct {
	Parameters map[string]yaml.Node   `yaml:"Parameters"`
	Conditions map[string]yaml.Node   `yaml:"Conditions"`
	Resources  map[string]cfnResource `yaml:"Resources"`
	Outputs    map[string]yaml.Node   `yaml:"Outputs"`
}

// cfnResource keeps a resource's whole node and its condition.
type cfnResource struct {
	Condition string
	Node      yaml.Node
}

func (r *cfnResource) UnmarshalYAML(n *yaml.Node) error {
	r.Node = *n
	var head struct {
		Condition string `yaml:"Condition"`
	}
	if err := n.Decode(&head); err != nil {
		return err
	}
	r.Condition = head.Condition
	return nil
}

// TestCloudFormationReferencesResolve checks, without cfn-lint, what a
// deploy would trip over first: every !Ref, !GetAtt, ${…} substitution and
// condition names a parameter, resource, pseudo parameter or condition that
// exists, and a resource that exists only under a condition is referenced
// only under that condition (by resources with the same condition or
// through !If).
func TestCloudFormationReferencesResolve(t *testing.T) {
	for _, name := range []string{"template.yaml", "bucket-policy.yaml"} {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("cloudformation", name))
			if err != nil {
				t.Fatal(err)
			}
			var doc yaml.Node
			if err := yaml.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			var tmpl cfnTemplate
			if err := doc.Decode(&tmpl); err != nil {
				t.Fatal(err)
			}
			known := func(ref string) bool {
				ref, _, _ = strings.Cut(ref, ".")
				_, p := tmpl.Parameters[ref]
				_, r := tmpl.Resources[ref]
				return p || r || strings.HasPrefix(ref, "AWS::")
			}
			sub := regexp.MustCompile(`\$\{([^}!]+)\}`)
			var walk func(n *yaml.Node, owner string, underIf bool)
			walk = func(n *yaml.Node, owner string, underIf bool) {
				var refs []string
				switch n.Tag {
				case "!Ref", "!GetAtt":
					refs = append(refs, n.Value)
				case "!Sub":
					if n.Kind == yaml.ScalarNode {
						for _, m := range sub.FindAllStringSubmatch(n.Value, -1) {
							refs = append(refs, m[1])
						}
					}
				case "!If", "!Equals", "Condition":
					if n.Tag == "!If" && len(n.Content) > 0 {
						if _, ok := tmpl.Conditions[n.Content[0].Value]; !ok {
							t.Errorf("%s: !If on unknown condition %q", owner, n.Content[0].Value)
						}
						underIf = true
					}
				}
				for _, ref := range refs {
					if !known(ref) {
						t.Errorf("%s: reference to unknown %q", owner, ref)
						continue
					}
					target, _, _ := strings.Cut(ref, ".")
					if r, ok := tmpl.Resources[target]; ok && r.Condition != "" && !underIf && tmpl.Resources[owner].Condition != r.Condition {
						t.Errorf("%s references %s, which exists only under condition %s", owner, target, r.Condition)
					}
				}
				for _, c := range n.Content {
					walk(c, owner, underIf)
				}
			}
			for rname, r := range tmpl.Resources {
				if r.Condition != "" {
					if _, ok := tmpl.Conditions[r.Condition]; !ok {
						t.Errorf("%s: unknown condition %q", rname, r.Condition)
					}
				}
				walk(&r.Node, rname, false)
			}
			for oname, o := range tmpl.Outputs {
				walk(&o, "output "+oname, false)
			}
			if len(tmpl.Resources) == 0 {
				t.Error("no resources")
			}
		})
	}
}
