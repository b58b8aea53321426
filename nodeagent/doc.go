// Package nodeagent is a kubelab node: it registers the Node, keeps its Lease,
// runs the pods bound to it in their own network namespaces, and reports
// their status, as the kubelet does.
//
// Run is the whole agent. It joins with the node token (a client
// certificate for system:node:NAME, kept in DataDir/pki and reused), registers
// the Node and renews its Lease, waits for the pod CIDR the server assigns,
// keeps a route to every other node's pod CIDR, runs pods, and serves the
// kubelet API (logs, exec, port-forward, metrics, the proxy's handler) on
// NodeIP:KubeletPort.
//
// Pods: package sandbox makes one network namespace per pod, named
// NetnsPrefix+hash(UID), with a point-to-point veth (see its package comment)
// and an IP from a persistent allocation file. Containers are processes
// started inside that namespace: a thread switched into the namespace forks
// them, so they are born there. A command naming a host executable runs as
// itself, as nobody unless runAsUser says otherwise; anything else runs the
// built-in workload (package workload) by re-executing this binary. A
// container's output goes through named pipes in its pod's data dir, and
// every container leaves a record (pid, start time, spec hash), so that
// containers outlive a crashed or killed agent and the restarted agent
// adopts them (adopt.go).
//
// Env from ConfigMaps and Secrets (env valueFrom, envFrom) is read from the
// API at container start; configMap, secret and emptyDir volumes are
// directories under /run/kubelab/volumes, given to containers as
// $KUBELAB_MOUNT_<VOLUME> since, without mount namespaces, nothing can be
// placed at a mountPath (volumes.go). The built-in workload is preferably the
// small kubelab-workload binary installed next to the agent's executable.
//
// The agent runs inside the node's network namespace (in the lab, started with
// `ip netns exec`, which also gives it a private mount namespace): the pod
// namespaces' bind mounts are then visible to the agent and its children
// only, which is why the agent, not `ip netns`, is the way into a pod.
//
// On restart the agent adopts the pods still bound to it (same processes,
// IPs, logs; probes start again), and stops and cleans up everything else an
// earlier run left (processes, namespaces, links). A graceful stop (SIGTERM)
// stops the pods; a restarted agent then starts them again with the same IPs.
package nodeagent
