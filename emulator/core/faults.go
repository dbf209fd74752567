package core

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Class separates reads from writes for quotas.
type Class int

const (
	Read Class = iota
	Write
)

func (c Class) String() string {
	if c == Write {
		return "write"
	}
	return "read"
}

// ClassOf guesses a method's class from its last name segment: Get*, List*,
// Search*, aggregatedList, wait, Wait*, Test* and testIamPermissions, and
// Pub/Sub's Pull, StreamingPull, Acknowledge and ModifyAckDeadline, and
// Secret Manager's AccessSecretVersion are reads.
func ClassOf(method string) Class {
	last := strings.ToLower(method[strings.LastIndex(method, ".")+1:])
	for _, p := range []string{"get", "list", "search", "aggregatedlist", "wait", "test", "pull", "streamingpull", "acknowledge", "modifyackdeadline", "accesssecretversion"} {
		if strings.HasPrefix(last, p) {
			return Read
		}
	}
	return Write
}

// APIOf names the API a method key belongs to, for quotas: "run", "compute",
// "serviceusage", "iap", "pubsub", "logging", "cloudresourcemanager"
// (long-running operations count as "run": only Cloud Run uses
// google.longrunning here).
func APIOf(method string) string {
	switch {
	case strings.HasPrefix(method, "google.cloud.run."), strings.HasPrefix(method, "google.longrunning."):
		return "run"
	case strings.HasPrefix(method, "google.cloud.asset."):
		return "cloudasset"
	case strings.HasPrefix(method, "google.cloud.resourcemanager."):
		return "cloudresourcemanager"
	case strings.HasPrefix(method, "google.pubsub."):
		return "pubsub"
	case strings.HasPrefix(method, "google.logging."):
		return "logging"
	case strings.HasPrefix(method, "google.cloud.secretmanager."):
		return "secretmanager"
	}
	api, _, _ := strings.Cut(method, ".")
	return api
}

// Faults injects latency, errors, quota exhaustion and etag races. Patterns
// are path.Match globs over method keys ("*", "compute.*",
// "google.cloud.run.v2.Services.UpdateService"). The zero configuration
// injects nothing.
type Faults struct {
	mu       sync.Mutex
	latency  []latencyRule
	errors   []errorRule
	failNext []failRule
	races    []failRule
	opFails  []failRule
	quotas   map[string]*quota // key api/class
	rnd      *rand.Rand
	// compute429 answers an exhausted Compute quota with 429
	// RESOURCE_EXHAUSTED instead of Google's documented 403.
	compute429 bool
}

type latencyRule struct {
	pattern string
	d       time.Duration
}

type errorRule struct {
	pattern string
	rate    float64
	code    codes.Code
}

type failRule struct {
	pattern string
	n       int
	code    codes.Code
}

type quota struct {
	perMinute int
	lim       *rate.Limiter
}

// NewFaults returns an empty fault configuration.
func NewFaults() *Faults {
	return &Faults{quotas: map[string]*quota{}, rnd: rand.New(rand.NewPCG(1, 2))}
}

// Seed makes injected error draws reproducible.
func (f *Faults) Seed(seed uint64) {
	f.mu.Lock()
	f.rnd = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	f.mu.Unlock()
}

// Reset removes every rule and quota.
func (f *Faults) Reset() {
	f.mu.Lock()
	f.latency, f.errors, f.failNext, f.races, f.opFails = nil, nil, nil, nil, nil
	f.quotas = map[string]*quota{}
	f.compute429 = false
	f.mu.Unlock()
}

// SetComputeQuotaStatus chooses the HTTP status of an exhausted Compute
// quota: 403 (the default, as Google documents for Compute rate quotas:
// 403 PERMISSION_DENIED with reason rateLimitExceeded) or 429 (RESOURCE_
// EXHAUSTED, the form other Google REST APIs use; clients must treat both
// as throttling). Other APIs always answer 429 / RESOURCE_EXHAUSTED.
func (f *Faults) SetComputeQuotaStatus(status int) error {
	if status != 403 && status != 429 {
		return fmt.Errorf("compute quota status %d: want 403 or 429", status)
	}
	f.mu.Lock()
	f.compute429 = status == 429
	f.mu.Unlock()
	return nil
}

// validPattern reports whether p is a valid method pattern (a path.Match glob).
func validPattern(p string) error {
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("pattern %q: %w", p, err)
	}
	return nil
}

// SetLatency delays every call matching pattern by d (0 removes the rule).
// The last matching rule wins.
func (f *Faults) SetLatency(pattern string, d time.Duration) error {
	if err := validPattern(pattern); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.latency = append(f.latency, latencyRule{pattern, d})
	return nil
}

// validCode rejects codes that are not errors: an injected OK would reach
// gRPC clients as a call without a response and REST clients as a 200
// carrying an error envelope.
func validCode(c codes.Code) error {
	if c == codes.OK || c > codes.Unauthenticated {
		return fmt.Errorf("code %v: want an error code", c)
	}
	return nil
}

// SetErrorRate fails a fraction rate (0..1) of calls matching pattern with
// code (not OK).
func (f *Faults) SetErrorRate(pattern string, rate float64, code codes.Code) error {
	if err := validPattern(pattern); err != nil {
		return err
	}
	if err := validCode(code); err != nil {
		return err
	}
	if rate < 0 || rate > 1 {
		return fmt.Errorf("error rate %v: want 0..1", rate)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, errorRule{pattern, rate, code})
	return nil
}

// FailNext fails the next n calls matching pattern with code (not OK).
func (f *Faults) FailNext(pattern string, n int, code codes.Code) error {
	return f.addFailRule(&f.failNext, pattern, n, code)
}

