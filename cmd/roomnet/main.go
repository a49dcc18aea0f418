// Command roomnet is the CLI for hosts and players: it only wires signals
// and the process's streams to roomnet/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/roomnet/roomnet/roomnet/cli"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version string

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, Version: version})
	stop()
	os.Exit(code)
}
