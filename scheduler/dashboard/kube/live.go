package kube

import (
	"log/slog"
	"sync"
	"time"
)

// liveState is what the Source remembers between polls: which agents
// failed their last scrape (so a dead agent is logged once, not on every
// poll) and the recent serving samples rates are computed from.
type liveState struct {
	mu       sync.Mutex
	agentErr map[string]string          // agent pod -> last scrape error
	serving  map[string][]servingSample // serving pod UID -> samples, oldest first
}

func newLiveState() *liveState {
	return &liveState{agentErr: map[string]string{}, serving: map[string][]servingSample{}}
}

// agentResult logs an agent's scrape failing or coming back, once per
// change.
func (l *liveState) agentResult(log *slog.Logger, pod, node string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, failed := l.agentErr[pod]
	switch {
	case err != nil && (!failed || prev != err.Error()):
		l.agentErr[pod] = err.Error()
		if !failed {
			log.Warn("dashboard: GPU agent not answering: its GPUs show no live figures", "pod", pod, "node", node, "err", err)
		}
	case err == nil && failed:
		delete(l.agentErr, pod)
		log.Info("dashboard: GPU agent answering again", "pod", pod, "node", node)
	}
}

// forgetAgents drops what is remembered of agent pods that are gone.
func (l *liveState) forgetAgents(present map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.agentErr {
		if !present[k] {
			delete(l.agentErr, k)
		}
	}
}

// forgetServing drops the samples of serving pods that are gone.
func (l *liveState) forgetServing(present map[string]bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := range l.serving {
		if !present[k] {
			delete(l.serving, k)
		}
	}
}

// addServing records a serving pod's sample and returns the sample to
// measure against: the newest one at least window before s or, when none
// is that old, the oldest kept; false when there is none before s.
func (l *liveState) addServing(pod string, s servingSample, window time.Duration) (servingSample, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.serving[pod]
	// Drop what is older than the window, but keep the newest of those as
	// the baseline when nothing within it is old enough: a page polled
	// less often than the window still gets a rate.
	cut := 0
	for cut < len(h)-1 && s.at.Sub(h[cut+1].at) >= window {
		cut++
	}
	h = h[cut:]
	var base servingSample
	ok := false
	if len(h) > 0 && s.at.After(h[0].at) {
		base, ok = h[0], true
	}
	// Many viewers poll at once: keep at most one sample per 1/16 window.
	if len(h) == 0 || s.at.Sub(h[len(h)-1].at) >= window/16 {
		h = append(h, s)
	}
	l.serving[pod] = h
	return base, ok
}
