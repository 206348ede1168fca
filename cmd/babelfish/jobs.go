package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/yaml"

	"babelfish.dev/babelfish/api/v1alpha1"
	"babelfish.dev/babelfish/scheduler/local"
)

// envServer names the job API `submit`, `jobs`, `logs` and `cancel` talk
// to when --server is not given.
const envServer = "BABELFISH_SERVER"

// envStateDir overrides where `up` keeps its state.
const envStateDir = "BABELFISH_STATE_DIR"

// jobBackend is where jobs live: a `babelfish up` (its job API) or a
// Kubernetes cluster (TrainingJob objects).
type jobBackend interface {
	Submit(ctx context.Context, j *v1alpha1.TrainingJob) (*v1alpha1.TrainingJob, error)
	List(ctx context.Context) ([]v1alpha1.TrainingJob, error)
	Get(ctx context.Context, name string) (*v1alpha1.TrainingJob, error)
	Cancel(ctx context.Context, name string) (*v1alpha1.TrainingJob, error)
	Logs(ctx context.Context, name string, rank int, follow bool, w io.Writer) error
	Where() string
}

// targetFlags choose the backend: --kubeconfig for a cluster, else the
// `up` named by --server, $BABELFISH_SERVER or up's state file.
type targetFlags struct {
	server     string
	kubeconfig string
	namespace  string
	stateDir   string
}

func addTargetFlags(cmd *cobra.Command) *targetFlags {
	t := &targetFlags{}
	f := cmd.Flags()
	f.StringVar(&t.server, "server", "", "job API of a `babelfish up`, host:port (default $"+envServer+", else the one `up` recorded in its state dir)")
	f.StringVar(&t.kubeconfig, "kubeconfig", "", "use the Kubernetes cluster of this kubeconfig instead of `up` (TrainingJob objects)")
	f.StringVarP(&t.namespace, "namespace", "n", "", "namespace of the TrainingJobs with --kubeconfig (default: the kubeconfig context's, else default)")
	f.StringVar(&t.stateDir, "state-dir", "", "state directory of `babelfish up` (default $"+envStateDir+", else $XDG_STATE_HOME/babelfish or ~/.local/state/babelfish)")
	return t
}

// defaultStateDir is where `up` keeps MinIO's data, job records and logs.
func defaultStateDir() (string, error) {
	if d := os.Getenv(envStateDir); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "babelfish"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("state dir: no $%s, $XDG_STATE_HOME or home directory: %w", envStateDir, err)
	}
	return filepath.Join(home, ".local", "state", "babelfish"), nil
}

func (t *targetFlags) backend() (jobBackend, error) {
	if t.kubeconfig != "" {
		if t.server != "" {
			return nil, errors.New("--server and --kubeconfig: give one (an `up` or a cluster)")
		}
		return newKubeJobs(t.kubeconfig, t.namespace)
	}
	if t.namespace != "" {
		return nil, errors.New("--namespace: only with --kubeconfig (`up` has no namespaces)")
	}
	server := t.server
	if server == "" {
		server = os.Getenv(envServer)
	}
	if server == "" {
		dir := t.stateDir
		if dir == "" {
			var err error
			if dir, err = defaultStateDir(); err != nil {
				return nil, err
			}
		}
		st, err := readUpState(dir)
		if err != nil {
			return nil, fmt.Errorf("no job server: %w\n(start `babelfish up`, or pass --server host:port, or --kubeconfig for a cluster)", err)
		}
		server = st.API
	}
	c, err := local.NewClient(server, nil)
	if err != nil {
		return nil, err
	}
	return upJobs{c}, nil
}

// upJobs is the job API of a `babelfish up`.
type upJobs struct{ *local.Client }

func (u upJobs) Where() string { return "babelfish up at " + u.Server() }

func newJobsCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "jobs [NAME]",
		Short: "List training jobs and their phases",
		Long: `List training jobs: phase, ranks, step, loss, restarts and why a job waits
or failed. With NAME, show that job only. Works against ` + "`babelfish up`" + ` (default)
and against a cluster (--kubeconfig).`,
		Args: cobra.MaximumNArgs(1),
	}
	t := addTargetFlags(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, wide, json or yaml")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch output {
		case "table", "wide", "json", "yaml":
		default:
			return fmt.Errorf("--output %q: want table, wide, json or yaml", output)
		}
		b, err := t.backend()
		if err != nil {
			return err
		}
		var jobs []v1alpha1.TrainingJob
		if len(args) == 1 {
			j, err := b.Get(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			jobs = []v1alpha1.TrainingJob{*j}
		} else if jobs, err = b.List(cmd.Context()); err != nil {
			return err
		}
		return writeJobs(cmd.OutOrStdout(), jobs, output, time.Now())
	}
	return cmd
}

func writeJobs(w io.Writer, jobs []v1alpha1.TrainingJob, output string, now time.Time) error {
	switch output {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v1alpha1.TrainingJobList{Items: jobs})
	case "yaml":
		raw, err := yaml.Marshal(v1alpha1.TrainingJobList{Items: jobs})
		if err != nil {
			return err
		}
		_, err = w.Write(raw)
		return err
	}
	if len(jobs) == 0 {
		_, err := fmt.Fprintln(w, "no training jobs")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "NAME\tPHASE\tWORKERS\tGPUS/W\tSTEP\tLOSS\tRESTARTS\tAGE\tMESSAGE"
	if output == "wide" {
		head += "\tCHECKPOINT\tPLACEMENT"
	}
	fmt.Fprintln(tw, head)
	for i := range jobs {
		j := &jobs[i]
		st := &j.Status
		loss := "-"
		if st.Loss != nil {
			loss = fmt.Sprintf("%.4f", *st.Loss)
		}
		msg := jobMessage(j)
		if output != "wide" && len(msg) > 60 {
			msg = msg[:57] + "..."
		}
		phase := string(st.Phase)
		if phase == "" {
			phase = "-"
		}
		line := fmt.Sprintf("%s\t%s\t%d\t%d\t%d/%d\t%s\t%d\t%s\t%s", j.Name, phase, j.Spec.Workers, j.Spec.GPUsPerWorker,
			st.Step, j.Spec.Model.Steps, loss, st.Restarts, age(now, j.CreationTimestamp.Time), msg)
		if output == "wide" {
			ck := "-"
			if c := st.LatestCheckpoint; c != nil {
				ck = c.Path
			}
			pl := make([]string, len(st.Placement))
			for k, p := range st.Placement {
				pl[k] = fmt.Sprintf("%d:%s%v", p.Rank, p.Node, p.GPUs)
			}
			line += "\t" + ck + "\t" + strings.Join(pl, " ")
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// jobMessage is the condition that says most about where a job stands.
func jobMessage(j *v1alpha1.TrainingJob) string {
	for _, typ := range []string{v1alpha1.ConditionFailed, v1alpha1.ConditionSucceeded, v1alpha1.ConditionPreempted, v1alpha1.ConditionRunning, v1alpha1.ConditionAdmitted} {
		c := meta.FindStatusCondition(j.Status.Conditions, typ)
		if c == nil {
			continue
		}
		if typ == v1alpha1.ConditionRunning && c.Status == "True" {
			return c.Reason
		}
		if c.Status == "True" || typ == v1alpha1.ConditionAdmitted || typ == v1alpha1.ConditionRunning {
			return c.Reason + ": " + c.Message
		}
	}
	return ""
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// withGroup puts a command in a help group.
func withGroup(c *cobra.Command, group string) *cobra.Command {
	c.GroupID = group
	return c
}
