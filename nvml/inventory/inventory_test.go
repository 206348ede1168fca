package inventory

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func ptr[T any](v T) *T { return &v }

func valid() *Inventory {
	return &Inventory{
		Version: Version,
		Node:    "gpu-1",
		Updated: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC),
		Driver:  "550.54.15",
		GPUs: []GPU{
			{Index: 0, UUID: "GPU-a", Model: "NVIDIA H100 80GB HBM3", Family: "hopper", MemoryMiB: 81920, FreeMiB: ptr[int64](80000), Healthy: true},
			{Index: 1, UUID: "GPU-b", Model: "NVIDIA H100 80GB HBM3", Family: "hopper", MemoryMiB: 81920, Healthy: false,
				Reason: "xid 79 (GPU has fallen off the bus)", Since: ptr(time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)), Island: 1},
		},
	}
}

func TestEncodeParseRoundTrip(t *testing.T) {
	in := valid()
	b, err := Encode(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !Equivalent(in, out, 0) || !out.Updated.Equal(in.Updated) || !out.GPUs[1].Since.Equal(*in.GPUs[1].Since) {
		t.Fatalf("round trip changed the inventory:\n in  %+v\n out %+v", in, out)
	}
	if out.GPUs[1].FreeMiB != nil {
		t.Errorf("gpu 1 free: want absent (not read), got %d", *out.GPUs[1].FreeMiB)
	}
	if out.HealthyCount() != 1 || out.Model() != "NVIDIA H100 80GB HBM3" {
		t.Errorf("healthy %d model %q: want 1 and the H100", out.HealthyCount(), out.Model())
	}
}

func TestParseRejects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Inventory)
		raw    string
		want   string
	}{
		{name: "newer version", mutate: func(i *Inventory) { i.Version = 2 }, want: "version 2"},
		{name: "no node", mutate: func(i *Inventory) { i.Node = "" }, want: "node: must not be empty"},
		{name: "duplicate index", mutate: func(i *Inventory) { i.GPUs[1].Index = 0 }, want: "index 0: duplicate"},
		{name: "negative index", mutate: func(i *Inventory) { i.GPUs[0].Index = -1 }, want: "index -1"},
		{name: "duplicate uuid", mutate: func(i *Inventory) { i.GPUs[1].UUID = "GPU-a" }, want: "uuid GPU-a: duplicate"},
		{name: "empty uuid", mutate: func(i *Inventory) { i.GPUs[0].UUID = "" }, want: "uuid: must not be empty"},
		{name: "negative memory", mutate: func(i *Inventory) { i.GPUs[0].MemoryMiB = -1 }, want: "memoryMiB -1"},
		{name: "free above total", mutate: func(i *Inventory) { i.GPUs[0].FreeMiB = ptr[int64](90000) }, want: "freeMiB 90000"},
		{name: "island out of range", mutate: func(i *Inventory) { i.GPUs[0].Island = 64 }, want: "island 64"},
		{name: "healthy with reason", mutate: func(i *Inventory) { i.GPUs[0].Reason = "xid 13" }, want: "only unhealthy"},
		{name: "too many gpus", mutate: func(i *Inventory) {
			for k := 2; k <= MaxGPUs; k++ {
				i.GPUs = append(i.GPUs, GPU{Index: k, UUID: "GPU-" + strings.Repeat("x", k), Healthy: true})
			}
		}, want: "at most 64"},
		{name: "not json", raw: "{", want: "parse"},
		{name: "trailing data", raw: `{"version":1,"node":"n","gpus":[]} {}`, want: "trailing"},
		{name: "too large", raw: strings.Repeat(" ", MaxBytes+1), want: "at most 65536"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := []byte(c.raw)
			if c.mutate != nil {
				inv := valid()
				c.mutate(inv)
				if _, err := Encode(inv); err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("Encode: got %v, want an error with %q", err, c.want)
				}
				// Bypass Encode's check to see that Parse checks too.
				raw = mustJSON(t, inv)
			}
			_, err := Parse(raw)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse: got %v, want an error with %q", err, c.want)
			}
		})
	}
}

