package units

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// KMeansConfig configures KMeans. A zero field takes its default.
type KMeansConfig struct {
	// K is the number of centroids (required).
	K int
	// Iterations bounds Lloyd iterations. Default 25.
	Iterations int
	// Seed makes initialisation (k-means++) deterministic.
	Seed uint64
	// InitSample bounds the points k-means++ draws from. Default 20000.
	InitSample int
}

// Codebook is a set of K centroids of Dim values each, row-major.
type Codebook struct {
	K, Dim    int
	Centroids []float32
}

// Centroid returns centroid k (a view).
func (c *Codebook) Centroid(k int) []float32 { return c.Centroids[k*c.Dim : (k+1)*c.Dim] }

// Validate checks the codebook's shape.
func (c *Codebook) Validate() error {
	if c.K < 1 || c.Dim < 1 || len(c.Centroids) != c.K*c.Dim {
		return fmt.Errorf("units: codebook has K=%d Dim=%d and %d values: want K, Dim >= 1 and K*Dim values", c.K, c.Dim, len(c.Centroids))
	}
	return nil
}

// KMeans clusters n = len(data)/dim points (row-major) into cfg.K centroids:
// k-means++ seeding, then Lloyd iterations until no assignment changes or
// cfg.Iterations is reached. An emptied cluster is re-seeded at the point
// farthest from its centroid. The result depends only on data and cfg.
func KMeans(ctx context.Context, data []float32, dim int, cfg KMeansConfig) (*Codebook, error) {
	if cfg.Iterations == 0 {
		cfg.Iterations = 25
	}
	if cfg.InitSample == 0 {
		cfg.InitSample = 20000
	}
	switch {
	case dim < 1:
		return nil, fmt.Errorf("units: k-means dim is %d: want >= 1", dim)
	case len(data)%dim != 0:
		return nil, fmt.Errorf("units: k-means data has %d values, not a multiple of dim %d", len(data), dim)
	case cfg.K < 1:
		return nil, fmt.Errorf("units: KMeansConfig.K is %d: want >= 1", cfg.K)
	case len(data)/dim < cfg.K:
		return nil, fmt.Errorf("units: k-means got %d points for K=%d: want at least K points", len(data)/dim, cfg.K)
	case cfg.Iterations < 0:
		return nil, fmt.Errorf("units: KMeansConfig.Iterations is %d: want >= 0", cfg.Iterations)
	}
	n := len(data) / dim
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6b6d65616e73))
	cb := &Codebook{K: cfg.K, Dim: dim, Centroids: make([]float32, cfg.K*dim)}
	seedPlusPlus(data, dim, cb, rng, cfg.InitSample)

	assign := make([]int, n)
	for i := range assign {
		assign[i] = -1
	}
	dist := make([]float32, n)
	sums := make([]float64, cfg.K*dim)
	counts := make([]int, cfg.K)
	for range cfg.Iterations {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		changed := cb.assignAll(data, assign, dist)
		clear(sums)
		clear(counts)
		for i, k := range assign {
			counts[k]++
			row := data[i*dim : (i+1)*dim]
			s := sums[k*dim : (k+1)*dim]
			for d, v := range row {
				s[d] += float64(v)
			}
		}
		for k := range cfg.K {
			c := cb.Centroid(k)
			if counts[k] == 0 {
				// Re-seed at the worst-served point, then mark it served.
				far := 0
				for i := range dist {
					if dist[i] > dist[far] {
						far = i
					}
				}
				copy(c, data[far*dim:(far+1)*dim])
				dist[far] = 0
				changed = true
				continue
			}
			for d := range c {
				c[d] = float32(sums[k*dim+d] / float64(counts[k]))
			}
		}
		if !changed {
			break
		}
	}
	return cb, nil
}

// seedPlusPlus picks initial centroids by k-means++ over a sample of at most
// limit points.
func seedPlusPlus(data []float32, dim int, cb *Codebook, rng *rand.Rand, limit int) {
	n := len(data) / dim
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	if n > limit {
		rng.Shuffle(n, func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		idx = idx[:limit]
	}
	pt := func(i int) []float32 { return data[idx[i]*dim : (idx[i]+1)*dim] }
	d2 := make([]float64, len(idx))
	copy(cb.Centroid(0), pt(rng.IntN(len(idx))))
	for i := range idx {
		d2[i] = sqDist(pt(i), cb.Centroid(0))
	}
	for k := 1; k < cb.K; k++ {
		var total float64
		for _, v := range d2 {
			total += v
		}
		pick := 0
		if total > 0 {
			r := rng.Float64() * total
			for i, v := range d2 {
				r -= v
				if r <= 0 {
					pick = i
					break
				}
				pick = i
			}
		} else {
			pick = rng.IntN(len(idx))
		}
		copy(cb.Centroid(k), pt(pick))
		for i := range idx {
			d2[i] = min(d2[i], sqDist(pt(i), cb.Centroid(k)))
		}
	}
}

func sqDist(a, b []float32) float64 {
	var s float64
	for i, v := range a {
		d := float64(v) - float64(b[i])
		s += d * d
	}
	return s
}

// assignAll sets assign[i] to the nearest centroid of each point and
// dist[i] to its squared distance, in blocks through a matrix product
// (|x|^2 - 2 x.c + |c|^2). It reports whether any assignment changed.
func (c *Codebook) assignAll(data []float32, assign []int, dist []float32) bool {
	const block = 4096
	n := len(data) / c.Dim
	cn := make([]float32, c.K)
	for k := range c.K {
		var s float32
		for _, v := range c.Centroid(k) {
			s += v * v
		}
		cn[k] = s
	}
	prod := make([]float32, block*c.K)
	changed := false
	for lo := 0; lo < n; lo += block {
		hi := min(n, lo+block)
		m := hi - lo
		x := blas32.General{Rows: m, Cols: c.Dim, Stride: c.Dim, Data: data[lo*c.Dim : hi*c.Dim]}
		cm := blas32.General{Rows: c.K, Cols: c.Dim, Stride: c.Dim, Data: c.Centroids}
		p := blas32.General{Rows: m, Cols: c.K, Stride: c.K, Data: prod[:m*c.K]}
		blas32.Gemm(blas.NoTrans, blas.Trans, 1, x, cm, 0, p)
		for i := range m {
			var xn float32
			for _, v := range data[(lo+i)*c.Dim : (lo+i+1)*c.Dim] {
				xn += v * v
			}
			best, bd := 0, float32(math.Inf(1))
			row := prod[i*c.K : (i+1)*c.K]
			for k, v := range row {
				if d := cn[k] - 2*v; d < bd {
					best, bd = k, d
				}
			}
			if assign[lo+i] != best {
				assign[lo+i] = best
				changed = true
			}
			dist[lo+i] = max(0, bd+xn)
		}
	}
	return changed
}

// Assign returns the nearest centroid of each of the len(frames)/Dim frames.
func (c *Codebook) Assign(frames []float32) []int {
	n := len(frames) / c.Dim
	assign := make([]int, n)
	for i := range assign {
		assign[i] = -1
	}
	c.assignAll(frames, assign, make([]float32, n))
	return assign
}
