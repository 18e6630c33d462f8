// Package deploy holds the checks of the deployment artefacts beside them:
// the Kubernetes manifests decoded strictly into the real API types, the
// CloudFormation templates' references, and the Dockerfile's promises. It is
// its own module so that k8s.io/api stays out of the module graph of
// everyone who imports the client; `make test` runs it.
package deploy

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// strictDecode decodes one YAML document into out, failing on unknown fields.
func strictDecode(doc []byte, out any) error {
	js, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	return dec.Decode(out)
}

func yamlDocs(t *testing.T, path string) [][]byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	for d := range strings.SplitSeq(string(raw), "\n---\n") {
		if strings.TrimSpace(d) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// TestKubernetesManifests decodes every manifest strictly into the real
// Kubernetes API types and checks what the deployment relies on.
func TestKubernetesManifests(t *testing.T) {
	dir := "kubernetes"
	var kust struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Namespace  string           `json:"namespace"`
		Labels     []map[string]any `json:"labels"`
		Resources  []string         `json:"resources"`
	}
	if err := strictDecode(yamlDocs(t, filepath.Join(dir, "kustomization.yaml"))[0], &kust); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	byKind := map[string][]any{}
	for _, res := range kust.Resources {
		for i, doc := range yamlDocs(t, filepath.Join(dir, res)) {
			var meta struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s #%d: %v", res, i, err)
			}
			var obj any
			switch meta.Kind {
			case "Namespace":
				obj = &corev1.Namespace{}
			case "ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "ConfigMap":
				obj = &corev1.ConfigMap{}
			case "Secret":
				obj = &corev1.Secret{}
			case "Service":
				obj = &corev1.Service{}
			case "Deployment":
				obj = &appsv1.Deployment{}
			case "HorizontalPodAutoscaler":
				obj = &autoscalingv2.HorizontalPodAutoscaler{}
			case "PodDisruptionBudget":
				obj = &policyv1.PodDisruptionBudget{}
			default:
				t.Fatalf("%s #%d: unexpected kind %q", res, i, meta.Kind)
			}
			if err := strictDecode(doc, obj); err != nil {
				t.Fatalf("%s #%d (%s): %v", res, i, meta.Kind, err)
			}
			byKind[meta.Kind] = append(byKind[meta.Kind], obj)
		}
	}

	dep := byKind["Deployment"][0].(*appsv1.Deployment)
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	switch {
	case c.ReadinessProbe == nil || c.ReadinessProbe.GRPC == nil || c.LivenessProbe == nil || c.LivenessProbe.GRPC == nil:
		t.Error("readiness and liveness must be gRPC health probes")
	case c.Lifecycle == nil || c.Lifecycle.PreStop == nil:
		t.Error("no preStop pause for endpoints to drain")
	case c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero():
		t.Error("resources are not sized")
	case pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot:
		t.Error("the pod may run as root")
	case pod.ServiceAccountName == "":
		t.Error("no service account")
	}
	sa := byKind["ServiceAccount"][0].(*corev1.ServiceAccount)
	if sa.Annotations["eks.amazonaws.com/role-arn"] == "" {
		t.Error("the service account is not annotated for IAM roles for service accounts")
	}
	var headless, balanced bool
	for _, o := range byKind["Service"] {
		s := o.(*corev1.Service)
		headless = headless || s.Spec.ClusterIP == corev1.ClusterIPNone
		balanced = balanced || s.Spec.Type == corev1.ServiceTypeLoadBalancer
	}
	if !headless || !balanced {
		t.Errorf("want a headless service and a load-balanced one (headless %v, LB %v)", headless, balanced)
	}
	if len(byKind["HorizontalPodAutoscaler"]) != 1 || len(byKind["PodDisruptionBudget"]) != 1 {
		t.Error("missing the HPA or the PDB")
	}
	// The ConfigMap's imgedge.yaml and the Secret's tokens.yaml are loaded by
	// the server's own tests (server/internal/config, server/internal/auth).
}

// TestCloudFormationTemplate lints the templates with cfn-lint where it is
// installed (a Python package, not in Debian: make check says when it is
// missing). Without it, TestCloudFormationReferencesResolve and the
// viewerrequest package still check the structure, the references and the
// inline function.
func TestCloudFormationTemplate(t *testing.T) {
	lint, err := exec.LookPath("cfn-lint")
	if err != nil {
		t.Skip("cfn-lint is not installed: pip install cfn-lint to lint deploy/cloudformation")
	}
	for _, name := range []string{"template.yaml", "bucket-policy.yaml"} {
		out, err := exec.Command(lint, filepath.Join("cloudformation", name)).CombinedOutput()
		if err != nil {
			t.Errorf("cfn-lint %s: %v\n%s", name, err, out)
		}
	}
}

// TestDockerfile checks what the image promises; no Docker engine runs here,
// so the build itself is exercised where one does.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("docker", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	for _, want := range []string{
		"FROM golang:", "make deps", "CGO_ENABLED=1 GOEXPERIMENT=simd PKG_CONFIG_PATH=/src/.bin/libvips/pkgconfig go build", // cgo against the Makefile's libvips; the metric's vector loops
		"FROM debian:${DEBIAN}-slim AS server", "libvips-cpp.so", "ldconfig", // runtime: that one library
		"USER 10001",
		`HEALTHCHECK`, `"imgedge-server", "health"`,
		"AS edge-zip", "make edge-zip",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	if runtime := df[strings.Index(df, "AS server"):]; strings.Contains(runtime, "libvips-dev") || strings.Contains(runtime, "libvips42") {
		t.Error("the runtime stage installs Debian's libvips beside the one the server links")
	}
}
