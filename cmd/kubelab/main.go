// Command kubelab is a small Kubernetes-compatible cluster in one binary.
package main

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "kubelab",
		Usage: "a small Kubernetes-compatible cluster for labs, classrooms and edge boxes",
		Commands: []*cli.Command{
			serverCommand(),
			upCommand(),
			downCommand(),
			nodeCommand(),
			agentCommand(),
			workloadCommand(),
			versionCommand(),
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "kubelab:", err)
		os.Exit(1)
	}
}
