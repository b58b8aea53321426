package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/kubelab/kubelab/nodeagent/labnet"
)

func nodeCommand() *cli.Command {
	return &cli.Command{
		Name:  "node",
		Usage: "work with the nodes of a lab",
		Subcommands: []*cli.Command{{
			Name:      "exec",
			Usage:     "run a command inside a lab node's network namespace",
			ArgsUsage: "NODE -- CMD [ARG...]",
			Flags:     []cli.Flag{dataDirFlag()},
			Action: func(c *cli.Context) error {
				args := c.Args().Slice()
				if len(args) > 0 && args[0] == "--" {
					args = args[1:]
				}
				if len(args) < 2 {
					return cli.Exit("usage: kubelab node exec NODE -- CMD [ARG...]", 2)
				}
				st, err := readLabState(c.String("data-dir"))
				if err != nil {
					return cli.Exit(err.Error(), 1)
				}
				node, cmd := args[0], args[1:]
				if len(cmd) > 0 && cmd[0] == "--" {
					cmd = cmd[1:]
				}
				if len(cmd) == 0 {
					return cli.Exit("usage: kubelab node exec NODE -- CMD [ARG...]", 2)
				}
				ns := labnet.Config{Name: st.Name}.NodeNamespace(node)
				if _, err := os.Stat(labnet.NamespacePath(ns)); err != nil {
					return cli.Exit(fmt.Sprintf("lab %s has no node %q", st.Name, node), 1)
				}
				ip, err := exec.LookPath("ip")
				if err != nil {
					return cli.Exit("kubelab node exec needs `ip` (iproute2): run `make deps`", 1)
				}
				// Replace this process, so the command's exit code, signals
				// and terminal are the user's own.
				argv := append([]string{"ip", "netns", "exec", ns}, cmd...)
				return syscall.Exec(ip, argv, os.Environ())
			},
		}},
	}
}
