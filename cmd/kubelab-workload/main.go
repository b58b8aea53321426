// Command kubelab-workload is the built-in container process on its own: the
// same code as `kubelab workload`, in a small binary that starts in a few
// milliseconds instead of paying the full kubelab binary's package
// initialisation for every container. The agent uses it when it is installed
// next to the kubelab executable (see nodeagent.Config.WorkloadCommand).
package main

import (
	"fmt"
	"os"

	"github.com/kubelab/kubelab/nodeagent/workload"
)

func main() {
	if err := workload.Main(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
