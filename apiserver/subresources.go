package apiserver

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

func (s *Server) serveSubresource(w http.ResponseWriter, r *http.Request, q request) {
	if !slices.Contains(q.res.Subresources, q.sub) {
		writeError(w, errNotFoundPath())
		return
	}
	switch q.sub {
	case "status":
		switch r.Method {
		case http.MethodGet:
			s.handleGet(w, r, q)
		case http.MethodPut:
			s.handleUpdate(w, r, q, modeStatus)
		case http.MethodPatch:
			s.handlePatch(w, r, q, modeStatus)
		default:
			writeError(w, errMethodNotAllowed(r))
		}
	case "finalize":
		if r.Method != http.MethodPut {
			writeError(w, errMethodNotAllowed(r))
			return
		}
		s.handleUpdate(w, r, q, modeFinalize)
	case "scale":
		s.serveScale(w, r, q)
	case "binding":
		s.serveBinding(w, r, q)
	case "eviction":
		s.serveEviction(w, r, q)
	case "proxy":
		if q.res.GVR.Resource == "services" {
			s.serveServiceProxy(w, r, q)
			return
		}
		s.serveKubeletProxy(w, r, q)
	case "log", "exec", "attach", "portforward":
		s.serveKubeletProxy(w, r, q)
	default:
		writeError(w, errNotFoundPath())
	}
}

// toScale renders a Deployment's or ReplicaSet's autoscaling/v1 Scale.
func toScale(obj runtime.Object) (*autoscalingv1.Scale, error) {
	var replicas, statusReplicas int32
	var sel *metav1.LabelSelector
	switch o := obj.(type) {
	case *appsv1.Deployment:
		if o.Spec.Replicas != nil {
			replicas = *o.Spec.Replicas
		}
		statusReplicas, sel = o.Status.Replicas, o.Spec.Selector
	case *appsv1.ReplicaSet:
		if o.Spec.Replicas != nil {
			replicas = *o.Spec.Replicas
		}
		statusReplicas, sel = o.Status.Replicas, o.Spec.Selector
	default:
		return nil, fmt.Errorf("%T has no scale subresource", obj)
	}
	m, _ := meta.Accessor(obj)
	sc := &autoscalingv1.Scale{
		TypeMeta: metav1.TypeMeta{Kind: "Scale", APIVersion: "autoscaling/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace(), UID: m.GetUID(),
			ResourceVersion: m.GetResourceVersion(), CreationTimestamp: m.GetCreationTimestamp()},
		Spec:   autoscalingv1.ScaleSpec{Replicas: replicas},
		Status: autoscalingv1.ScaleStatus{Replicas: statusReplicas},
	}
	if sel != nil {
		if ls, err := metav1.LabelSelectorAsSelector(sel); err == nil {
			sc.Status.Selector = ls.String()
		}
	}
	return sc, nil
}

func setReplicas(obj runtime.Object, n int32) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		o.Spec.Replicas = &n
	case *appsv1.ReplicaSet:
		o.Spec.Replicas = &n
	}
}

var scaleGVK = autoscalingv1.SchemeGroupVersion.WithKind("Scale")

// serveScale reads and writes spec.replicas through autoscaling/v1 Scale;
// a resourceVersion in the Scale is a precondition on the object.
func (s *Server) serveScale(w http.ResponseWriter, r *http.Request, q request) {
	if r.Method == http.MethodGet {
		obj, _, err := s.getObject(r.Context(), q)
		if err == nil {
			var sc *autoscalingv1.Scale
			if sc, err = toScale(obj); err == nil {
				writeObject(w, r, http.StatusOK, sc)
				return
			}
		}
		writeError(w, err)
		return
	}
	var mutate func(cur runtime.Object) (runtime.Object, error)
	var warns []string
	switch r.Method {
	case http.MethodPut:
		dr, err := readAndDecode(r, scaleGVK, &autoscalingv1.Scale{})
		if err != nil {
			writeError(w, err)
			return
		}
		warns = dr.warnings
		want := dr.obj.(*autoscalingv1.Scale)
		mutate = func(cur runtime.Object) (runtime.Object, error) {
			return scaleTo(cur, want)
		}
	case http.MethodPatch:
		pt, err := patchType(r)
		if err != nil {
			writeError(w, err)
			return
		}
		patch, err := patchBody(r, pt)
		if err != nil {
			writeError(w, err)
			return
		}
		mutate = func(cur runtime.Object) (runtime.Object, error) {
			sc, err := toScale(cur)
			if err != nil {
				return nil, err
			}
			scJSON, err := runtime.Encode(jsonSer, sc)
			if err != nil {
				return nil, err
			}
			patched, err := applyPatch(pt, scJSON, patch, &autoscalingv1.Scale{})
			if err != nil {
				return nil, err
			}
			obj, _, err := decodePatched(r, patched, scaleGVK, &autoscalingv1.Scale{})
			if err != nil {
				return nil, err
			}
			return scaleTo(cur, obj.(*autoscalingv1.Scale))
		}
	default:
		writeError(w, errMethodNotAllowed(r))
		return
	}
	out, w2, err := s.update(r.Context(), q, modeMain, mutate, dryRun(r))
	addWarnings(w, append(warns, w2...))
	if err != nil {
		writeError(w, err)
		return
	}
	sc, err := toScale(out)
	if err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, r, http.StatusOK, sc)
}

