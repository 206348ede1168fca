package model

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"babelfish.dev/babelfish/model/units"
)

// PartName is the object that holds a Save stream inside a checkpoint or
// a release artifact; the trainer writes it and the registry reads it.
const PartName = "model.bin"

// FormatVersion is the version of the stream Save writes. Load reads this
// version only.
const FormatVersion = 1

const modelMagic = "BFS2ST\x00\x00"

// Bounds on what Load accepts before allocating.
const (
	maxConfigBytes = 1 << 20
	maxNameBytes   = 256
)

// Save writes config, unit codebook and weights as one stream: magic,
// format version, config (JSON), codebook, then each tensor's name, shape
// and little-endian float32 data. Checksums are the caller's job.
func (m *Model) Save(w io.Writer) error {
	bw := bufio.NewWriter(w)
	cfg, err := json.Marshal(m.cfg)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	bw.WriteString(modelMagic)
	put := func(vs ...any) error {
		for _, v := range vs {
			if err := binary.Write(bw, le, v); err != nil {
				return err
			}
		}
		return nil
	}
	if err := put(uint32(FormatVersion), uint32(len(cfg))); err != nil {
		return err
	}
	bw.Write(cfg)
	cb := m.codebook
	if err := put(uint32(cb.K), uint32(cb.Dim), cb.Centroids, uint32(len(m.params.Tensors))); err != nil {
		return err
	}
	for _, t := range m.params.Tensors {
		if err := put(uint16(len(t.Name))); err != nil {
			return err
		}
		bw.WriteString(t.Name)
		if err := put(uint8(len(t.Shape))); err != nil {
			return err
		}
		for _, d := range t.Shape {
			if err := put(uint32(d)); err != nil {
				return err
			}
		}
		if err := put(t.Data); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Load reads a model written by Save, checking the format version, the
// config, and that the codebook and every tensor have the shapes the config
// implies.
func Load(r io.Reader) (*Model, error) {
	br := bufio.NewReader(r)
	le := binary.LittleEndian
	get := func(what string, vs ...any) error {
		for _, v := range vs {
			if err := binary.Read(br, le, v); err != nil {
				if errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return fmt.Errorf("model: reading %s: %w", what, err)
			}
		}
		return nil
	}
	magic := make([]byte, len(modelMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != modelMagic {
		return nil, errors.New("model: not a Babelfish S2ST model (bad magic)")
	}
	var version, cfgLen uint32
	if err := get("header", &version, &cfgLen); err != nil {
		return nil, err
	}
	if version != FormatVersion {
		return nil, fmt.Errorf("model: format version %d: this build reads version %d", version, FormatVersion)
	}
	if cfgLen > maxConfigBytes {
		return nil, fmt.Errorf("model: config of %d bytes: want at most %d", cfgLen, maxConfigBytes)
	}
	raw := make([]byte, cfgLen)
	if _, err := io.ReadFull(br, raw); err != nil {
		return nil, fmt.Errorf("model: reading config: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("model: config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var k, dim uint32
	if err := get("codebook shape", &k, &dim); err != nil {
		return nil, err
	}
	if int(k) != cfg.Units || int(dim) != cfg.NMels() {
		return nil, fmt.Errorf("model: codebook is %d x %d: the config wants %d x %d", k, dim, cfg.Units, cfg.NMels())
	}
	cb := &units.Codebook{K: int(k), Dim: int(dim), Centroids: make([]float32, int(k)*int(dim))}
	if err := get("codebook", cb.Centroids); err != nil {
		return nil, err
	}
	m, err := newModel(cfg, cb)
	if err != nil {
		return nil, err
	}
	var count uint32
	if err := get("tensor count", &count); err != nil {
		return nil, err
	}
	if int(count) != len(m.params.Tensors) {
		return nil, fmt.Errorf("model: stream has %d tensors: the config implies %d (%s)", count, len(m.params.Tensors), m.params.describe())
	}
	for _, t := range m.params.Tensors {
		var nl uint16
		if err := get("tensor name", &nl); err != nil {
			return nil, err
		}
		if nl > maxNameBytes {
			return nil, fmt.Errorf("model: tensor name of %d bytes: want at most %d", nl, maxNameBytes)
		}
		name := make([]byte, nl)
		if _, err := io.ReadFull(br, name); err != nil {
			return nil, fmt.Errorf("model: reading tensor name: %w", err)
		}
		var nd uint8
		if err := get("tensor rank", &nd); err != nil {
			return nil, err
		}
		shape := make([]int, nd)
		for i := range shape {
			var d uint32
			if err := get("tensor shape", &d); err != nil {
				return nil, err
			}
			shape[i] = int(d)
		}
		if string(name) != t.Name || !slices.Equal(shape, t.Shape) {
			return nil, fmt.Errorf("model: tensor %s%v in the stream: the config implies %s%v here", name, shape, t.Name, t.Shape)
		}
		if err := get("tensor "+t.Name, t.Data); err != nil {
			return nil, err
		}
		for _, v := range t.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("model: tensor %s holds %g", t.Name, v)
			}
		}
	}
	return m, nil
}
