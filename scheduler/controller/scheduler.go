package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"babelfish.dev/babelfish/api/v1alpha1"
)

// Scheduler is the Kubernetes scheduler of TrainingJobs. Create it with
// New and run it with Run; it is not reusable after Run returns.
type Scheduler struct {
	opts     Options
	log      *slog.Logger
	cs       kubernetes.Interface // core types, protobuf
	crd      *crdClient           // Babelfish types; uncached
	meta     metadata.Interface   // watches that wake the loop
	scheme   *runtime.Scheme
	rec      events.EventRecorder
	metrics  *metrics
	identity string
	kick     chan struct{}
	passes   int
}

// NewScheme returns a scheme with the Kubernetes types and Babelfish's.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// New builds a scheduler for the cluster cfg points at. Nothing runs until
// Run.
func New(cfg *rest.Config, opts Options) (*Scheduler, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	scheme, err := NewScheme()
	if err != nil {
		return nil, fmt.Errorf("scheduler: scheme: %w", err)
	}
	// The core types travel as protobuf: a pass lists every node and pod.
	pcfg := rest.CopyConfig(cfg)
	pcfg.ContentType = "application/vnd.kubernetes.protobuf"
	pcfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(pcfg)
	if err != nil {
		return nil, fmt.Errorf("scheduler: clientset: %w", err)
	}
	crd, err := newCRDClient(cfg, scheme)
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("scheduler: metadata client: %w", err)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	id := o.Identity
	if id == "" {
		host, _ := os.Hostname()
		id = host + "_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	return &Scheduler{
		opts: o, log: o.Logger, cs: cs, crd: crd, meta: meta, scheme: scheme,
		metrics: m, identity: id, kick: make(chan struct{}, 1),
	}, nil
}

// Run schedules until ctx ends. With leader election it first waits to
// lead; it returns an error if it loses the lease while leading, so the
// process can exit and start afresh. A pass in flight when ctx ends is cut
// short (its API calls fail); what it left is finished by the next leader.
func (s *Scheduler) Run(ctx context.Context) error {
	log := s.log.With("identity", s.identity)
	log.Info("scheduler starting", "policy", s.opts.Policy, "namespace", s.opts.Namespace,
		"leader_election", s.opts.LeaderElection, "lease", s.opts.LeaseNamespace+"/"+s.opts.LeaseName)

	bc := events.NewBroadcaster(&events.EventSinkImpl{Interface: s.cs.EventsV1()})
	if err := bc.StartRecordingToSinkWithContext(ctx); err != nil {
		return fmt.Errorf("scheduler: events: %w", err)
	}
	defer bc.Shutdown()
	s.rec = bc.NewRecorder(s.scheme, s.opts.SchedulerName+"-scheduler")

	if err := s.watch(ctx); err != nil {
		return err
	}
	if !s.opts.LeaderElection {
		return s.loop(ctx)
	}

	// The elector's context outlives ctx until the loop has stopped, so
	// the lease is given up only when no write of ours is in flight.
	leCtx, leCancel := context.WithCancel(context.WithoutCancel(ctx))
	defer leCancel()
	var (
		mu      sync.Mutex
		closed  bool // no loop may start any more
		running sync.WaitGroup
		loopErr error
	)
	closeAndWait := func() {
		mu.Lock()
		closed = true
		mu.Unlock()
		running.Wait()
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: s.opts.LeaseName, Namespace: s.opts.LeaseNamespace},
			Client:     s.cs.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: s.identity},
		},
		LeaseDuration:   s.opts.LeaseDuration,
		RenewDeadline:   s.opts.RenewDeadline,
		RetryPeriod:     s.opts.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            s.opts.LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				mu.Lock()
				if closed || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				running.Add(1)
				mu.Unlock()
				defer running.Done()
				loopCtx, cancel := context.WithCancel(lctx)
				defer cancel()
				stop := context.AfterFunc(ctx, cancel)
				defer stop()
				if err := s.loop(loopCtx); err != nil {
					mu.Lock()
					loopErr = err
					mu.Unlock()
				}
			},
			OnStoppedLeading: func() { log.Info("not leading") },
		},
	})
	if err != nil {
		return fmt.Errorf("scheduler: leader election: %w", err)
	}
	go func() {
		select {
		case <-ctx.Done():
			closeAndWait()
			leCancel()
		case <-leCtx.Done():
		}
	}()
	le.Run(leCtx)
	closeAndWait()
	mu.Lock()
	defer mu.Unlock()
	if loopErr != nil {
		return loopErr
	}
	if ctx.Err() == nil {
		return errors.New("scheduler: lost the leader lease")
	}
	return nil
}