func scaleTo(cur runtime.Object, want *autoscalingv1.Scale) (runtime.Object, error) {
	m, _ := meta.Accessor(cur)
	if want.Name != "" && want.Name != m.GetName() {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", want.Name, m.GetName()))
	}
	if want.Spec.Replicas < 0 {
		return nil, apierrors.NewInvalid(scaleGVK.GroupKind(), m.GetName(), nil)
	}
	setReplicas(cur, want.Spec.Replicas)
	m.SetResourceVersion(want.ResourceVersion)
	if want.UID != "" {
		m.SetUID(want.UID)
	}
	return cur, nil
}

func statusCreated(name, kind string) *metav1.Status {
	return &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusSuccess, Code: http.StatusCreated,
		Details: &metav1.StatusDetails{Name: name, Kind: kind}}
}

// serveBinding assigns a pod to a node (the scheduler's write): 409 when the
// pod is already bound; sets the PodScheduled condition.
func (s *Server) serveBinding(w http.ResponseWriter, r *http.Request, q request) {
	if r.Method != http.MethodPost {
		writeError(w, errMethodNotAllowed(r))
		return
	}
	dr, err := readAndDecode(r, corev1.SchemeGroupVersion.WithKind("Binding"), &corev1.Binding{})
	if err != nil {
		writeError(w, err)
		return
	}
	b := dr.obj.(*corev1.Binding)
	if b.Target.Name == "" {
		writeError(w, apierrors.NewBadRequest("binding target name is required"))
		return
	}
	if b.Name != "" && b.Name != q.name {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", b.Name, q.name)))
		return
	}
	pq := q
	pq.sub = ""
	_, _, err = s.update(r.Context(), pq, modeSystem, func(cur runtime.Object) (runtime.Object, error) {
		pod := cur.(*corev1.Pod)
		if b.UID != "" && b.UID != pod.UID {
			return nil, apierrors.NewConflict(q.gr(), q.name, fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", b.UID, pod.UID))
		}
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(q.gr(), q.name, errors.New("pod is being deleted, cannot be assigned to a host"))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(q.gr(), q.name, fmt.Errorf("pod %s is already assigned to node %q", pod.Name, pod.Spec.NodeName))
		}
		pod.ResourceVersion = ""
		pod.Spec.NodeName = b.Target.Name
		for k, v := range b.Annotations {
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			pod.Annotations[k] = v
		}
		setPodCondition(pod, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()})
		return pod, nil
	}, dryRun(r))
	if err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, r, http.StatusCreated, statusCreated(q.name, "pods"))
}

func setPodCondition(pod *corev1.Pod, c corev1.PodCondition) {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == c.Type {
			if pod.Status.Conditions[i].Status == c.Status {
				c.LastTransitionTime = pod.Status.Conditions[i].LastTransitionTime
			}
			pod.Status.Conditions[i] = c
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, c)
}

// serveEviction deletes the pod with the eviction's delete options (no
// disruption budgets in kubelab).
func (s *Server) serveEviction(w http.ResponseWriter, r *http.Request, q request) {
	if r.Method != http.MethodPost {
		writeError(w, errMethodNotAllowed(r))
		return
	}
	dr, err := readAndDecode(r, policyv1.SchemeGroupVersion.WithKind("Eviction"), &policyv1.Eviction{})
	if err != nil {
		writeError(w, err)
		return
	}
	ev := dr.obj.(*policyv1.Eviction)
	opts := ev.DeleteOptions
	if opts == nil {
		opts = &metav1.DeleteOptions{}
	}
	pq := q
	pq.sub = ""
	if _, err := s.delete(r.Context(), pq, opts); err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, r, http.StatusCreated, statusCreated(q.name, "pods"))
}

var _ = types.UID("")
var _ = strconv.Itoa
