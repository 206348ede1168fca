// Package collectivev1 is the generated Go code of the babelfish.collective.v1
// protos: rendezvous and ring transport between the ranks of a training job.
// Regenerate with `make proto` after editing collective.proto.
package collectivev1