// addFailRule appends a rule failing n calls matching pattern with code
// to *rules.
func (f *Faults) addFailRule(rules *[]failRule, pattern string, n int, code codes.Code) error {
	if err := validPattern(pattern); err != nil {
		return err
	}
	if err := validCode(code); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	*rules = append(*rules, failRule{pattern: pattern, n: n, code: code})
	return nil
}

// ForceRaces makes the next n writes matching pattern lose an optimistic
// concurrency race: the surface changes the resource's etag/fingerprint (as a
// concurrent writer would) just before checking the caller's precondition, so
// a caller that sent one gets ABORTED / 412.
func (f *Faults) ForceRaces(pattern string, n int) error {
	if err := validPattern(pattern); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.races = append(f.races, failRule{pattern: pattern, n: n})
	return nil
}

// SetQuota limits calls of api ("run", "compute", ...) and class to
// perMinute, as a token bucket refilled continuously with a burst of
// perMinute (Google refills per minute; this is smoother). 0 removes it.
func (f *Faults) SetQuota(api string, class Class, perMinute int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := api + "/" + class.String()
	if perMinute <= 0 {
		delete(f.quotas, key)
		return
	}
	f.quotas[key] = &quota{perMinute: perMinute, lim: rate.NewLimiter(rate.Limit(float64(perMinute)/60), perMinute)}
}

// SetQuotaRate is SetQuota with an explicit per-second rate and burst, for
// benchmarks that cannot wait minutes.
func (f *Faults) SetQuotaRate(api string, class Class, perSecond float64, burst int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.quotas[api+"/"+class.String()] = &quota{perMinute: int(perSecond * 60), lim: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// TakeRace reports whether the current write to method must lose a race.
func (f *Faults) TakeRace(method string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.races {
		r := &f.races[i]
		if r.n > 0 && match(r.pattern, method) {
			r.n--
			return true
		}
	}
	return false
}

// FailOperations makes the next n Compute mutations matching pattern
// accepted but failed: the call answers a RUNNING operation (and writes its
// "first" audit entry), nothing changes, and the operation ends DONE with
// an error of code, its "last" audit entry carrying the error (severity
// ERROR, status), as a Compute operation that fails after it started does
// (internal/auditsamples/testdata/compute-instances-insert-last-error-ip-space-exhausted.json).
func (f *Faults) FailOperations(pattern string, n int, code codes.Code) error {
	return f.addFailRule(&f.opFails, pattern, n, code)
}

// TakeOperationFailure consumes one FailOperations rule matching method.
func (f *Faults) TakeOperationFailure(method string) (codes.Code, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.opFails {
		r := &f.opFails[i]
		if r.n > 0 && match(r.pattern, method) {
			r.n--
			return r.code, true
		}
	}
	return codes.OK, false
}

func match(pattern, method string) bool {
	ok, _ := path.Match(pattern, method)
	return ok
}

// check decides the fate of one call: the delay to apply and the error to
// return (nil: serve it).
func (f *Faults) check(method string) (time.Duration, *Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var delay time.Duration
	for _, r := range f.latency {
		if match(r.pattern, method) {
			delay = r.d
		}
	}
	for i := range f.failNext {
		r := &f.failNext[i]
		if r.n > 0 && match(r.pattern, method) {
			r.n--
			return delay, injected(r.code, method)
		}
	}
	for _, r := range f.errors {
		if match(r.pattern, method) && f.rnd.Float64() < r.rate {
			return delay, injected(r.code, method)
		}
	}
	api, class := APIOf(method), ClassOf(method)
	if q := f.quotas[api+"/"+class.String()]; q != nil && !q.lim.Allow() {
		what := "Read requests"
		if class == Write {
			what = "Write requests"
		}
		code := codes.ResourceExhausted
		if api == "compute" && !f.compute429 {
			// Compute: "If your project exceeds a rate quota, you receive
			// a 403 error with the reason rateLimitExceeded".
			code = codes.PermissionDenied
		}
		return delay, &Error{
			Code:     code,
			Reason:   "rateLimitExceeded",
			Injected: true,
			Message: fmt.Sprintf("Quota exceeded for quota metric '%s' and limit '%s per minute' of service '%s.googleapis.com'.",
				what, what, api),
		}
	}
	return delay, nil
}

func injected(code codes.Code, method string) *Error {
	msg := "The service is currently unavailable."
	switch code {
	case codes.ResourceExhausted:
		msg = "Quota exceeded (injected)."
	case codes.Internal:
		msg = "Internal error encountered."
	case codes.DeadlineExceeded:
		msg = "Deadline exceeded."
	case codes.Aborted:
		msg = "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff."
	case codes.PermissionDenied:
		msg = fmt.Sprintf("Permission denied on %s (injected).", method)
	}
	return &Error{Code: code, Message: msg, Injected: true}
}

// Begin accounts for one call of method and applies the configured faults:
// it counts the call, waits the injected latency (or until ctx ends: then it
// returns CANCELLED or DEADLINE_EXCEEDED as ctx says) and returns an
// injected *Error or nil. Every surface calls it exactly once per
// request, before doing anything else.
func (c *Core) Begin(ctx context.Context, method string) error {
	c.Stats.incCall(c.PrincipalFrom(ctx), method)
	delay, err := c.Faults.check(method)
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			c.Stats.incFault(method)
			return &Error{Code: status.FromContextError(ctx.Err()).Code(), Message: ctx.Err().Error(), Injected: true}
		}
	}
	if err != nil {
		c.Stats.incFault(method)
		return err
	}
	return nil
}
