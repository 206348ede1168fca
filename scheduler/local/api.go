package local

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"babelfish.dev/babelfish/api/v1alpha1"
)

// The job API `babelfish up` serves, and what `babelfish submit`, `jobs`,
// `logs` and `cancel` call:
//
//	GET  /api/v1/jobs                       list of TrainingJobs (JSON)
//	POST /api/v1/jobs                       submit one TrainingJob (JSON)
//	GET  /api/v1/jobs/{name}                one TrainingJob
//	POST /api/v1/jobs/{name}/cancel         cancel it
//	GET  /api/v1/jobs/{name}/logs?rank=N&follow=true   one rank's output
//
// Errors are {"error": "..."} with 400 (invalid), 404 (no such job), 409
// (exists, or already finished) or 500.
const apiPrefix = "/api/v1/jobs"

// MaxJobBytes bounds a submitted job document.
const MaxJobBytes = 1 << 20

// Handler serves the job API over e.
func Handler(e *Executor) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+apiPrefix, func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, v1alpha1.TrainingJobList{Items: e.List()})
	})
	mux.HandleFunc("POST "+apiPrefix, func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, MaxJobBytes+1))
		if err != nil {
			writeErr(w, err)
			return
		}
		if len(body) > MaxJobBytes {
			writeErr(w, fmt.Errorf("%w: job document is over %d bytes", ErrInvalid, MaxJobBytes))
			return
		}
		var j v1alpha1.TrainingJob
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&j); err != nil {
			writeErr(w, fmt.Errorf("%w: %w", ErrInvalid, err))
			return
		}
		out, err := e.Submit(r.Context(), &j)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusCreated, out)
	})
	mux.HandleFunc("GET "+apiPrefix+"/{name}", func(w http.ResponseWriter, r *http.Request) {
		j, err := e.Get(r.PathValue("name"))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, j)
	})
	mux.HandleFunc("POST "+apiPrefix+"/{name}/cancel", func(w http.ResponseWriter, r *http.Request) {
		j, err := e.Cancel(r.Context(), r.PathValue("name"))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, j)
	})
	mux.HandleFunc("GET "+apiPrefix+"/{name}/logs", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		rank := 0
		if s := q.Get("rank"); s != "" {
			v, err := strconv.Atoi(s)
			if err != nil {
				writeErr(w, fmt.Errorf("%w: rank %q: want an integer", ErrInvalid, s))
				return
			}
			rank = v
		}
		follow := q.Get("follow") == "true" || q.Get("follow") == "1"
		name := r.PathValue("name")
		// Check before the first byte, so errors keep their status.
		j, err := e.Get(name)
		if err != nil {
			writeErr(w, err)
			return
		}
		if rank < 0 || rank >= int(j.Spec.Workers) {
			writeErr(w, fmt.Errorf("%w: rank %d: job %s has ranks 0..%d", ErrInvalid, rank, name, j.Spec.Workers-1))
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusOK)
		fw := flushWriter{w: w}
		if f, ok := w.(http.Flusher); ok {
			fw.f = f
		}
		if err := e.Logs(r.Context(), name, rank, follow, fw); err != nil && r.Context().Err() == nil {
			fmt.Fprintf(w, "\n--- babelfish: log stream ended: %v\n", err)
		}
	})
	return mux
}

type flushWriter struct {
	w io.Writer
	f http.Flusher
}

func (fw flushWriter) Write(p []byte) (int, error) { return fw.w.Write(p) }

func (fw flushWriter) Flush() {
	if fw.f != nil {
		fw.f.Flush()
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client is gone if this fails
}

type apiError struct {
	Error string `json:"error"`
}

func writeErr(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrExists), errors.Is(err, ErrFinished):
		status = http.StatusConflict
	}
	writeJSON(w, status, apiError{Error: err.Error()})
}

// Client calls the job API of a `babelfish up`.
type Client struct {
	base string
	hc   *http.Client
}

// NewClient talks to the job API at server ("host:port" or an http URL);
// hc nil means http.DefaultClient.
func NewClient(server string, hc *http.Client) (*Client, error) {
	if server == "" {
		return nil, errors.New("job API server: empty address")
	}
	if !strings.Contains(server, "://") {
		server = "http://" + server
	}
	u, err := url.Parse(server)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("job API server %q: want host:port or an http(s) URL", server)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(u.String(), "/"), hc: hc}, nil
}

// Server is the API's base URL.
func (c *Client) Server() string { return c.base }

func (c *Client) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("job API %s: %w (is `babelfish up` running?)", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return responseErr(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("job API %s %s: reply: %w", method, path, err)
	}
	return nil
}

// responseErr turns an error reply into an error wrapping the matching
// sentinel.
func responseErr(resp *http.Response) error {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var ae apiError
	msg := strings.TrimSpace(string(raw))
	if json.Unmarshal(raw, &ae) == nil && ae.Error != "" {
		msg = ae.Error
	}
	var sentinel error
	switch resp.StatusCode {
	case http.StatusBadRequest:
		sentinel = ErrInvalid
	case http.StatusNotFound:
		sentinel = ErrNotFound
	case http.StatusConflict:
		sentinel = ErrExists
		if strings.Contains(msg, ErrFinished.Error()) {
			sentinel = ErrFinished
		}
	}
	if sentinel != nil {
		// The message already carries the sentinel's words.
		return &remoteError{msg: msg, sentinel: sentinel}
	}
	return fmt.Errorf("job API: %s: %s", resp.Status, msg)
}

type remoteError struct {
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// Submit sends a job.
func (c *Client) Submit(ctx context.Context, j *v1alpha1.TrainingJob) (*v1alpha1.TrainingJob, error) {
	var out v1alpha1.TrainingJob
	if err := c.do(ctx, http.MethodPost, apiPrefix, j, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns every job.
func (c *Client) List(ctx context.Context) ([]v1alpha1.TrainingJob, error) {
	var out v1alpha1.TrainingJobList
	if err := c.do(ctx, http.MethodGet, apiPrefix, nil, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// Get returns one job.
func (c *Client) Get(ctx context.Context, name string) (*v1alpha1.TrainingJob, error) {
	var out v1alpha1.TrainingJob
	if err := c.do(ctx, http.MethodGet, apiPrefix+"/"+url.PathEscape(name), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Cancel stops a job.
func (c *Client) Cancel(ctx context.Context, name string) (*v1alpha1.TrainingJob, error) {
	var out v1alpha1.TrainingJob
	if err := c.do(ctx, http.MethodPost, apiPrefix+"/"+url.PathEscape(name)+"/cancel", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Logs copies one rank's log to w; with follow until the job ends or ctx
// does.
func (c *Client) Logs(ctx context.Context, name string, rank int, follow bool, w io.Writer) error {
	q := url.Values{"rank": {strconv.Itoa(rank)}}
	if follow {
		q.Set("follow", "true")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+apiPrefix+"/"+url.PathEscape(name)+"/logs?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("job API %s: %w (is `babelfish up` running?)", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return responseErr(resp)
	}
	_, err = io.Copy(w, resp.Body)
	if err != nil && ctx.Err() != nil {
		return nil
	}
	return err
}
