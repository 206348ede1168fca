package nvml

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"babelfish.dev/babelfish/internal/promscrape"
	"babelfish.dev/babelfish/nvml/inventory"
)

// Row is one GPU in `babelfish gpus`. Pointers are nil when the source does
// not say (the Node inventory has no utilization; a lost GPU no memory).
type Row struct {
	Node        string
	Index       int
	UUID        string
	Model       string
	UtilPct     *float64
	MemUsedMiB  *float64
	MemTotalMiB *float64
	TempC       *float64
	PowerW      *float64
	Healthy     *bool
	Reason      string
	Island      *int
	Pods        []string // namespace/pod
	Updated     time.Time
}

// ScrapeAgent reads one agent's /metrics (and /inventory, for the reasons
// of unhealthy GPUs) at base, e.g. http://node-1:9400. It also reads a
// dcgm-exporter, whose names the agent shares, minus health and islands.
func ScrapeAgent(ctx context.Context, client *http.Client, base string) ([]Row, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("agent address %q: want a URL like http://host:9400", base)
	}
	body, err := promscrape.Get(ctx, client, u.JoinPath("metrics").String())
	if err != nil {
		return nil, err
	}
	fams, err := promscrape.Families(body)
	if err != nil {
		return nil, fmt.Errorf("agent %s: parse metrics: %w", base, err)
	}
	rows := map[string]*Row{}
	row := func(m *dto.Metric) *Row {
		l := promscrape.Labels(m)
		key := l["Hostname"] + "/" + l["UUID"]
		r, ok := rows[key]
		if !ok {
			idx, _ := strconv.Atoi(l["gpu"])
			r = &Row{Node: l["Hostname"], Index: idx, UUID: l["UUID"], Model: l["modelName"]}
			rows[key] = r
		}
		return r
	}
	gauge := func(name string, set func(r *Row, v float64)) {
		if f, ok := fams[name]; ok {
			for _, m := range f.GetMetric() {
				set(row(m), promscrape.Value(m))
			}
		}
	}
	gauge("DCGM_FI_DEV_GPU_UTIL", func(r *Row, v float64) { r.UtilPct = &v })
	gauge("DCGM_FI_DEV_FB_USED", func(r *Row, v float64) { r.MemUsedMiB = &v })
	gauge("DCGM_FI_DEV_FB_TOTAL", func(r *Row, v float64) { r.MemTotalMiB = &v })
	gauge("DCGM_FI_DEV_GPU_TEMP", func(r *Row, v float64) { r.TempC = &v })
	gauge("DCGM_FI_DEV_POWER_USAGE", func(r *Row, v float64) { r.PowerW = &v })
	gauge("babelfish_gpu_healthy", func(r *Row, v float64) { h := v == 1; r.Healthy = &h })
	gauge("babelfish_gpu_nvlink_island", func(r *Row, v float64) { i := int(v); r.Island = &i })
	if f, ok := fams["babelfish_gpu_pod_info"]; ok {
		for _, m := range f.GetMetric() {
			l := promscrape.Labels(m)
			r := row(m)
			r.Pods = append(r.Pods, l["namespace"]+"/"+l["pod"])
		}
	} else if f, ok := fams["DCGM_FI_DEV_GPU_UTIL"]; ok {
		// dcgm-exporter labels the series themselves
		for _, m := range f.GetMetric() {
			if l := promscrape.Labels(m); l["pod"] != "" {
				r := row(m)
				r.Pods = append(r.Pods, l["namespace"]+"/"+l["pod"])
			}
		}
	}
	// A dcgm-exporter has no FB_TOTAL by default: used + free is close.
	if f, ok := fams["DCGM_FI_DEV_FB_FREE"]; ok {
		for _, m := range f.GetMetric() {
			r := row(m)
			if r.MemTotalMiB == nil && r.MemUsedMiB != nil {
				t := *r.MemUsedMiB + promscrape.Value(m)
				r.MemTotalMiB = &t
			}
		}
	}
	if raw, err := promscrape.Get(ctx, client, u.JoinPath("inventory").String()); err == nil {
		if inv, err := inventory.Parse(raw); err == nil {
			for _, g := range inv.GPUs {
				for _, r := range rows {
					if r.UUID == g.UUID {
						r.Reason, r.Updated = g.Reason, inv.Updated
					}
				}
			}
		}
	}
	out := make([]Row, 0, len(rows))
	for _, r := range rows {
		slices.Sort(r.Pods)
		r.Pods = slices.Compact(r.Pods)
		out = append(out, *r)
	}
	SortRows(out)
	return out, nil
}

