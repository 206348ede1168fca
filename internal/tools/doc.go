// Package tools finds the programs Babelfish runs beside itself: the ones
// scripts/bootstrap.sh builds into the tools cache (minio, kube-apiserver,
// etcd, helm, ...) and the ones installed from Debian packages (espeak-ng,
// sox). It is shared by the test environment and by `babelfish up`, so a
// missing program gives the same "run `make tools`" error everywhere.
package tools
