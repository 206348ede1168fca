package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"babelfish.dev/babelfish/objstore"
)

// storeFlags is how every command finds the object store: BABELFISH_S3_*
// environment variables, overridden by --s3-* flags.
type storeFlags struct {
	cfg    objstore.Config
	envErr error
}

func addStoreFlags(cmd *cobra.Command) *storeFlags {
	s := &storeFlags{}
	s.cfg, s.envErr = objstore.ConfigFromEnv()
	if s.cfg.Bucket == "" {
		s.cfg.Bucket = "babelfish"
	}
	s.cfg.RegisterFlags(cmd.Flags())
	return s
}

// open connects to the store and makes sure the bucket exists.
func (s *storeFlags) open(ctx context.Context) (*objstore.Client, error) {
	if s.envErr != nil {
		return nil, s.envErr
	}
	if err := s.cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w\n(the object store is set with --s3-* flags or BABELFISH_S3_* variables; `babelfish up` prints them for its MinIO)", err)
	}
	c, err := objstore.New(ctx, s.cfg, objstore.WithLogger(slog.Default()))
	if err != nil {
		return nil, err
	}
	if err := c.EnsureBucket(ctx); err != nil {
		return nil, err
	}
	return c, nil
}
