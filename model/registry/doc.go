// Package registry is the model release registry in object storage: the
// contract between promotion (a researcher's `babelfish promote`, or a
// TrainingJob's automatic policy) and the serving replicas that follow it.
//
// Layout under the bucket, per DESIGN.md:
//
//	models/<model>/releases/<n>.json   the release record (Release)
//	models/<model>/current             which release serves (Current)
//	models/<model>/weights/<sha256>/   the weights a record names: an
//	                                   objstore artifact (model.bin, manifest
//	                                   last), named by content
//
// Promotion copies a committed checkpoint's weights into a weights artifact
// (server-side, checksum kept), verifies them by reading them back
// and loading the model, writes the release record, and only then flips
// current. A reader therefore never sees a release whose weights are missing
// or corrupt, and a bad checkpoint changes nothing. Release numbers grow from
// 1; the record is created with If-None-Match so two promoters never share
// a number. Rollback flips current to an earlier release, re-verified first.
//
// ShouldPromote is the pure policy "promote when the candidate's eval metric
// beats the current release's", for the TrainingJob controller and `up`.
package registry
