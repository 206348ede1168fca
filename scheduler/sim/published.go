package sim

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// PublishedCurve is one published allocation curve of the FGD artifact
// (expected_allo_discrete.csv): a workload, policy and seed.
type PublishedCurve struct {
	Workload string // e.g. "default" (the file's "openb_pod_list_default")
	Policy   string // e.g. "06-FGD"
	Seed     int64
	Curve    [CurveLevels]float64
}

// ReadPublished parses expected_allo_discrete.csv.
func ReadPublished(r io.Reader) ([]PublishedCurve, error) {
	cr := csv.NewReader(r)
	rows, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("published curves: %w", err)
	}
	if len(rows) < 2 {
		return nil, fmt.Errorf("published curves: no rows")
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[strings.TrimSpace(h)] = i
	}
	for _, c := range []string{"workload", "sc_policy", "seed", "0", "130"} {
		if _, ok := col[c]; !ok {
			return nil, fmt.Errorf("published curves: column %q missing", c)
		}
	}
	var out []PublishedCurve
	for li, rec := range rows[1:] {
		line := li + 2
		seed, err := strconv.ParseInt(rec[col["seed"]], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("published curves line %d seed %q: %w", line, rec[col["seed"]], err)
		}
		pc := PublishedCurve{
			Workload: strings.TrimPrefix(rec[col["workload"]], "openb_pod_list_"),
			Policy:   rec[col["sc_policy"]],
			Seed:     seed,
		}
		for l := range CurveLevels {
			s := rec[col[strconv.Itoa(l)]]
			if s == "" {
				return nil, fmt.Errorf("published curves line %d level %d: empty", line, l)
			}
			if pc.Curve[l], err = strconv.ParseFloat(s, 64); err != nil {
				return nil, fmt.Errorf("published curves line %d level %d %q: %w", line, l, s, err)
			}
		}
		out = append(out, pc)
	}
	return out, nil
}

// ReadPublishedFile reads expected_allo_discrete.csv from a file.
func ReadPublishedFile(path string) ([]PublishedCurve, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadPublished(f)
}

// MeanPublished averages the published curves of a workload and policy
// (policy matched by suffix, so "FGD" finds "06-FGD") over the given seeds;
// it fails when a seed is missing.
func MeanPublished(curves []PublishedCurve, workload, policy string, seeds []int64) ([CurveLevels]float64, error) {
	var mean [CurveLevels]float64
	for _, seed := range seeds {
		found := false
		for i := range curves {
			c := &curves[i]
			if c.Workload == workload && c.Seed == seed && (c.Policy == policy || strings.HasSuffix(c.Policy, "-"+policy)) {
				for l := range mean {
					mean[l] += c.Curve[l]
				}
				found = true
				break
			}
		}
		if !found {
			return mean, fmt.Errorf("published curves: no %s/%s seed %d", workload, policy, seed)
		}
	}
	for l := range mean {
		mean[l] /= float64(len(seeds))
	}
	return mean, nil
}
