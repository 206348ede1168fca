// Command dataset measures the dataset component on its own MinIO:
//
//   - the loader streaming one epoch of a version (sha256 of every shard
//     checked, records decoded, samples ordered and batched) against plain
//     minio-go GetObject of the same shards one after another, in the same
//     run, rounds alternating which side goes first:
//
//     bench dataset ratio_loader=… loader_MBps=… raw_MBps=… records_per_s=… utterances_per_s=…
//
//   - a real espeak-ng corpus build, per core:
//
//     bench dataset-corpus-rate utterances_per_s_per_core=…
//
//     and the size of the default corpus, counted without synthesizing it:
//
//     bench dataset-corpus-plan languages=N phrases=N utterances=N est_hours=H est_build_min=M
//
//   - with -full-corpus, the default corpus of every language:
//
//     bench dataset-corpus languages=N phrases=N utterances=N hours=H
//
// Usage: go run ./bench/dataset [-shards 6] [-shard-size 64MiB] [-rounds 5] [-full-corpus]
package main
