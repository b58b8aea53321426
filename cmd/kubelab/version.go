package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/kubelab/kubelab/apiserver/resources"
)

// Version is kubelab's own version, set at build time with -ldflags.
var Version = "v0.1.0-dev"

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print kubelab's version and the Kubernetes API version it serves",
		Action: func(c *cli.Context) error {
			fmt.Fprintf(c.App.Writer, "kubelab %s\nKubernetes API %s\n", Version, resources.KubernetesVersion)
			return nil
		},
	}
}
