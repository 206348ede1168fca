package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// followPoll is how often a followed log is checked for more output.
const followPoll = 200 * time.Millisecond

// Logs writes one rank's log of a job to w: every placement of the gang,
// each after a header line. With follow it goes on writing what the rank
// appends until the job is finished and its log drained, or ctx ends.
func (e *Executor) Logs(ctx context.Context, name string, rank int, follow bool, w io.Writer) error {
	j, err := e.Get(name)
	if err != nil {
		return err
	}
	if rank < 0 || rank >= int(j.Spec.Workers) {
		return fmt.Errorf("%w: rank %d: job %s has ranks 0..%d", ErrInvalid, rank, name, j.Spec.Workers-1)
	}
	path := e.LogPath(name, rank)
	var f *os.File
	for f == nil {
		f, err = os.Open(path)
		switch {
		case err == nil:
		case !errors.Is(err, fs.ErrNotExist):
			return err
		case !follow:
			return nil // the rank has not started yet: no output
		default:
			if done, err := e.waitMore(ctx, name); done || err != nil {
				return err
			}
		}
	}
	defer f.Close()
	flush := func() {
		if fl, ok := w.(interface{ Flush() }); ok {
			fl.Flush()
		}
	}
	for {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		flush()
		if !follow {
			return nil
		}
		done, err := e.waitMore(ctx, name)
		if err != nil {
			return err
		}
		if done {
			// Whatever the rank wrote before the job finished.
			_, err := io.Copy(w, f)
			flush()
			return err
		}
	}
}

// waitMore waits one poll interval and reports whether the job is
// finished (nothing more will be written).
func (e *Executor) waitMore(ctx context.Context, name string) (bool, error) {
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-time.After(followPoll):
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.jobs[name]
	if !ok {
		return true, nil
	}
	return r.Job.Status.Phase.Terminal() && r.gang == nil, nil
}
