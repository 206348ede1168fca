package main

import (
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// globalFlags are shared by every subcommand.
type globalFlags struct {
	logLevel  string
	logFormat string
}

func newRootCmd() *cobra.Command {
	g := &globalFlags{}
	root := &cobra.Command{
		Use:   "babelfish",
		Short: "Train and serve direct speech-to-speech translation on GPU clusters",
		Long: `Babelfish trains and serves direct speech-to-speech translation: speech in one
language goes straight to speech in another, with no text in between.

One binary holds every role. Researchers build datasets and submit training
jobs; applications call the Translator gRPC service; SREs watch GPUs and
queues. ` + "`babelfish up`" + ` runs the whole system on one machine.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger(cmd.ErrOrStderr(), g.logLevel, g.logFormat)
			if err != nil {
				return err
			}
			slog.SetDefault(logger)
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")

	root.AddGroup(
		&cobra.Group{ID: "research", Title: "Datasets and training:"},
		&cobra.Group{ID: "serve", Title: "Serving and translation:"},
		&cobra.Group{ID: "ops", Title: "Cluster roles and operations:"},
	)
	for _, c := range []*cobra.Command{
		newEvalCmd(),
		newAverageCmd(),
		newServeCmd(),
		newTranslateCmd(),
		newPromoteCmd(),
		withGroup(newUpCmd(), "ops"),
		withGroup(newSubmitCmd(), "research"),
		withGroup(newJobsCmd(), "research"),
		withGroup(newLogsCmd(), "research"),
		withGroup(newCancelCmd(), "research"),
	} {
		root.AddCommand(c)
	}
	for group, cmds := range map[string][]*cobra.Command{
		"research": {newDatasetCmd()},
		"ops":      {newTrainerCmd(), newSchedulerCmd(), newSimCmd(), newGPUAgentCmd(), newGPUsCmd(), newCheckCmd()},
	} {
		for _, c := range cmds {
			c.GroupID = group
			root.AddCommand(c)
		}
	}
	root.AddCommand(newVersionCmd())
	return root
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := "(devel)"
			if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
				v = bi.Main.Version
			}
			_, err := fmt.Fprintln(cmd.OutOrStdout(), "babelfish", v)
			return err
		},
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: want text or json", format)
	}
}
