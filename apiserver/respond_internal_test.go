package apiserver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestPooledResponsesDoNotShareBytes: responses are encoded into pooled
// buffers; an answer already written must not change when the buffer is
// reused for the next one (protobuf and JSON).
func TestPooledResponsesDoNotShareBytes(t *testing.T) {
	for _, accept := range []string{"application/vnd.kubernetes.protobuf, */*", "application/json"} {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/namespaces/default/configmaps/a", nil)
		r.Header.Set("Accept", accept)
		cm := func(name, v string) *corev1.ConfigMap {
			return &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{Kind: "ConfigMap", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": v}}
		}
		first := httptest.NewRecorder()
		writeObject(first, r, http.StatusOK, cm("a", "first"))
		want := bytes.Clone(first.Body.Bytes())
		for i := 0; i < 10; i++ {
			writeObject(httptest.NewRecorder(), r, http.StatusOK, cm("b", "second-and-longer"))
		}
		if !bytes.Equal(first.Body.Bytes(), want) {
			t.Errorf("Accept %q: first response changed after later ones", accept)
		}
		if got := first.Header().Get("Content-Length"); got != strconv.Itoa(len(want)) {
			t.Errorf("Accept %q: Content-Length %s, body %d bytes", accept, got, len(want))
		}
		if !bytes.Contains(want, []byte("first")) {
			t.Errorf("Accept %q: body %q lacks the value", accept, want)
		}
	}
}
