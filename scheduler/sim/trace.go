package sim

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"babelfish.dev/babelfish/scheduler/core"
)

// Task is one task of a trace.
type Task struct {
	Name string
	Req  core.Request
	// Timed reports whether the pod list gave the task's times (creation_time
	// and deletion_time); only timed tasks can be replayed with durations.
	Timed bool
	// Created is the task's creation_time in seconds.
	Created int64
	// Duration is how long the task runs, in seconds: deletion_time minus
	// scheduled_time, or minus creation_time when the trace never scheduled
	// it (Unscheduled; its lifetime in the trace is all there is to go on).
	Duration    int64
	Unscheduled bool
}

// csvTable reads a CSV file with a header row and hands each record to row,
// which looks fields up by column name.
func csvTable(r io.Reader, what string, required []string, row func(line int, get func(string) string) error) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err != nil {
		return fmt.Errorf("%s: reading header: %w", what, err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))] = i
	}
	for _, c := range required {
		if _, ok := col[c]; !ok {
			return fmt.Errorf("%s: column %q missing (have %v)", what, c, header)
		}
	}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s line %d: %w", what, line, err)
		}
		get := func(c string) string {
			i, ok := col[c]
			if !ok || i >= len(rec) {
				return ""
			}
			return strings.TrimSpace(rec[i])
		}
		if err := row(line, get); err != nil {
			return err
		}
	}
}

func parseInt(what string, line int, field, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// Some exports write integers as floats ("1000.0").
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f != float64(int64(f)) {
			return 0, fmt.Errorf("%s line %d %s %q: want an integer", what, line, field, s)
		}
		v = int64(f)
	}
	if v < 0 {
		return 0, fmt.Errorf("%s line %d %s %d: must be >= 0", what, line, field, v)
	}
	return v, nil
}

// ReadNodes parses an openb node list (sn, cpu_milli, memory_mib, gpu, model).
func ReadNodes(r io.Reader) ([]core.NodeInfo, error) {
	const what = "node list"
	var nodes []core.NodeInfo
	err := csvTable(r, what, []string{"sn", "cpu_milli", "memory_mib", "gpu"}, func(line int, get func(string) string) error {
		var v [3]int64
		for i, f := range []string{"cpu_milli", "memory_mib", "gpu"} {
			x, err := parseInt(what, line, f, get(f))
			if err != nil {
				return err
			}
			v[i] = x
		}
		if v[2] > core.MaxGPUsPerNode {
			return fmt.Errorf("%s line %d gpu %d: at most %d", what, line, v[2], core.MaxGPUsPerNode)
		}
		if get("sn") == "" {
			return fmt.Errorf("%s line %d sn: must not be empty", what, line)
		}
		nodes = append(nodes, core.UniformNode(get("sn"), v[0], v[1], get("model"), int(v[2])))
		return nil
	})
	if err == nil && len(nodes) == 0 {
		err = fmt.Errorf("%s: no nodes", what)
	}
	return nodes, err
}

// ReadTasks parses an openb pod list (name, cpu_milli, memory_mib, num_gpu,
// gpu_milli, gpu_spec, ...). Like the artifact's converter, gpu_milli above
// 1000 is capped to 1000 and a GPU task's gpu_spec lists models split by "|".
func ReadTasks(r io.Reader) ([]Task, error) {
	const what = "pod list"
	var tasks []Task
	err := csvTable(r, what, []string{"name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"}, func(line int, get func(string) string) error {
		var v [4]int64
		for i, f := range []string{"cpu_milli", "memory_mib", "num_gpu", "gpu_milli"} {
			x, err := parseInt(what, line, f, get(f))
			if err != nil {
				return err
			}
			v[i] = x
		}
		req := core.Request{CPUMilli: v[0], MemoryMiB: v[1], GPUs: int(v[2]), GPUMilli: min(v[3], core.MilliPerGPU)}
		if req.GPUs == 0 {
			req.GPUMilli = 0
		} else {
			for m := range strings.SplitSeq(get("gpu_spec"), "|") {
				if m = strings.TrimSpace(m); m != "" {
					req.Models = append(req.Models, m)
				}
			}
		}
		if err := req.Validate(); err != nil {
			return fmt.Errorf("%s line %d (%s): %w", what, line, get("name"), err)
		}
		t := Task{Name: get("name"), Req: req}
		if err := parseTimes(what, line, get, &t); err != nil {
			return err
		}
		tasks = append(tasks, t)
		return nil
	})
	if err == nil && len(tasks) == 0 {
		err = fmt.Errorf("%s: no tasks", what)
	}
	return tasks, err
}

// parseTimes fills t's times from the optional creation_time,
// deletion_time and scheduled_time columns (seconds).
func parseTimes(what string, line int, get func(string) string, t *Task) error {
	cs, ds, ss := get("creation_time"), get("deletion_time"), get("scheduled_time")
	if cs == "" && ds == "" && ss == "" {
		return nil
	}
	if cs == "" || ds == "" {
		return fmt.Errorf("%s line %d (%s): creation_time %q and deletion_time %q: both are required when either time is given", what, line, t.Name, cs, ds)
	}
	var v [3]int64
	for i, f := range []string{"creation_time", "deletion_time", "scheduled_time"} {
		x, err := parseInt(what, line, f, get(f))
		if err != nil {
			return err
		}
		v[i] = x
	}
	created, deleted, start := v[0], v[1], v[2]
	if ss == "" {
		start = created
		t.Unscheduled = true
	} else if start < created {
		return fmt.Errorf("%s line %d (%s) scheduled_time %d: before creation_time %d", what, line, t.Name, start, created)
	}
	if deleted < start {
		return fmt.Errorf("%s line %d (%s) deletion_time %d: before the task started at %d", what, line, t.Name, deleted, start)
	}
	t.Timed, t.Created, t.Duration = true, created, deleted-start
	return nil
}

// ReadNodesFile and ReadTasksFile read the lists from files.
func ReadNodesFile(path string) ([]core.NodeInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := ReadNodes(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

// ReadTasksFile reads a pod list from a file.
func ReadTasksFile(path string) ([]Task, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := ReadTasks(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}
