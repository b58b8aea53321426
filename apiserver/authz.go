package apiserver

import (
	"net/http"

	authorizationv1 "k8s.io/api/authorization/v1"
)

var ssarGVK = authorizationv1.SchemeGroupVersion.WithKind("SelfSubjectAccessReview")

// serveSelfSubjectAccessReview answers `kubectl auth can-i`: kubelab has no
// authorisation yet, so every authenticated user may do everything.
func (s *Server) serveSelfSubjectAccessReview(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, errMethodNotAllowed(r))
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	dr, err := decodeBody(r, body, ssarGVK, &authorizationv1.SelfSubjectAccessReview{})
	if err != nil {
		writeError(w, err)
		return
	}
	rev := dr.obj.(*authorizationv1.SelfSubjectAccessReview)
	rev.SetGroupVersionKind(ssarGVK)
	rev.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: "kubelab allows every authenticated user"}
	writeObject(w, r, http.StatusCreated, rev)
}
