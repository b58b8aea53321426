package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kubelab/kubelab/nodeagent/labnet"
)

func downCommand() *cli.Command {
	return &cli.Command{
		Name:  "down",
		Usage: "stop a lab and remove every namespace, link and rule it made",
		Flags: []cli.Flag{
			dataDirFlag(),
			&cli.BoolFlag{Name: "purge", Usage: "also delete the data dir (the cluster's objects and credentials)"},
			&cli.StringFlag{Name: "name", Usage: "lab name, when the data dir has no record of it"},
		},
		Action: func(c *cli.Context) error {
			dataDir, err := filepath.Abs(c.String("data-dir"))
			if err != nil {
				return err
			}
			name := c.String("name")
			st, err := readLabState(dataDir)
			switch {
			case err == nil:
				if name == "" {
					name = st.Name
				}
				if err := stopUp(st.PID, 60*time.Second); err != nil {
					return cli.Exit(err.Error(), 1)
				}
			case name == "":
				if c.Bool("purge") {
					return purge(dataDir)
				}
				return cli.Exit(err.Error(), 1)
			}
			cfg := labnet.Config{Name: name, Subnet: labnet.DefaultSubnet, ServiceCIDR: labnet.DefaultServiceCIDR}
			if st != nil {
				if _, subnet, err := net.ParseCIDR(st.Subnet); err == nil {
					cfg.Subnet = subnet
				}
			}
			if err := labnet.Down(cfg); err != nil {
				return cli.Exit(fmt.Sprintf("remove lab %s: %v", name, err), 1)
			}
			fmt.Fprintf(c.App.Writer, "lab %q stopped and its network removed\n", name)
			if c.Bool("purge") {
				return purge(dataDir)
			}
			return nil
		},
	}
}

// stopUp asks a running `kubelab up` to stop and waits for it: it removes
// its own network and stops its agents in order.
func stopUp(pid int, wait time.Duration) error {
	if !processAlive(pid) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop kubelab up (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(wait)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			time.Sleep(200 * time.Millisecond)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func purge(dataDir string) error {
	if dataDir == "/" || dataDir == "" {
		return fmt.Errorf("refusing to purge %q", dataDir)
	}
	if err := os.RemoveAll(dataDir); err != nil {
		return fmt.Errorf("purge %s: %w", dataDir, err)
	}
	fmt.Println("removed", dataDir)
	return nil
}