func TestFromNode(t *testing.T) {
	good, err := Encode(valid())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		node    string
		ann     map[string]string
		wantErr string
		noInv   bool
	}{
		{name: "ok", node: "gpu-1", ann: map[string]string{Annotation: string(good)}},
		{name: "missing", node: "gpu-1", ann: map[string]string{"other": "x"}, noInv: true},
		{name: "nil annotations", node: "gpu-1", noInv: true},
		{name: "other node's", node: "gpu-2", ann: map[string]string{Annotation: string(good)}, wantErr: `inventory node "gpu-1"`},
		{name: "garbage", node: "gpu-1", ann: map[string]string{Annotation: "nope"}, wantErr: "node gpu-1: inventory: parse"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv, err := FromNode(c.node, c.ann)
			switch {
			case c.noInv:
				if !errors.Is(err, ErrNoInventory) {
					t.Fatalf("got %v, want ErrNoInventory", err)
				}
			case c.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, c.wantErr)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if len(inv.GPUs) != 2 || inv.GPUs[1].Healthy {
					t.Fatalf("got %+v", inv)
				}
			}
		})
	}
}

func TestNodeLabels(t *testing.T) {
	inv := valid()
	inv.GPUs[0], inv.GPUs[1] = inv.GPUs[1], inv.GPUs[0] // the lowest index speaks, not the first listed
	inv.GPUs[1].Model = "NVIDIA H100 80GB HBM3"
	got := NodeLabels(inv)
	want := map[string]string{
		LabelProduct: "NVIDIA-H100-80GB-HBM3",
		LabelCount:   "2",
		LabelMemory:  "81920",
		LabelFamily:  "hopper",
	}
	if len(got) != len(want) {
		t.Fatalf("labels %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("label %s = %q, want %q", k, got[k], v)
		}
	}
	if l := NodeLabels(&Inventory{}); len(l) != 0 {
		t.Errorf("no gpus: labels %v, want none", l)
	}
}

func TestLabelValue(t *testing.T) {
	cases := map[string]string{
		"NVIDIA A100-SXM4-40GB":   "NVIDIA-A100-SXM4-40GB",
		" Tesla V100 (PCIe) ":     "Tesla-V100-_PCIe",
		"GeForce RTX 4090 Ti/Foo": "GeForce-RTX-4090-Ti_Foo",
		strings.Repeat("a", 70):   strings.Repeat("a", 63),
		"-x-":                     "x",
	}
	for in, want := range cases {
		if got := LabelValue(in); got != want {
			t.Errorf("LabelValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEquivalent(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Inventory)
		step   int64
		want   bool
	}{
		{name: "same", mutate: func(*Inventory) {}, step: 1024, want: true},
		{name: "only updated", mutate: func(i *Inventory) { i.Updated = i.Updated.Add(time.Hour) }, step: 1024, want: true},
		{name: "free within step", mutate: func(i *Inventory) { *i.GPUs[0].FreeMiB -= 1023 }, step: 1024, want: true},
		{name: "free by a step", mutate: func(i *Inventory) { *i.GPUs[0].FreeMiB -= 1024 }, step: 1024, want: false},
		{name: "free any change with step 0", mutate: func(i *Inventory) { *i.GPUs[0].FreeMiB-- }, step: 0, want: false},
		{name: "free becomes unknown", mutate: func(i *Inventory) { i.GPUs[0].FreeMiB = nil }, step: 1024, want: false},
		{name: "health", mutate: func(i *Inventory) { i.GPUs[0].Healthy = false }, step: 1024, want: false},
		{name: "reason", mutate: func(i *Inventory) { i.GPUs[1].Reason = "gpu lost" }, step: 1024, want: false},
		{name: "island", mutate: func(i *Inventory) { i.GPUs[0].Island = 2 }, step: 1024, want: false},
		{name: "gpu gone", mutate: func(i *Inventory) { i.GPUs = i.GPUs[:1] }, step: 1024, want: false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := valid(), valid()
			c.mutate(b)
			if got := Equivalent(a, b, c.step); got != c.want {
				t.Fatalf("Equivalent = %v, want %v", got, c.want)
			}
		})
	}
}

func mustJSON(t *testing.T, inv *Inventory) []byte {
	t.Helper()
	b, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
