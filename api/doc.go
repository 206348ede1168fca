// Package api holds Babelfish's wire contracts: the babelfish.v1 gRPC protos
// (api/babelfish/v1) and, in later packages beside it, the Kubernetes API types
// of group babelfish.dev.
package api