// watch starts informers whose only job is to wake the loop: every pass
// reads the API server itself.
func (s *Scheduler) watch(ctx context.Context) error {
	handler := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.poke() },
		UpdateFunc: func(any, any) { s.poke() },
		DeleteFunc: func(any) { s.poke() },
	}
	// Metadata-only watches: a wake-up needs no more, and decoding whole
	// pods and nodes on every binding would cost the loop CPU.
	sel := func(selector string) metadatainformer.TweakListOptionsFunc {
		return func(o *metav1.ListOptions) { o.LabelSelector = selector }
	}
	gv := v1alpha1.GroupVersion
	var factories []metadatainformer.SharedInformerFactory
	for _, w := range []struct {
		res       schema.GroupVersionResource
		namespace string
		tweak     metadatainformer.TweakListOptionsFunc
	}{
		{corev1.SchemeGroupVersion.WithResource("nodes"), "", sel(s.opts.NodeSelector)},
		{corev1.SchemeGroupVersion.WithResource("pods"), s.opts.Namespace, sel(LabelJob)},
		{gv.WithResource(resTrainingJobs), s.opts.Namespace, nil},
		{gv.WithResource(resQueues), "", nil},
	} {
		f := metadatainformer.NewFilteredSharedInformerFactory(s.meta, 0, w.namespace, w.tweak)
		if _, err := f.ForResource(w.res).Informer().AddEventHandler(handler); err != nil {
			return fmt.Errorf("scheduler: event handler for %s: %w", w.res.Resource, err)
		}
		f.Start(ctx.Done())
		factories = append(factories, f)
	}
	go func() {
		<-ctx.Done()
		for _, f := range factories {
			f.Shutdown()
		}
	}()
	return nil
}

// loop is the scheduling loop: a pass on every batch of events, at least
// every Resync, and when a backoff ends.
func (s *Scheduler) loop(ctx context.Context) error {
	s.log.Info("scheduling loop starts", "identity", s.identity)
	defer s.log.Info("scheduling loop stops", "identity", s.identity)
	s.poke()
	timer := time.NewTimer(s.opts.Resync)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-timer.C:
		}
		stats, wake := s.pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		next := s.opts.Resync
		if !wake.IsZero() {
			next = min(next, max(time.Until(wake), s.opts.MinInterval))
		}
		if stats.Err != nil {
			s.log.Warn("scheduling pass failed; retrying", "pass", stats.Pass, "err", stats.Err)
			next = min(next, time.Second)
		}
		timer.Reset(next)
		if s.opts.AfterPass != nil {
			s.opts.AfterPass(stats)
		}
		// Let events gather, so that a burst is one pass.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.opts.MinInterval):
		}
	}
}

func (s *Scheduler) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// event records an Event about a job.
func (s *Scheduler) event(j *v1alpha1.TrainingJob, related *v1alpha1.TrainingJob, e event) {
	typ := corev1.EventTypeNormal
	if e.warning {
		typ = corev1.EventTypeWarning
	}
	var rel runtime.Object
	if related != nil {
		rel = related
	}
	s.rec.Eventf(j, rel, typ, e.reason, "Schedule", "%s", e.note)
}

// errorsJoin keeps the first few errors of a pass.
func errorsJoin(errs []error) error {
	if len(errs) > 5 {
		errs = append(errs[:5:5], fmt.Errorf("and %d more errors", len(errs)-5))
	}
	return errors.Join(errs...)
}
