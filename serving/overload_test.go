package serving

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	babelfishv1 "babelfish.dev/babelfish/api/babelfish/v1"
	"babelfish.dev/babelfish/serving/batcher"
)

// Overload: with the queue full, excess requests are rejected with
// RESOURCE_EXHAUSTED and a RetryInfo in under 5 ms, requests keep being
// served meanwhile, and the service recovers once the load drops.
func TestOverloadShedsFastAndRecovers(t *testing.T) {
	st := newStore(t)
	promote(t, st, "s2ut", tinyModel(t, 3, 16), 1)
	lim := testLimits()
	lim.MaxOutputSeconds = 1
	ts := startServer(t, st, "s2ut", false, WithLimits(lim),
		WithBatching(batcher.Config{MaxBatch: 1, MaxQueue: 4, Instances: 1}))
	var server []time.Duration
	var smu sync.Mutex
	ts.onReject = func(d time.Duration) { smu.Lock(); server = append(server, d); smu.Unlock() }
	<-ts.Ready()
	wav := wavOf(t, speech(16000, 0.5, 3))
	req := &babelfishv1.TranslateRequest{Audio: &babelfishv1.Audio{Wav: wav}, TargetLanguage: "de"}

	const clients = 24
	ctx, stop := context.WithTimeout(context.Background(), 3*time.Second)
	defer stop()
	var mu sync.Mutex
	var rejected []time.Duration
	served, other := 0, []error{}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for ctx.Err() == nil {
				t0 := time.Now()
				_, err := ts.client.Translate(context.Background(), req)
				took := time.Since(t0)
				mu.Lock()
				switch status.Code(err) {
				case codes.OK:
					served++
				case codes.ResourceExhausted:
					rejected = append(rejected, took)
					if !hasRetryInfo(err) {
						other = append(other, err)
					}
				default:
					other = append(other, err)
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(2 * time.Millisecond) // a client that backs off a little
				}
			}
		})
	}
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("%d unexpected errors (or rejections without RetryInfo), e.g. %v", len(other), other[0])
	}
	if len(rejected) < clients || served == 0 {
		t.Fatalf("%d served, %d rejected: want the queue overrun and work still done", served, len(rejected))
	}
	slices.Sort(rejected)
	smu.Lock()
	slices.Sort(server)
	sp50, sp99 := server[len(server)/2], server[len(server)*99/100]
	smu.Unlock()
	t.Logf("%d served, %d rejected; server time to reject p50 %v p99 %v; client round trip p50 %v p99 %v",
		served, len(rejected), sp50, sp99, rejected[len(rejected)/2], rejected[len(rejected)*99/100])
	if bound := 5 * time.Millisecond * raceSlowdown; sp99 > bound {
		t.Fatalf("server took p99 %v to reject, want < %v", sp99, bound)
	}
	// Recovery: once the flood stops, requests are served again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := ts.client.Translate(context.Background(), req)
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("after the flood: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func hasRetryInfo(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.RetryDelay.AsDuration() > 0 {
			return true
		}
	}
	return false
}
