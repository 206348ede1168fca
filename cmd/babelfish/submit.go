package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"babelfish.dev/babelfish/api/v1alpha1"
)

// maxJobFile bounds a job file.
const maxJobFile = 1 << 20

func newSubmitCmd() *cobra.Command {
	var (
		file    string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "submit -f job.yaml",
		Short: "Submit a TrainingJob from a YAML file",
		Long: `Submit a TrainingJob (apiVersion babelfish.dev/v1alpha1, kind TrainingJob) from a
YAML or JSON file ("-" reads stdin). Against ` + "`babelfish up`" + ` (default) the
local executor validates it as the CRD would and runs its ranks as local
processes; with --kubeconfig it is created in the cluster, where the
scheduler places it on GPU nodes. Unknown fields are an error, so a typo
never goes unnoticed.

With --wait it follows the job until it ends and exits non-zero if it failed.`,
		Args: cobra.NoArgs,
	}
	t := addTargetFlags(cmd)
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "the TrainingJob, YAML or JSON (- for stdin)")
	f.BoolVar(&wait, "wait", false, "wait until the job succeeds or fails, printing its progress")
	f.DurationVar(&timeout, "timeout", 0, "with --wait: give up after this long (0: no limit)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if file == "" {
			return errors.New("-f/--file: required (the TrainingJob YAML, or - for stdin)")
		}
		if timeout < 0 {
			return fmt.Errorf("--timeout %v: must be >= 0", timeout)
		}
		j, err := readJobFile(file, cmd.InOrStdin())
		if err != nil {
			return err
		}
		b, err := t.backend()
		if err != nil {
			return err
		}
		out, err := b.Submit(cmd.Context(), j)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "trainingjob/%s submitted to %s\n", out.Name, b.Where())
		if !wait {
			return nil
		}
		ctx := cmd.Context()
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		return waitJob(ctx, b, out.Name, cmd.OutOrStdout())
	}
	return cmd
}

// readJobFile reads one TrainingJob, strictly.
func readJobFile(path string, stdin io.Reader) (*v1alpha1.TrainingJob, error) {
	var (
		raw []byte
		err error
	)
	if path == "-" {
		raw, err = io.ReadAll(io.LimitReader(stdin, maxJobFile+1))
	} else {
		var fh *os.File
		if fh, err = os.Open(path); err == nil {
			raw, err = io.ReadAll(io.LimitReader(fh, maxJobFile+1))
			fh.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w", path, err)
	}
	if len(raw) > maxJobFile {
		return nil, fmt.Errorf("-f %s: over %d bytes", path, maxJobFile)
	}
	var j v1alpha1.TrainingJob
	if err := yaml.UnmarshalStrict(raw, &j); err != nil {
		return nil, fmt.Errorf("-f %s: not a TrainingJob: %w", path, err)
	}
	if j.Kind != "TrainingJob" || j.APIVersion != v1alpha1.GroupVersion.String() {
		return nil, fmt.Errorf("-f %s: apiVersion %q kind %q: want %s TrainingJob", path, j.APIVersion, j.Kind, v1alpha1.GroupVersion.String())
	}
	return &j, nil
}

// waitJob polls a job until it ends, printing a line whenever its phase or
// step changes.
func waitJob(ctx context.Context, b jobBackend, name string, w io.Writer) error {
	var lastPhase v1alpha1.TrainingJobPhase
	lastStep := int64(-1)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		j, err := b.Get(ctx, name)
		if err != nil {
			return err
		}
		st := &j.Status
		if st.Phase != lastPhase || st.Step != lastStep {
			loss := ""
			if st.Loss != nil {
				loss = fmt.Sprintf(" loss %.4f", *st.Loss)
			}
			fmt.Fprintf(w, "%s  %s  step %d/%d%s  restarts %d  %s\n", time.Now().Format(time.TimeOnly), st.Phase, st.Step, j.Spec.Model.Steps, loss, st.Restarts, jobMessage(j))
			lastPhase, lastStep = st.Phase, st.Step
		}
		switch st.Phase {
		case v1alpha1.PhaseSucceeded:
			return nil
		case v1alpha1.PhaseFailed:
			return fmt.Errorf("job %s failed: %s", name, jobMessage(j))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for job %s: %w", name, ctx.Err())
		case <-tick.C:
		}
	}
}
