// Command babelfish is the one binary of the Babelfish cluster: every role
// (scheduler, trainer, serving, GPU agent, the embedded `up`) and every user
// command (dataset, submit, translate, …) is a subcommand, so one container
// image serves every Deployment and DaemonSet.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "babelfish:", err)
		os.Exit(1)
	}
}
