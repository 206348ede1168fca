// Package objstore is Babelfish's one object-store client: an S3 client over
// minio-go that every component uses for datasets, checkpoints and model
// releases.
//
// It adds what the project's storage contracts need on top of plain S3:
//
//   - every object carries the sha256 of its content, written with the
//     object and checked on every read (ErrChecksum on mismatch);
//   - bounded retries with exponential backoff and jitter on transient
//     failures only (connection errors, 5xx, SlowDown), never on 4xx;
//   - artifacts: a set of parts committed by writing a manifest that lists
//     each part's size and sha256 last, so a reader sees a whole artifact or
//     none (ErrIncomplete);
//   - configuration from flags and the environment, with the secret key
//     kept out of logs.
package objstore
