// Package scheduler assigns pending pods to nodes, as kube-scheduler does,
// talking to the API only through client-go.
//
// The decision is a pure function over a snapshot: Schedule (or ScheduleOn
// with prebuilt NodeInfos) filters nodes — Ready (a node that is not Ready is
// treated as carrying the not-ready/unreachable taint), not cordoned, taints
// tolerated, nodeSelector and required node affinity, free host ports, cpu /
// memory / pods / extended resources against allocatable minus bound pods —
// then ranks the rest: soft preferences first (preferred node affinity,
// PreferNoSchedule taints), then the fewest pods of the same controller, then
// the least allocated node, then a hash of pod UID and node name. When nothing
// fits, FitError words the reasons exactly as kube-scheduler 1.37 does.
//
// Run wraps the decision in a thin loop: shared informers feed a cache of
// nodes and bound pods (which also counts the pods it has just placed and is
// still binding) and a queue of pending pods with exponential backoff; pods
// that fit nowhere wait until a node or pod change could help. Bindings go
// through pods/binding on a pool of workers; failures set PodScheduled=False
// through pods/status; events are core/v1 Events ("Scheduled",
// "FailedScheduling").
package scheduler
