// Package babelfishv1 is the generated Go code of the babelfish.v1 protos:
// the Translator service that applications call. Regenerate with
// `make proto` after editing translator.proto.
package babelfishv1
