// Package charts holds the tests of the Babelfish Helm chart (babelfish/):
// `helm lint` and `helm template` for every values set under
// babelfish/ci, each rendered object applied to a real kube-apiserver with
// server-side dry run (the CRDs applied for real first), the bad values
// refused with a message naming the key, and the Grafana dashboard's
// queries checked against the metrics the code really exports.
//
// It has no non-test code: the chart itself is YAML and templates.
package charts
