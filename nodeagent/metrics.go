package nodeagent

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// runtimeMetrics serves the Go runtime's and the process's metrics on the
// agent's /metrics, next to the agent's own registry.
var runtimeMetrics lazyGatherer

// lazyGatherer builds the Go and process collectors on the first scrape
// instead of in init: every kubelab command (and an agent nobody scrapes)
// ran their construction at start, about 12 page faults into the executable
// (runtime/metrics descriptions, procfs) for nothing.
type lazyGatherer struct {
	once sync.Once
	reg  *prometheus.Registry
}

func (l *lazyGatherer) Gather() ([]*dto.MetricFamily, error) {
	l.once.Do(func() {
		l.reg = prometheus.NewRegistry()
		l.reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	})
	return l.reg.Gather()
}
