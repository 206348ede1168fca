// Package loader streams a dataset version to the ranks of a training job:
// a global sample order that is a pure function of (seed, epoch), partitioned
// over (rank, world size) with each sample exactly once per epoch, a cursor
// that resumes it exactly (also with another world size, given the same
// global batch), and shard reads with checksums, retries and prefetch.
//
// # Samples
//
// A sample is one utterance inside a record, numbered shard by shard in
// manifest order, record by record, utterance by utterance; Order's shard
// sizes are the manifest's utterance counts. A Sample carries its record
// (shared, read-only), so the consumer draws translation pairs inside the
// record and applies its own filters (canonical renderings, unseen voices,
// unseen pairs). Options.Splits keeps whole shards of some splits (records of
// one split share shards); the order then runs over the kept shards only,
// while Sample.Index stays the number in the whole version.
//
// # Streaming
//
// New plans the rank's upcoming steps from (seed, epoch, partition, cursor)
// and fetches the shards they touch in order of first use, Prefetch at a
// time, into a cache bounded by CacheBytes (manifest sizes of decoded and
// in-flight shards). A rank fetches only shards its own samples are in (with
// block shuffling that is usually every shard of the block). When the cache
// is full, a shard no planned step needs soon is evicted; one needed again
// later is fetched again, so a small cache costs bandwidth, never
// correctness. Each shard is read whole through objstore, which checks it
// against the sha256 the manifest committed to and retries transient
// failures; records are then checked by their CRC-32C. Decoded records point
// into the shard's buffer rather than copying the audio, so a batch kept by
// the consumer keeps its shards' buffers alive after eviction.
//
// # Corrupt shards
//
// A shard whose sha256 or size differs from the manifest (say, overwritten
// behind the store's back) or whose records do not decode is corrupt. Under
// policy Fail, Next returns a *ShardError naming the shard and the byte
// offset of the bad record (-1 for a checksum failure of the whole object)
// when the stream reaches the shard, and from then on. Under Skip, the
// shard's samples are left out of every batch that would hold them, counted
// in Batch.Skipped, Stats and the babelfish_loader_skipped_samples_total
// metric, and the stream goes on: exact-once then holds for all other
// samples, and the skipped ones are missing from every epoch (ranks still
// take the same number of steps, some with smaller batches). A fetch that
// fails past objstore's retries (the store is down) is not corruption: Next
// returns the error and the next call tries again.
//
// # Length bucketing
//
// With BucketWindow = W, each window of W consecutive global batches of the
// epoch's order (windows aligned to the epoch's start) is regrouped: its
// samples are sorted by audio length, cut into global batches, and the full
// batches are shuffled by (seed, epoch, window), a short last batch of the
// epoch staying last. Batches then hold similar lengths, and each window
// still holds exactly the samples it held, so exact-once is untouched. A
// global batch's content depends on neither rank nor world size, so resume
// and elastic resume work as without bucketing, at any batch boundary (a
// cursor must be a multiple of the global batch). The cost: before a
// window's first batch a rank needs the lengths of all the window's samples,
// not only its own share, so it fetches every shard the window touches
// (lengths are kept after eviction).
//
// # Resume
//
// Batch.Cursor stored in a checkpoint restarts the stream at the next batch.
// The sequence is the same only under the same Seed, BlockShards, Splits,
// GlobalBatch and BucketWindow; Rank and World may change.
package loader