// RowsFromInventory turns one Node's inventory into rows: memory, health
// and islands, no live load.
func RowsFromInventory(inv *inventory.Inventory) []Row {
	rows := make([]Row, 0, len(inv.GPUs))
	for _, g := range inv.GPUs {
		total := float64(g.MemoryMiB)
		healthy := g.Healthy
		island := g.Island
		r := Row{Node: inv.Node, Index: g.Index, UUID: g.UUID, Model: g.Model, MemTotalMiB: &total,
			Healthy: &healthy, Reason: g.Reason, Island: &island, Updated: inv.Updated}
		if g.FreeMiB != nil {
			used := float64(g.MemoryMiB - *g.FreeMiB)
			r.MemUsedMiB = &used
		}
		rows = append(rows, r)
	}
	return rows
}

// NodeRows reads the inventory of every Node matching selector (all when
// empty). Nodes without one are skipped; malformed ones are reported in the
// error beside the rows of the others.
func NodeRows(ctx context.Context, cs kubernetes.Interface, selector string) ([]Row, error) {
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	var rows []Row
	var errs []error
	for _, n := range nodes.Items {
		inv, err := inventory.FromNode(n.Name, n.Annotations)
		if errors.Is(err, inventory.ErrNoInventory) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rows = append(rows, RowsFromInventory(inv)...)
	}
	SortRows(rows)
	return rows, errors.Join(errs...)
}

// SortRows orders rows by node, then GPU index.
func SortRows(rows []Row) {
	slices.SortFunc(rows, func(a, b Row) int {
		return cmp.Or(strings.Compare(a.Node, b.Node), cmp.Compare(a.Index, b.Index))
	})
}

// WriteTable prints rows as an aligned table; "-" marks what the source
// does not say.
func WriteTable(w io.Writer, rows []Row, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tGPU\tMODEL\tUTIL\tMEMORY\tTEMP\tPOWER\tHEALTH\tISLAND\tPOD\tAGE")
	for _, r := range rows {
		mem := "-"
		switch {
		case r.MemUsedMiB != nil && r.MemTotalMiB != nil:
			mem = fmt.Sprintf("%.0f/%.0f MiB", *r.MemUsedMiB, *r.MemTotalMiB)
		case r.MemTotalMiB != nil:
			mem = fmt.Sprintf("?/%.0f MiB", *r.MemTotalMiB)
		}
		health := "-"
		if r.Healthy != nil {
			health = "ok"
			if !*r.Healthy {
				health = "UNHEALTHY"
				if r.Reason != "" {
					health += " (" + r.Reason + ")"
				}
			}
		}
		island := "-"
		if r.Island != nil {
			island = strconv.Itoa(*r.Island)
		}
		pod := "-"
		if len(r.Pods) > 0 {
			pod = strings.Join(r.Pods, ",")
		}
		age := "-"
		if !r.Updated.IsZero() {
			age = now.Sub(r.Updated).Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Node, r.Index, r.Model,
			opt(r.UtilPct, "%.0f%%"), mem, opt(r.TempC, "%.0fC"), opt(r.PowerW, "%.0fW"), health, island, pod, age)
	}
	return tw.Flush()
}

func opt(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}
