package cloudrun

import (
	"maps"
	"time"

	"github.com/iapguard/iapguard/emulator/core"
)

// Change is one stored version of a service, as other emulator surfaces
// (the Cloud Asset Inventory index) see it: written when a service is
// created, updated, seeded or deleted. Labels is a copy.
type Change struct {
	Project    core.Project
	Region     string
	ID         string
	Labels     map[string]string
	CreateTime time.Time
	UpdateTime time.Time
	// Deleted marks the deletion of the service.
	Deleted bool
	// At is when the change was stored (the emulator's clock).
	At time.Time
}

// Watch calls f with every change stored from now on, under the server's
// lock: f must be quick and must not call back into the server. Changes
// of one service arrive in the order they were stored.
func (s *Server) Watch(f func(Change)) {
	s.mu.Lock()
	s.watchers = append(s.watchers, f)
	s.mu.Unlock()
}

// Each calls f with the current version of every stored service (At is
// now), under the server's lock, for a watcher to start from.
func (s *Server) Each(f func(Change)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.settleLocked()
	now := s.c.Now()
	for _, e := range s.services {
		f(changeOf(e, false, now))
	}
}

func changeOf(e *entry, deleted bool, now time.Time) Change {
	return Change{
		Project: e.project, Region: e.region, ID: e.id, Labels: maps.Clone(e.svc.GetLabels()),
		CreateTime: e.svc.GetCreateTime().AsTime(), UpdateTime: e.svc.GetUpdateTime().AsTime(),
		Deleted: deleted, At: now,
	}
}

// notifyLocked tells the watchers about e's new version (or its deletion).
func (s *Server) notifyLocked(e *entry, deleted bool, now time.Time) {
	if len(s.watchers) == 0 {
		return
	}
	c := changeOf(e, deleted, now)
	for _, f := range s.watchers {
		f(c)
	}
}
