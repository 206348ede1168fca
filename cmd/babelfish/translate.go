package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/audio"
)

type translateOptions struct {
	server   string
	to       string
	from     string
	out      string
	stream   bool
	beam     int32
	timeout  time.Duration
	retries  int
	tls      bool
	caFile   string
	certFile string
	keyFile  string
	token    string
}

// newTranslateCmd is `babelfish translate`: a WAV file through a server.
func newTranslateCmd() *cobra.Command {
	o := translateOptions{}
	cmd := &cobra.Command{
		Use:     "translate --server ADDR --to LANG IN.wav -o OUT.wav",
		Short:   "Translate a WAV file through a Babelfish server",
		GroupID: "serve",
		Long: `Send a WAV file to a Babelfish server and write the translated speech.

With --stream the audio goes through StreamTranslate in 100 ms chunks, as a
microphone would send it; the server answers segment by segment at pauses,
and the answers are written one after another. An overloaded server's
RESOURCE_EXHAUSTED is retried after the delay it asks for (--retries times).

The token for a server that wants one comes from $BABELFISH_TOKEN (never a
flag: other users can read the process list).`,
		Args: cobra.ExactArgs(1),
	}
	f := cmd.Flags()
	f.StringVar(&o.server, "server", "localhost:8443", "server address host:port")
	f.StringVar(&o.to, "to", "", "language to speak, e.g. fr")
	f.StringVar(&o.from, "from", "", "language of the input (optional)")
	f.StringVarP(&o.out, "output", "o", "", "output WAV file")
	f.BoolVar(&o.stream, "stream", false, "use StreamTranslate")
	f.Int32Var(&o.beam, "beam", 0, "beam width (0 or 1: greedy)")
	f.DurationVar(&o.timeout, "timeout", time.Minute, "deadline of the call")
	f.IntVar(&o.retries, "retries", 3, "retries of RESOURCE_EXHAUSTED answers")
	f.BoolVar(&o.tls, "tls", false, "connect with TLS")
	f.StringVar(&o.caFile, "ca-file", "", "PEM CA bundle to trust besides the system roots (implies --tls)")
	f.StringVar(&o.certFile, "cert", "", "client certificate for mutual TLS (implies --tls)")
	f.StringVar(&o.keyFile, "key", "", "client key for mutual TLS")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		o.token = os.Getenv("BABELFISH_TOKEN")
		if o.to == "" {
			return errors.New("--to is required (e.g. --to fr)")
		}
		if o.out == "" {
			return errors.New("-o/--output is required")
		}
		return runTranslate(cmd.Context(), cmd, &o, args[0])
	}
	return cmd
}

func dialServer(o *translateOptions) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if o.tls || o.caFile != "" || o.certFile != "" {
		c := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.caFile != "" {
			pem, err := os.ReadFile(o.caFile)
			if err != nil {
				return nil, fmt.Errorf("--ca-file: %w", err)
			}
			pool, err := x509.SystemCertPool()
			if err != nil {
				pool = x509.NewCertPool()
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", o.caFile)
			}
			c.RootCAs = pool
		}
		if (o.certFile == "") != (o.keyFile == "") {
			return nil, errors.New("--cert and --key go together")
		}
		if o.certFile != "" {
			cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
			if err != nil {
				return nil, fmt.Errorf("--cert/--key: %w", err)
			}
			c.Certificates = []tls.Certificate{cert}
		}
		creds = credentials.NewTLS(c)
	}
	return grpc.NewClient(o.server, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20)))
}

func runTranslate(ctx context.Context, cmd *cobra.Command, o *translateOptions, in string) error {
	wav, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	conn, err := dialServer(o)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := babelfishv1.NewTranslatorClient(conn)
	if o.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+o.token)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	out := cmd.OutOrStdout()
	decode := &babelfishv1.DecodeOptions{BeamSize: o.beam}
	if o.stream {
		clip, err := audio.DecodeWAV(wav, audio.DefaultLimits())
		if err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
		return streamFile(ctx, client, o, clip, decode, out)
	}
	for attempt := 0; ; attempt++ {
		t0 := time.Now()
		resp, err := client.Translate(ctx, &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wav}, TargetLanguage: o.to, SourceLanguage: o.from, Decode: decode})
		if d, ok := retryDelay(err); ok && attempt < o.retries {
			fmt.Fprintf(cmd.ErrOrStderr(), "server busy; retrying in %v\n", d)
			select {
			case <-time.After(d):
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err != nil {
			return explain(err)
		}
		if err := os.WriteFile(o.out, resp.Audio.GetWav(), 0o644); err != nil {
			return err
		}
		tm := resp.GetTiming()
		_, err = fmt.Fprintf(out, "%s: %s by %s in %v (queue %.1f ms, compute %.1f ms, batch %d)\n", o.out, o.to, resp.ModelVersion,
			time.Since(t0).Round(time.Millisecond), 1000*tm.GetQueueSeconds(), 1000*tm.GetComputeSeconds(), tm.GetBatchSize())
		return err
	}
}

// retryDelay is the delay a RESOURCE_EXHAUSTED answer asks for.
func retryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.RetryDelay.AsDuration(), true
		}
	}
	return 100 * time.Millisecond, true
}

func explain(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	return fmt.Errorf("server answered %s: %s", st.Code(), st.Message())
}

func streamFile(ctx context.Context, client babelfishv1.TranslatorClient, o *translateOptions, clip audio.Clip, decode *babelfishv1.DecodeOptions, out io.Writer) error {
	stream, err := client.StreamTranslate(ctx)
	if err != nil {
		return explain(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- func() error {
			if err := stream.Send(&babelfishv1.StreamTranslateRequest{Msg: &babelfishv1.StreamTranslateRequest_Config{Config: &babelfishv1.StreamConfig{
				TargetLanguage: o.to, SourceLanguage: o.from, SampleRate: int32(clip.Rate), Decode: decode}}}); err != nil {
				return err
			}
			chunk := max(1, clip.Rate/10)
			for i := 0; i < len(clip.Samples); i += chunk {
				x := clip.Samples[i:min(i+chunk, len(clip.Samples))]
				b := make([]byte, 2*len(x))
				for j, v := range x {
					binary.LittleEndian.PutUint16(b[2*j:], uint16(audio.ToPCM16(v)))
				}
				if err := stream.Send(&babelfishv1.StreamTranslateRequest{Msg: &babelfishv1.StreamTranslateRequest_Pcm{Pcm: b}}); err != nil {
					return err
				}
			}
			return stream.CloseSend()
		}()
	}()
	var all audio.Clip
	var lines []string
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return explain(err)
		}
		c, err := audio.DecodeWAV(r.Audio.GetWav(), audio.Limits{})
		if err != nil {
			return fmt.Errorf("segment %d: %w", r.Segment, err)
		}
		all.Rate = c.Rate
		all.Samples = append(all.Samples, c.Samples...)
		lines = append(lines, fmt.Sprintf("segment %d: input %.2f-%.2f s -> %.2f s by %s", r.Segment, r.InputStartSeconds, r.InputEndSeconds, c.Seconds(), r.ModelVersion))
	}
	if err := <-sendErr; err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if all.Rate == 0 {
		return errors.New("the server found no speech in the input")
	}
	b, err := audio.EncodeWAV(all, audio.PCM16)
	if err != nil {
		return err
	}
	if err := os.WriteFile(o.out, b, 0o644); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n%s: %d segments, %.2f s\n", strings.Join(lines, "\n"), o.out, len(lines), all.Seconds())
	return err
}
