package validation

import (
	"io/fs"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/kubelab/kubelab/examples"
)

// TestExamplesAreValid runs every shipped manifest through the create path
// kubectl apply triggers, so the README's files are never refused.
func TestExamplesAreValid(t *testing.T) {
	files, err := fs.Glob(examples.Manifests, "*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	decode := scheme.Codecs.UniversalDeserializer()
	for _, f := range files {
		raw, err := fs.ReadFile(examples.Manifests, f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range strings.Split(string(raw), "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			obj, gvk, err := decode.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("%s[%d]: %v", f, i, err)
			}
			m, err := meta.Accessor(obj)
			if err != nil {
				t.Fatal(err)
			}
			if m.GetNamespace() == "" {
				m.SetNamespace("default") // what kubectl sends for the current namespace
			}
			var warnings []string
			var errs []string
			if svc, ok := obj.(*corev1.Service); ok {
				w, e := prepareCreate(svc, DefaultOptions())
				warnings = w
				for _, x := range e {
					errs = append(errs, x.Error())
				}
			} else {
				w, e := prepare(obj, nil, DefaultOptions())
				warnings = w
				for _, x := range e {
					errs = append(errs, x.Error())
				}
			}
			if len(errs) > 0 {
				t.Errorf("%s[%d] %s %q refused: %v", f, i, gvk.Kind, m.GetName(), errs)
			}
			wantWarning := f == "external-traffic-policy-local.yaml"
			if got := len(warnings) > 0; got != wantWarning {
				t.Errorf("%s[%d] %s: warnings %q", f, i, gvk.Kind, warnings)
			}
		}
	}
}
