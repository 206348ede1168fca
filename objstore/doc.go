// Package objstore is Babelfish's one object-store client: an S3 client over
// minio-go that every component uses for datasets, checkpoints and model
// releases.
//
// It adds what the project's storage contracts need on top of plain S3:
//
//   - every object carries the sha256 and the CRC-32C of its content,
//     computed in one pass and written with the object; every read checks
//     the CRC-32C (ErrChecksum on mismatch), which costs next to nothing,
//     and the sha256 pins identity: an artifact part's recorded sha256 must
//     be its manifest's before it is read, and Artifact.Verify or
//     WithSHA256Reads hash sha256 over every byte;
//   - bounded retries with exponential backoff and jitter on transient
//     failures only (connection errors, 5xx, SlowDown), never on 4xx;
//   - artifacts: a set of parts committed by writing a manifest that lists
//     each part's size and sha256 last, so a reader sees a whole artifact or
//     none (ErrIncomplete);
//   - configuration from flags and the environment, with the secret key
//     kept out of logs.
package objstore
