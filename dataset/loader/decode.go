package loader

import (
	"errors"
	"fmt"
	"sort"

	"babelfish.dev/babelfish/dataset/shard"
	"babelfish.dev/babelfish/objstore"
)

// ErrCorruptShard is matched (errors.Is) by every *ShardError.
var ErrCorruptShard = errors.New("corrupt shard")

// ShardError is a corrupt shard: its bytes are not the ones its manifest
// committed to, or they do not decode as records.
type ShardError struct {
	Shard string // "name/version/shards/00003"
	// Offset is the byte offset of the first bad record, or -1 when the
	// object as a whole failed its sha256 or size check.
	Offset int64
	Err    error
}

func (e *ShardError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("loader: shard %s is corrupt (the whole object fails its checksum, so no record offset): %v", e.Shard, e.Err)
	}
	return fmt.Sprintf("loader: shard %s is corrupt at byte offset %d: %v", e.Shard, e.Offset, e.Err)
}

func (e *ShardError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrCorruptShard) true.
func (e *ShardError) Is(target error) bool { return target == ErrCorruptShard }

// asShardError turns a fetch or decode error into a *ShardError when it
// means the shard's content is bad, and returns nil otherwise (a network
// failure past the retry budget, a cancelled context).
func asShardError(name string, err error) *ShardError {
	var ce *shard.CorruptError
	switch {
	case errors.As(err, &ce):
		return &ShardError{Shard: name, Offset: ce.Offset, Err: err}
	case errors.Is(err, objstore.ErrChecksum):
		return &ShardError{Shard: name, Offset: -1, Err: err}
	}
	return nil
}

// decoded is one shard's records. Sample k of the shard is utterance
// k-first[r] of the record r with first[r] <= k < first[r+1].
type decoded struct {
	records []*shard.Record
	first   []int
	lengths []int32 // audio samples of each sample, for length bucketing
}

func (d *decoded) locate(k int) (*shard.Record, int) {
	r := sort.Search(len(d.records), func(i int) bool { return d.first[i+1] > k })
	return d.records[r], k - d.first[r]
}

// decode parses a verified shard held in data. The records' audio slices
// point into data rather than being copied (shard.Parse): a shard is read
// once from the network and never copied again for its audio.
func decode(name string, data []byte, info shard.ShardInfo, wantLengths bool) (*decoded, error) {
	d := &decoded{first: []int{0}}
	if info.Records > 0 {
		d.records = make([]*shard.Record, 0, info.Records)
		d.first = make([]int, 1, info.Records+1)
	}
	if wantLengths {
		d.lengths = make([]int32, 0, info.Utterances)
	}
	n := 0
	var off int64
	for off < int64(len(data)) {
		rec, next, err := shard.Parse(name, data, off)
		if err != nil {
			return nil, err
		}
		off = next
		if wantLengths {
			for _, u := range rec.Utterances {
				d.lengths = append(d.lengths, int32(u.Samples))
			}
		}
		n += len(rec.Utterances)
		d.records = append(d.records, rec)
		d.first = append(d.first, n)
	}
	if len(d.records) != info.Records || n != info.Utterances {
		return nil, &shard.CorruptError{Shard: name, Offset: off,
			Reason: fmt.Sprintf("shard holds %d records and %d utterances, its manifest entry says %d and %d", len(d.records), n, info.Records, info.Utterances)}
	}
	return d, nil
}
