package model

import (
	"fmt"

	"babelfish.dev/babelfish/model/units"
)

// decodeGreedyBatch decodes encoder inputs xs (see EncoderInput) into
// language indices langs greedily, all rows in lock step: the same
// sequences as Decode with greedy options, for a fraction of the CPU per
// input once the batch is more than a few rows.
func (m *Model) decodeGreedyBatch(xs [][]float32, langs []int, maxFrames int) []units.Sequence {
	c := m.cfg
	rows := len(xs)
	in := c.InputSize()
	gs := newGemmScratch(rows, c.maxLayerInput())
	h := make([]float32, rows*in)
	for r, x := range xs {
		copy(h[r*in:(r+1)*in], x)
	}
	for i, width := range c.EncoderHidden {
		y := make([]float32, rows*width)
		linearRows(y, h, rows, m.params.must(fmt.Sprintf("enc.%d.w", i)), m.params.must(fmt.Sprintf("enc.%d.b", i)), gs)
		relu(y)
		h = y
	}
	hc, hd := c.ContextHidden, c.DecoderHidden
	ctx := make([]float32, rows*hc)
	linearRows(ctx, h, rows, m.params.must("ctx.w"), m.params.must("ctx.b"), gs)
	lang := m.params.must("ctx.lang").Data
	for r, l := range langs {
		row, le := ctx[r*hc:(r+1)*hc], lang[l*hc:(l+1)*hc]
		for j := range row {
			row[j] += le[j]
		}
	}
	relu(ctx)
	add, gate := make([]float32, rows*hd), make([]float32, rows*hd)
	linearRows(add, ctx, rows, m.params.must("dec.add.w"), m.params.must("dec.add.b"), gs)
	linearRows(gate, ctx, rows, m.params.must("dec.gate.w"), m.params.must("dec.gate.b"), gs)

	seqs := make([]units.Sequence, rows)
	prev := make([]int, rows)
	frames := make([]int, rows)
	done := make([]bool, rows)
	for r := range prev {
		prev[r] = c.bos()
	}
	emb := m.params.must("dec.prev").Data
	layers := make([][2]Tensor, c.DecoderLayers)
	for i := range layers {
		layers[i] = [2]Tensor{m.params.must(fmt.Sprintf("dec.%d.w", i)), m.params.must(fmt.Sprintf("dec.%d.b", i))}
	}
	uw, ub := m.params.must("dec.unit.w"), m.params.must("dec.unit.b")
	dw, db := m.params.must("dec.dur.w"), m.params.must("dec.dur.b")
	active := make([]int, 0, rows)
	hs := make([]float32, rows*hd)
	ys := make([]float32, rows*hd)
	logits := make([]float32, rows*(c.Units+1))
	dls := make([]float32, rows*c.MaxDuration)
	// A target holds at most MaxUnits-1 units before its end marker.
	for t := 0; t < c.MaxUnits-1; t++ {
		active = active[:0]
		for r := range rows {
			if !done[r] && frames[r] < maxFrames {
				active = append(active, r)
			}
		}
		n := len(active)
		if n == 0 {
			break
		}
		po := m.params.must("dec.pos").Data[t*hd : (t+1)*hd]
		pg := m.params.must("dec.posgate").Data[t*hd : (t+1)*hd]
		for k, r := range active {
			hr := hs[k*hd : (k+1)*hd]
			a, g, pe := add[r*hd:(r+1)*hd], gate[r*hd:(r+1)*hd], emb[prev[r]*hd:(prev[r]+1)*hd]
			for j := range hr {
				hr[j] = a[j] + g[j]*pg[j] + pe[j] + po[j]
			}
		}
		cur := hs[:n*hd]
		relu(cur)
		for _, l := range layers {
			y := ys[:n*hd]
			linearRows(y, cur, n, l[0], l[1], gs)
			relu(y)
			cur, ys = y, cur[:cap(cur)]
		}
		hs = cur[:cap(cur)]
		lg, dl := logits[:n*(c.Units+1)], dls[:n*c.MaxDuration]
		linearRows(lg, cur, n, uw, ub, gs)
		linearRows(dl, cur, n, dw, db, gs)
		for k, r := range active {
			drow := dl[k*c.MaxDuration : (k+1)*c.MaxDuration]
			dur := 0
			for d, v := range drow {
				if v > drow[dur] {
					dur = d
				}
			}
			// Greedy needs only the most likely unit, and the log-softmax
			// keeps the logits' order (it subtracts one float64 from
			// exact float32 values), so the argmax is taken on the logits.
			best := -1
			for u, v := range lg[k*(c.Units+1) : (k+1)*(c.Units+1)] {
				if u != prev[r] && (best < 0 || v > lg[k*(c.Units+1)+best]) {
					best = u
				}
			}
			if best == c.eos() {
				done[r] = true
				continue
			}
			seqs[r].Units = append(seqs[r].Units, best)
			seqs[r].Durations = append(seqs[r].Durations, dur+1)
			frames[r] += dur + 1
			prev[r] = best
		}
	}
	return seqs
}
