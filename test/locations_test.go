package test

import (
	"testing"

	"github.com/iapguard/iapguard/emulator"
	"github.com/iapguard/iapguard/eventarc"
	"github.com/iapguard/iapguard/internal/demo"
	"github.com/iapguard/iapguard/internal/stack"
)

// The Eventarc stand-in applies trigger locations in these end-to-end tests
// (stack.FunctionRegion): an audit-log trigger receives the entries of
// resources in its own location, and "global" receives them all (#14 item
// 3). With eventarc/triggers.yaml as deployed, a service in another region
// than the function's is reached and converges.
func TestServiceInAnotherRegionIsReached(t *testing.T) {
	t.Parallel()
	const other = "europe-west1"
	e := newEnv(t, stack.Options{})
	if _, err := e.cl.CreateService(e.ctx, e.p, other, demo.ServiceSpec{Name: "far", Public: true}); err != nil {
		t.Fatal(err)
	}
	e.mark()
	if err := e.cl.SetLabels(e.ctx, e.p, other, "far", enabled); err != nil {
		t.Fatal(err)
	}
	e.settle()
	if m := e.byUser("far"); m.Outcome != "remediated" {
		t.Errorf("outcome of the label change on a service in %s = %s (%s), want remediated", other, m.Outcome, m.Reason)
	}
}

// The same change with the Cloud Run triggers in the function's region
// ("region") is not delivered: a wrong location in triggers.yaml fails here,
// as it would never fire in production.
func TestRegionalTriggerDoesNotSeeOtherRegions(t *testing.T) {
	t.Parallel()
	const other = "europe-west1"
	triggers, err := eventarc.Load()
	if err != nil {
		t.Fatal(err)
	}
	for i := range triggers {
		if triggers[i].ServiceName == "run.googleapis.com" {
			triggers[i].Location = "region"
		}
	}
	e := newEnv(t, stack.Options{Emulator: emulator.Options{Triggers: triggers}})
	if _, err := e.cl.CreateService(e.ctx, e.p, other, demo.ServiceSpec{Name: "far", Public: true}); err != nil {
		t.Fatal(err)
	}
	e.create(demo.ServiceSpec{Name: "near", Public: true})
	e.mark()
	if err := e.cl.SetLabels(e.ctx, e.p, other, "far", enabled); err != nil {
		t.Fatal(err)
	}
	e.label("near", enabled)
	e.settle()
	if got := e.st.Outcomes.ForService("far"); len(got) != 0 {
		t.Errorf("a regional trigger in %s delivered %d events about a service in %s", stack.FunctionRegion, len(got), other)
	}
	if got := e.kinds("near"); len(got) == 0 {
		t.Errorf("no outcome for the service in the trigger's own region")
	}
}
