// Package testenv starts the real parts Babelfish runs against — a MinIO
// server, a kube-apiserver with etcd — from the tools cache that
// scripts/bootstrap.sh fills, for tests, benchmarks and `babelfish up`.
//
// Nothing here fakes a part: when a binary is missing the helpers fail with an
// error that says how to get it (`make tools`), and never skip.
package testenv
