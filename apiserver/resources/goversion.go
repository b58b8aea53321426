package resources

import "runtime"

func goVersion() string { return runtime.Version() }
