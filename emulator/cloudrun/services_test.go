package cloudrun

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/iterator"
	"google.golang.org/genproto/googleapis/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

func TestCreateServiceDefaults(t *testing.T) {
	h := newHarness(t, Options{})
	got := h.create(t, "hello", nil)

	want := &runpb.Service{
		Name:               svcName(testProject, "hello"),
		Generation:         1,
		ObservedGeneration: 1,
		Labels:             map[string]string{"iap": "enabled"},
		Creator:            testCaller,
		LastModifier:       testCaller,
		Ingress:            runpb.IngressTraffic_INGRESS_TRAFFIC_ALL,
		LaunchStage:        api.LaunchStage_GA,
		Template: &runpb.RevisionTemplate{
			Timeout:                       durationpb.New(300 * time.Second),
			MaxInstanceRequestConcurrency: 80,
			ServiceAccount:                testNumberStr + "-compute@developer.gserviceaccount.com",
			// As Google answered a create of one container without
			// resources, ports or probes (k8s-config-connector's recorded
			// cassette of runservicebasic).
			Containers: []*runpb.Container{{
				Image:     "us-docker.pkg.dev/cloudrun/container/hello",
				Resources: &runpb.ResourceRequirements{Limits: map[string]string{"cpu": "1000m", "memory": "512Mi"}, CpuIdle: true},
				Ports:     []*runpb.ContainerPort{{Name: "http1", ContainerPort: 8080}},
				StartupProbe: &runpb.Probe{TimeoutSeconds: 240, PeriodSeconds: 240, FailureThreshold: 1,
					ProbeType: &runpb.Probe_TcpSocket{TcpSocket: &runpb.TCPSocketAction{Port: 8080}}},
			}},
		},
		Traffic: []*runpb.TrafficTarget{{Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, Percent: 100}},
		TrafficStatuses: []*runpb.TrafficTargetStatus{{
			Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, Percent: 100,
		}},
		TerminalCondition: &runpb.Condition{Type: "Ready", State: runpb.Condition_CONDITION_SUCCEEDED},
		Conditions: []*runpb.Condition{
			{Type: "RoutesReady", State: runpb.Condition_CONDITION_SUCCEEDED},
			{Type: "ConfigurationsReady", State: runpb.Condition_CONDITION_SUCCEEDED},
		},
	}
	volatile := protocmp.IgnoreFields(&runpb.Service{}, "uid", "create_time", "update_time", "etag",
		"latest_ready_revision", "latest_created_revision", "uri", "urls")
	if diff := cmp.Diff(want, got, protocmp.Transform(), volatile,
		protocmp.IgnoreFields(&runpb.Condition{}, "last_transition_time")); diff != "" {
		t.Errorf("created service mismatch (-want +got):\n%s", diff)
	}

	checks := []struct {
		name, value string
		re          string
	}{
		{"uid", got.GetUid(), `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`},
		{"etag", got.GetEtag(), `^"[A-Za-z0-9+/=]+"$`},
		{"latest_created_revision", got.GetLatestCreatedRevision(), `^` + regexp.QuoteMeta(svcName(testProject, "hello")) + `/revisions/hello-00001-[a-z]{3}$`},
		{"uri", got.GetUri(), `^https://hello-[a-z0-9]{10}-uc\.a\.run\.app$`},
	}
	for _, c := range checks {
		if !regexp.MustCompile(c.re).MatchString(c.value) {
			t.Errorf("%s = %q, want match of %s", c.name, c.value, c.re)
		}
	}
	if got.GetLatestReadyRevision() != got.GetLatestCreatedRevision() {
		t.Errorf("latest_ready_revision %q != latest_created_revision %q", got.GetLatestReadyRevision(), got.GetLatestCreatedRevision())
	}
	if diff := cmp.Diff([]string{"https://hello-" + testNumberStr + ".us-central1.run.app", got.GetUri()}, got.GetUrls()); diff != "" {
		t.Errorf("urls mismatch (-want +got):\n%s", diff)
	}
	if got.GetCreateTime() == nil || !got.GetCreateTime().AsTime().Equal(got.GetUpdateTime().AsTime()) {
		t.Errorf("create_time %v, update_time %v: want both set and equal", got.GetCreateTime(), got.GetUpdateTime())
	}
	if diff := cmp.Diff(got, h.get(t, "hello"), protocmp.Transform()); diff != "" {
		t.Errorf("GetService differs from the operation response (-op +get):\n%s", diff)
	}
	if !h.srv.ServiceExists(testProject, testRegion, "hello") || !h.srv.ServiceExists(testNumberStr, testRegion, "hello") {
		t.Error("ServiceExists = false for the created service")
	}
	if h.srv.ServiceExists(testProject, "europe-west1", "hello") {
		t.Error("ServiceExists = true in another region")
	}
}

func TestCreateServiceGeneratesID(t *testing.T) {
	h := newHarness(t, Options{LRO: LROImmediate})
	op, err := h.client.CreateService(ctxT(t), &runpb.CreateServiceRequest{Parent: parent(testProject), Service: minimalService()})
	if err != nil {
		t.Fatalf("CreateService without service_id: %v", err)
	}
	got, err := op.Wait(ctxT(t))
	if err != nil {
		t.Fatalf("waiting: %v", err)
	}
	id := got.GetName()[strings.LastIndex(got.GetName(), "/")+1:]
	if err := checkServiceID("id", id); err != nil {
		t.Errorf("generated id %q is not a valid service id: %v", id, err)
	}
}

func TestCreateServiceErrors(t *testing.T) {
	withLabels := func(l map[string]string) *runpb.Service {
		s := minimalService()
		s.Labels = l
		return s
	}
	manyLabels := map[string]string{}
	for i := range 65 {
		manyLabels[fmt.Sprintf("k%d", i)] = "v"
	}
	tests := []struct {
		name      string
		req       *runpb.CreateServiceRequest
		code      codes.Code
		fragments []string
	}{
		{"already exists", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "taken", Service: minimalService()}, codes.AlreadyExists, []string{"taken", "already exists"}},
		{"already exists by project number", &runpb.CreateServiceRequest{Parent: parent(testNumberStr), ServiceId: "taken", Service: minimalService()}, codes.AlreadyExists, []string{"projects/" + testNumberStr}},
		{"unknown project", &runpb.CreateServiceRequest{Parent: parent("nope-project"), ServiceId: "a", Service: minimalService()}, codes.PermissionDenied, []string{"Permission denied on resource project nope-project."}},
		{"malformed parent", &runpb.CreateServiceRequest{Parent: "projects/" + testProject, ServiceId: "a", Service: minimalService()}, codes.InvalidArgument, []string{"parent"}},
		{"bad region", &runpb.CreateServiceRequest{Parent: "projects/" + testProject + "/locations/global", ServiceId: "a", Service: minimalService()}, codes.InvalidArgument, []string{"parent", "global"}},
		{"service id uppercase", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "Hello", Service: minimalService()}, codes.InvalidArgument, []string{"service_id"}},
		{"service id starts with digit", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "1hello", Service: minimalService()}, codes.InvalidArgument, []string{"service_id"}},
		{"service id ends with hyphen", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "hello-", Service: minimalService()}, codes.InvalidArgument, []string{"service_id"}},
		{"service id 50 chars", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a" + strings.Repeat("b", 49), Service: minimalService()}, codes.InvalidArgument, []string{"service_id"}},
		{"service missing", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a"}, codes.InvalidArgument, []string{"service"}},
		{"template missing", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: &runpb.Service{}}, codes.InvalidArgument, []string{"service.template"}},
		{"image missing", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: &runpb.Service{Template: &runpb.RevisionTemplate{Containers: []*runpb.Container{{}}}}}, codes.InvalidArgument, []string{"service.template.containers[0].image"}},
		{"label key uppercase", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: withLabels(map[string]string{"IAP": "enabled"})}, codes.InvalidArgument, []string{"service.labels", "Label key 'IAP'"}},
		{"label value with dot", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: withLabels(map[string]string{"version": "v4.1.2"})}, codes.InvalidArgument, []string{"service.labels", "Label value 'v4.1.2'"}},
		{"label value too long", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: withLabels(map[string]string{"k": strings.Repeat("v", 64)})}, codes.InvalidArgument, []string{"service.labels"}},
		{"65 labels", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: withLabels(manyLabels)}, codes.InvalidArgument, []string{"service.labels", "64"}},
		{"reserved label namespace", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: withLabels(map[string]string{"cloud.googleapis.com/location": "x"})}, codes.InvalidArgument, []string{"service.labels", "cloud.googleapis.com"}},
		{"reserved annotation namespace", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: func() *runpb.Service {
			s := minimalService()
			s.Annotations = map[string]string{"run.googleapis.com/ingress": "all"}
			return s
		}()}, codes.InvalidArgument, []string{"service.annotations", "run.googleapis.com"}},
		{"reserved template annotation namespace", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: func() *runpb.Service {
			s := minimalService()
			s.Template.Annotations = map[string]string{"autoscaling.knative.dev/maxScale": "3"}
			return s
		}()}, codes.InvalidArgument, []string{"service.template.annotations"}},
		{"ingress out of range", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: func() *runpb.Service {
			s := minimalService()
			s.Ingress = 99
			return s
		}()}, codes.InvalidArgument, []string{"service.ingress", "99"}},
		{"launch stage out of range", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: func() *runpb.Service {
			s := minimalService()
			s.LaunchStage = 42
			return s
		}()}, codes.InvalidArgument, []string{"service.launch_stage"}},
		{"traffic not 100", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: func() *runpb.Service {
			s := minimalService()
			s.Traffic = []*runpb.TrafficTarget{{Type: runpb.TrafficTargetAllocationType_TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST, Percent: 50}}
			return s
		}()}, codes.InvalidArgument, []string{"service.traffic"}},
		{"description too long", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: func() *runpb.Service {
			s := minimalService()
			s.Description = strings.Repeat("d", 513)
			return s
		}()}, codes.InvalidArgument, []string{"service.description"}},
		{"revision name without service prefix", &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "a", Service: func() *runpb.Service {
			s := minimalService()
			s.Template.Revision = "other-rev"
			return s
		}()}, codes.InvalidArgument, []string{"service.template.revision"}},
	}
	h := newHarness(t, Options{})
	h.create(t, "taken", nil)
	before := h.auditCount()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.CreateService(ctxT(t), tt.req)
			wantCode(t, err, tt.code, tt.fragments...)
		})
	}
	// Refusals of what was asked are logged as failed calls; malformed
	// names and unknown projects are not (there is nothing to log in).
	checkRejectedEntries(t, h, before, 22)
	if h.srv.ServiceExists(testProject, testRegion, "a") {
		t.Error("a rejected create stored a service")
	}
}

func TestCreateServiceAcceptsForeignNamespaces(t *testing.T) {
	h := newHarness(t, Options{})
	s := minimalService()
	s.Annotations = map[string]string{"iapguard.dev/managed": "true", "example.com/x": "y"}
	s.Labels = map[string]string{"iap": "enabled", "team": "ünïcode", "empty": ""}
	got := h.create(t, "annotated", s)
	if diff := cmp.Diff(s.Annotations, got.GetAnnotations()); diff != "" {
		t.Errorf("annotations mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(s.Labels, got.GetLabels()); diff != "" {
		t.Errorf("labels mismatch (-want +got):\n%s", diff)
	}
}

func TestGetService(t *testing.T) {
	h := newHarness(t, Options{})
	created := h.create(t, "hello", nil)
	tests := []struct {
		name     string
		req      string
		code     codes.Code
		wantName string
		wantRev  string
	}{
		{"by project id", svcName(testProject, "hello"), codes.OK, svcName(testProject, "hello"), created.GetLatestReadyRevision()},
		{"by project number echoes number", svcName(testNumberStr, "hello"), codes.OK, svcName(testNumberStr, "hello"),
			strings.Replace(created.GetLatestReadyRevision(), testProject, testNumberStr, 1)},
		{"missing", svcName(testProject, "nope"), codes.NotFound, "", ""},
		{"other region", "projects/" + testProject + "/locations/europe-west1/services/hello", codes.NotFound, "", ""},
		{"unknown project", svcName("ghost-project", "hello"), codes.PermissionDenied, "", ""},
		{"malformed name", "projects/" + testProject + "/services/hello", codes.InvalidArgument, "", ""},
		{"bad service id", svcName(testProject, "Hello"), codes.InvalidArgument, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := h.client.GetService(ctxT(t), &runpb.GetServiceRequest{Name: tt.req})
			wantCode(t, err, tt.code)
			if err != nil {
				return
			}
			if got.GetName() != tt.wantName || got.GetLatestReadyRevision() != tt.wantRev {
				t.Errorf("name, latest_ready_revision = %q, %q; want %q, %q", got.GetName(), got.GetLatestReadyRevision(), tt.wantName, tt.wantRev)
			}
		})
	}
	t.Run("not found message names the service", func(t *testing.T) {
		_, err := h.client.GetService(ctxT(t), &runpb.GetServiceRequest{Name: svcName(testProject, "nope")})
		wantCode(t, err, codes.NotFound, `service "`+svcName(testProject, "nope")+`" not found`)
	})
}

func TestListServices(t *testing.T) {
	h := newHarness(t, Options{LRO: LROImmediate})
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h.c.SetNow(func() time.Time { return clock })
	create := func(project, region, id string) {
		t.Helper()
		_, err := h.client.CreateService(ctxT(t), &runpb.CreateServiceRequest{
			Parent: "projects/" + project + "/locations/" + region, ServiceId: id, Service: minimalService(),
		})
		if err != nil {
			t.Fatalf("CreateService(%s/%s/%s): %v", project, region, id, err)
		}
		clock = clock.Add(time.Second)
	}
	for _, id := range []string{"s1", "s2", "s3", "s4", "s5"} {
		create(testProject, testRegion, id)
	}
	create(testProject, "europe-west1", "eu1")
	create("other-project", testRegion, "foreign")

	list := func(t *testing.T, parent string, pageSize int) ([]string, int) {
		t.Helper()
		it := h.client.ListServices(ctxT(t), &runpb.ListServicesRequest{Parent: parent})
		var names []string
		pages := 0
		if pageSize == 0 { // server default page size: plain iteration
			var last any
			for {
				s, err := it.Next()
				if err == iterator.Done {
					return names, max(pages, 1)
				}
				if err != nil {
					t.Fatalf("ListServices(%s): %v", parent, err)
				}
				if it.Response != last {
					pages, last = pages+1, it.Response
				}
				names = append(names, s.GetName())
			}
		}
		p := iterator.NewPager(it, pageSize, "")
		for {
			var page []*runpb.Service
			tok, err := p.NextPage(&page)
			if err != nil {
				t.Fatalf("ListServices(%s): %v", parent, err)
			}
			pages++
			for _, s := range page {
				names = append(names, s.GetName())
			}
			if tok == "" {
				return names, pages
			}
		}
	}
	tests := []struct {
		name      string
		parent    string
		pageSize  int
		want      []string
		wantPages int
	}{
		{"one region newest first", parent(testProject), 0, []string{"s5", "s4", "s3", "s2", "s1"}, 1},
		{"paged by two", parent(testProject), 2, []string{"s5", "s4", "s3", "s2", "s1"}, 3},
		{"other region", "projects/" + testProject + "/locations/europe-west1", 0, []string{"eu1"}, 1},
		{"project number echoed", parent(testNumberStr), 5, []string{"s5", "s4", "s3", "s2", "s1"}, 1},
		{"empty region", "projects/" + testProject + "/locations/asia-east1", 0, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			names, pages := list(t, tt.parent, tt.pageSize)
			var want []string
			for _, id := range tt.want {
				region := testRegion
				if id == "eu1" {
					region = "europe-west1"
				}
				proj := testProject
				if strings.Contains(tt.parent, testNumberStr) {
					proj = testNumberStr
				}
				want = append(want, "projects/"+proj+"/locations/"+region+"/services/"+id)
			}
			if diff := cmp.Diff(want, names); diff != "" {
				t.Errorf("listed names mismatch (-want +got):\n%s", diff)
			}
			if pages != tt.wantPages {
				t.Errorf("pages = %d, want %d", pages, tt.wantPages)
			}
		})
	}

	errs := []struct {
		name string
		req  *runpb.ListServicesRequest
		code codes.Code
	}{
		{"bad page token", &runpb.ListServicesRequest{Parent: parent(testProject), PageToken: "garbage"}, codes.InvalidArgument},
		{"token of another parent", &runpb.ListServicesRequest{Parent: parent(testProject), PageToken: pageToken{parent: "projects/other-project/locations/us-central1"}.encode()}, codes.InvalidArgument},
		{"negative page size", &runpb.ListServicesRequest{Parent: parent(testProject), PageSize: -1}, codes.InvalidArgument},
		{"unknown project", &runpb.ListServicesRequest{Parent: parent("ghost-project")}, codes.PermissionDenied},
		{"malformed parent", &runpb.ListServicesRequest{Parent: "projects/" + testProject}, codes.InvalidArgument},
		// The v2 parent comment: "cannot be the "-" wildcard" (issue #18).
		{"location wildcard", &runpb.ListServicesRequest{Parent: "projects/" + testProject + "/locations/-"}, codes.InvalidArgument},
		{"location wildcard by number", &runpb.ListServicesRequest{Parent: "projects/" + testNumberStr + "/locations/-", PageSize: 1}, codes.InvalidArgument},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.ListServices(ctxT(t), tt.req).Next()
			wantCode(t, err, tt.code)
		})
	}
}

func TestUpdateServiceMask(t *testing.T) {
	type result struct {
		labels      map[string]string
		annotations map[string]string
		ingress     runpb.IngressTraffic
		iap         bool
		invokerOff  bool
		image       string
		minInst     int32
		newRevision bool
	}
	base := func() *runpb.Service {
		s := minimalService()
		s.Labels = map[string]string{"iap": "enabled", "team": "a"}
		s.Annotations = map[string]string{"iapguard.dev/managed": "true"}
		return s
	}
	baseResult := result{
		labels:      map[string]string{"iap": "enabled", "team": "a"},
		annotations: map[string]string{"iapguard.dev/managed": "true"},
		ingress:     runpb.IngressTraffic_INGRESS_TRAFFIC_ALL,
		image:       "us-docker.pkg.dev/cloudrun/container/hello",
	}
	// Every request carries the same changed body; the mask decides.
	body := func(name string) *runpb.Service {
		return &runpb.Service{
			Name:               name,
			Labels:             map[string]string{"iap": "disabled"},
			Ingress:            runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER,
			IapEnabled:         true,
			InvokerIamDisabled: true,
			Scaling:            &runpb.ServiceScaling{MinInstanceCount: 2},
			Template: &runpb.RevisionTemplate{
				Containers: []*runpb.Container{{Image: "us-docker.pkg.dev/cloudrun/container/hello:v2"}},
			},
		}
	}
	tests := []struct {
		name  string
		paths []string
		want  func(r result) result
	}{
		{"labels only", []string{"labels"}, func(r result) result { r.labels = map[string]string{"iap": "disabled"}; return r }},
		{"ingress only", []string{"ingress"}, func(r result) result {
			r.ingress = runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER
			return r
		}},
		{"iap_enabled only", []string{"iap_enabled"}, func(r result) result { r.iap = true; return r }},
		{"two paths", []string{"iap_enabled", "invoker_iam_disabled"}, func(r result) result { r.iap, r.invokerOff = true, true; return r }},
		{"one label entry", []string{"labels.iap"}, func(r result) result {
			r.labels = map[string]string{"iap": "disabled", "team": "a"}
			return r
		}},
		{"clearing one absent label entry", []string{"labels.team"}, func(r result) result {
			r.labels = map[string]string{"iap": "enabled"}
			return r
		}},
		{"quoted annotation entry cleared", []string{"annotations.`iapguard.dev/managed`"}, func(r result) result { r.annotations = nil; return r }},
		{"nested scaling field", []string{"scaling.min_instance_count"}, func(r result) result { r.minInst = 2; return r }},
		{"template makes a revision", []string{"template.containers"}, func(r result) result {
			r.image, r.newRevision = "us-docker.pkg.dev/cloudrun/container/hello:v2", true
			return r
		}},
		{"output-only path ignored", []string{"uri", "ingress"}, func(r result) result {
			r.ingress = runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER
			return r
		}},
		{"no mask replaces the spec", nil, func(r result) result {
			return result{labels: map[string]string{"iap": "disabled"}, ingress: runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER,
				iap: true, invokerOff: true, minInst: 2, image: "us-docker.pkg.dev/cloudrun/container/hello:v2", newRevision: true}
		}},
		{"star replaces the spec", []string{"*"}, func(r result) result {
			return result{labels: map[string]string{"iap": "disabled"}, ingress: runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER,
				iap: true, invokerOff: true, minInst: 2, image: "us-docker.pkg.dev/cloudrun/container/hello:v2", newRevision: true}
		}},
	}
	h := newHarness(t, Options{})
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("svc-%d", i)
			before := h.create(t, id, base())
			req := &runpb.UpdateServiceRequest{Service: body(before.GetName())}
			if tt.paths != nil {
				req.UpdateMask = &fieldmaskpb.FieldMask{Paths: tt.paths}
			}
			op, err := h.client.UpdateService(ctxT(t), req)
			if err != nil {
				t.Fatalf("UpdateService: %v", err)
			}
			got, err := op.Wait(ctxT(t))
			if err != nil {
				t.Fatalf("waiting for UpdateService: %v", err)
			}
			gotR := result{
				labels: got.GetLabels(), annotations: got.GetAnnotations(), ingress: got.GetIngress(),
				iap: got.GetIapEnabled(), invokerOff: got.GetInvokerIamDisabled(),
				image: got.GetTemplate().GetContainers()[0].GetImage(), minInst: got.GetScaling().GetMinInstanceCount(),
				newRevision: got.GetLatestCreatedRevision() != before.GetLatestCreatedRevision(),
			}
			if diff := cmp.Diff(tt.want(baseResult), gotR, cmp.AllowUnexported(result{}), cmp.Comparer(func(a, b map[string]string) bool {
				return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b)
			})); diff != "" {
				t.Errorf("updated service mismatch (-want +got):\n%s", diff)
			}
			if got.GetGeneration() != 2 || got.GetObservedGeneration() != 2 {
				t.Errorf("generation, observed = %d, %d; want 2, 2", got.GetGeneration(), got.GetObservedGeneration())
			}
			if got.GetEtag() == before.GetEtag() {
				t.Error("etag did not change")
			}
			if gotR.newRevision && !strings.Contains(got.GetLatestCreatedRevision(), "/revisions/"+id+"-00002-") {
				t.Errorf("new revision %q, want %s-00002-xyz", got.GetLatestCreatedRevision(), id)
			}
			if got.GetUid() != before.GetUid() || !got.GetCreateTime().AsTime().Equal(before.GetCreateTime().AsTime()) || got.GetCreator() != before.GetCreator() {
				t.Error("update changed uid, create_time or creator")
			}
		})
	}

	t.Run("invalid masks", func(t *testing.T) {
		h.create(t, "masked", base())
		for _, m := range []struct{ name, path, fragment string }{
			{"unknown field", "bogus", "bogus"},
			// gRPC masks name proto fields; camelCase is the JSON spelling
			// only (field_mask.proto), so Google refuses it here (#14 item 7).
			{"camelCase path", "iapEnabled", "iapEnabled"},
			{"unknown nested field", "template.bogus", "template.bogus"},
			{"through a repeated field", "traffic.percent", "traffic.percent"},
			{"unterminated quote", "annotations.`x", "annotations"},
		} {
			t.Run(m.name, func(t *testing.T) {
				_, err := h.client.UpdateService(ctxT(t), &runpb.UpdateServiceRequest{
					Service: body(svcName(testProject, "masked")), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{m.path}},
				})
				wantCode(t, err, codes.InvalidArgument, "update_mask", m.fragment)
			})
		}
		if g := h.get(t, "masked").GetGeneration(); g != 1 {
			t.Errorf("generation after rejected updates = %d, want 1", g)
		}
	})
}

func TestUpdateServiceErrors(t *testing.T) {
	h := newHarness(t, Options{})
	h.create(t, "hello", nil)
	before := h.auditCount()
	tests := []struct {
		name      string
		req       *runpb.UpdateServiceRequest
		code      codes.Code
		fragments []string
	}{
		{"missing service", &runpb.UpdateServiceRequest{Service: &runpb.Service{Name: svcName(testProject, "ghost"), Template: minimalService().Template}}, codes.NotFound, []string{"ghost"}},
		{"no service", &runpb.UpdateServiceRequest{}, codes.InvalidArgument, []string{"service"}},
		{"malformed name", &runpb.UpdateServiceRequest{Service: &runpb.Service{Name: "hello"}}, codes.InvalidArgument, []string{"service.name"}},
		{"invalid label via mask", &runpb.UpdateServiceRequest{
			Service:    &runpb.Service{Name: svcName(testProject, "hello"), Labels: map[string]string{"iap": "Enabled"}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}},
		}, codes.InvalidArgument, []string{"service.labels"}},
		{"invalid ingress via mask", &runpb.UpdateServiceRequest{
			Service:    &runpb.Service{Name: svcName(testProject, "hello"), Ingress: 7},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"ingress"}},
		}, codes.InvalidArgument, []string{"service.ingress"}},
		{"full replacement without template", &runpb.UpdateServiceRequest{Service: &runpb.Service{Name: svcName(testProject, "hello")}}, codes.InvalidArgument, []string{"service.template"}},
		{"reserved annotation via mask", &runpb.UpdateServiceRequest{
			Service:    &runpb.Service{Name: svcName(testProject, "hello"), Annotations: map[string]string{"serving.knative.dev/creator": "x"}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"annotations"}},
		}, codes.InvalidArgument, []string{"service.annotations"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.client.UpdateService(ctxT(t), tt.req)
			wantCode(t, err, tt.code, tt.fragments...)
		})
	}
	// Refusals of what was asked are logged as failed calls; malformed
	// names and unknown projects are not (there is nothing to log in).
	checkRejectedEntries(t, h, before, 5)
	if g := h.get(t, "hello").GetGeneration(); g != 1 {
		t.Errorf("generation after rejected updates = %d, want 1", g)
	}
}

func TestUpdateServiceEtag(t *testing.T) {
	h := newHarness(t, Options{})
	created := h.create(t, "hello", nil)
	update := func(etag string) (*runpb.Service, error) {
		op, err := h.client.UpdateService(ctxT(t), &runpb.UpdateServiceRequest{
			Service:    &runpb.Service{Name: created.GetName(), Etag: etag, IapEnabled: true},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"iap_enabled"}},
		})
		if err != nil {
			return nil, err
		}
		return op.Wait(ctxT(t))
	}

	t.Run("current etag accepted and replaced", func(t *testing.T) {
		got, err := update(created.GetEtag())
		if err != nil {
			t.Fatalf("update with current etag: %v", err)
		}
		if got.GetEtag() == created.GetEtag() {
			t.Error("etag unchanged after an accepted write")
		}
	})
	t.Run("stale etag aborted", func(t *testing.T) {
		_, err := update(created.GetEtag())
		wantCode(t, err, codes.Aborted, "etag")
	})
	t.Run("empty etag is not checked", func(t *testing.T) {
		if _, err := update(""); err != nil {
			t.Fatalf("update without etag: %v", err)
		}
	})
	t.Run("forced race aborts a current etag once", func(t *testing.T) {
		if err := h.c.Faults.ForceRaces(methodUpdate, 1); err != nil {
			t.Fatal(err)
		}
		cur := h.get(t, "hello")
		_, err := update(cur.GetEtag())
		wantCode(t, err, codes.Aborted)
		reread := h.get(t, "hello")
		if reread.GetEtag() == cur.GetEtag() {
			t.Error("forced race did not change the stored etag")
		}
		if _, err := update(reread.GetEtag()); err != nil {
			t.Fatalf("retry after re-read: %v", err)
		}
	})
	t.Run("forced race aborts a delete with the current etag", func(t *testing.T) {
		if err := h.c.Faults.ForceRaces(methodDelete, 1); err != nil {
			t.Fatal(err)
		}
		_, err := h.client.DeleteService(ctxT(t), &runpb.DeleteServiceRequest{Name: created.GetName(), Etag: h.get(t, "hello").GetEtag()})
		wantCode(t, err, codes.Aborted)
		if !h.srv.ServiceExists(testProject, testRegion, "hello") {
			t.Error("aborted delete removed the service")
		}
	})
	t.Run("delete with stale etag aborted", func(t *testing.T) {
		_, err := h.client.DeleteService(ctxT(t), &runpb.DeleteServiceRequest{Name: created.GetName(), Etag: created.GetEtag()})
		wantCode(t, err, codes.Aborted)
		if !h.srv.ServiceExists(testProject, testRegion, "hello") {
			t.Error("aborted delete removed the service")
		}
	})
}

func TestUpdateServiceAllowMissing(t *testing.T) {
	h := newHarness(t, Options{})
	svc := minimalService()
	svc.Name = svcName(testNumberStr, "upserted")
	op, err := h.client.UpdateService(ctxT(t), &runpb.UpdateServiceRequest{Service: svc, AllowMissing: true})
	if err != nil {
		t.Fatalf("UpdateService(allow_missing): %v", err)
	}
	got, err := op.Wait(ctxT(t))
	if err != nil {
		t.Fatalf("waiting: %v", err)
	}
	if got.GetName() != svcName(testNumberStr, "upserted") || got.GetGeneration() != 1 {
		t.Errorf("name, generation = %q, %d; want %q, 1", got.GetName(), got.GetGeneration(), svcName(testNumberStr, "upserted"))
	}
	entries := h.c.Audit.Entries()
	last := entries[len(entries)-1].ProtoPayload
	if last.MethodName != methodUpdate || last.AuthorizationInfo[0].Permission != "run.services.create" || last.ResourceName != svcName(testProject, "upserted") {
		t.Errorf("audit method, permission, resource = %q, %q, %q; want UpdateService, run.services.create, project-id name",
			last.MethodName, last.AuthorizationInfo[0].Permission, last.ResourceName)
	}
}

func TestValidateOnly(t *testing.T) {
	h := newHarness(t, Options{})
	created := h.create(t, "hello", nil)
	before := h.auditCount()
	t.Run("create", func(t *testing.T) {
		op, err := h.client.CreateService(ctxT(t), &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "dry", Service: minimalService(), ValidateOnly: true})
		if err != nil {
			t.Fatalf("CreateService(validate_only): %v", err)
		}
		if !op.Done() {
			t.Error("validate_only operation is not done")
		}
		would, err := op.Wait(ctxT(t))
		if err != nil || would.GetName() != svcName(testProject, "dry") || would.GetIngress() != runpb.IngressTraffic_INGRESS_TRAFFIC_ALL {
			t.Errorf("would-be service = %v, %v; want the defaulted service", would, err)
		}
		if h.srv.ServiceExists(testProject, testRegion, "dry") {
			t.Error("validate_only create stored the service")
		}
		_, err = h.client.CreateService(ctxT(t), &runpb.CreateServiceRequest{Parent: parent(testProject), ServiceId: "hello", Service: minimalService(), ValidateOnly: true})
		wantCode(t, err, codes.AlreadyExists)
	})
	t.Run("update", func(t *testing.T) {
		op, err := h.client.UpdateService(ctxT(t), &runpb.UpdateServiceRequest{
			Service:      &runpb.Service{Name: created.GetName(), Ingress: runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_ONLY},
			UpdateMask:   &fieldmaskpb.FieldMask{Paths: []string{"ingress"}},
			ValidateOnly: true,
		})
		if err != nil {
			t.Fatalf("UpdateService(validate_only): %v", err)
		}
		md, err := op.Metadata()
		if err != nil || md.GetIngress() != runpb.IngressTraffic_INGRESS_TRAFFIC_INTERNAL_ONLY {
			t.Errorf("metadata = %v, %v; want the would-be service with INTERNAL_ONLY", md, err)
		}
		got := h.get(t, "hello")
		if got.GetIngress() != runpb.IngressTraffic_INGRESS_TRAFFIC_ALL || got.GetGeneration() != 1 || got.GetEtag() != created.GetEtag() {
			t.Errorf("stored service changed by validate_only: ingress %v generation %d", got.GetIngress(), got.GetGeneration())
		}
	})
	t.Run("delete", func(t *testing.T) {
		op, err := h.client.DeleteService(ctxT(t), &runpb.DeleteServiceRequest{Name: created.GetName(), ValidateOnly: true})
		if err != nil {
			t.Fatalf("DeleteService(validate_only): %v", err)
		}
		if _, err := op.Wait(ctxT(t)); err != nil {
			t.Fatalf("waiting: %v", err)
		}
		if !h.srv.ServiceExists(testProject, testRegion, "hello") {
			t.Error("validate_only delete removed the service")
		}
	})
	if n := h.auditCount() - before; n != 0 {
		t.Errorf("validate_only calls wrote %d audit entries, want 0", n)
	}
}

func TestRevisions(t *testing.T) {
	h := newHarness(t, Options{})
	created := h.create(t, "hello", nil)
	update := func(req *runpb.UpdateServiceRequest) (*runpb.Service, error) {
		op, err := h.client.UpdateService(ctxT(t), req)
		if err != nil {
			return nil, err
		}
		return op.Wait(ctxT(t))
	}
	revOf := func(s *runpb.Service) string {
		return s.GetLatestCreatedRevision()[strings.LastIndex(s.GetLatestCreatedRevision(), "/")+1:]
	}

	same, err := update(&runpb.UpdateServiceRequest{Service: h.get(t, "hello")})
	if err != nil {
		t.Fatalf("update with the service as read: %v", err)
	}
	if revOf(same) != revOf(created) {
		t.Errorf("unchanged template made revision %q (had %q)", revOf(same), revOf(created))
	}
	forced, err := update(&runpb.UpdateServiceRequest{Service: h.get(t, "hello"), ForceNewRevision: true})
	if err != nil {
		t.Fatalf("force_new_revision: %v", err)
	}
	if !strings.HasPrefix(revOf(forced), "hello-00002-") || forced.GetLatestReadyRevision() != forced.GetLatestCreatedRevision() {
		t.Errorf("forced revision %q ready %q; want hello-00002-xyz and ready", forced.GetLatestCreatedRevision(), forced.GetLatestReadyRevision())
	}
	named := h.get(t, "hello")
	named.Template.Revision = "hello-blue"
	got, err := update(&runpb.UpdateServiceRequest{Service: named})
	if err != nil {
		t.Fatalf("update with a named revision: %v", err)
	}
	if revOf(got) != "hello-blue" {
		t.Errorf("revision = %q, want hello-blue", revOf(got))
	}
	echo := h.get(t, "hello")
	echo.Template.Containers[0].Image += ":v3"
	_, err = update(&runpb.UpdateServiceRequest{Service: echo})
	wantCode(t, err, codes.AlreadyExists, "hello-blue")
}

func TestDeleteService(t *testing.T) {
	h := newHarness(t, Options{})
	created := h.create(t, "hello", nil)
	op, err := h.client.DeleteService(ctxT(t), &runpb.DeleteServiceRequest{Name: svcName(testNumberStr, "hello"), Etag: created.GetEtag()})
	if err != nil {
		t.Fatalf("DeleteService: %v", err)
	}
	if op.Done() {
		t.Error("on-first-poll delete operation already done")
	}
	gone, err := op.Wait(ctxT(t))
	if err != nil {
		t.Fatalf("waiting for delete: %v", err)
	}
	if gone.GetName() != svcName(testNumberStr, "hello") || gone.GetDeleteTime() == nil || gone.GetExpireTime() == nil {
		t.Errorf("deleted service name %q delete_time %v expire_time %v; want number-form name and both times", gone.GetName(), gone.GetDeleteTime(), gone.GetExpireTime())
	}
	_, err = h.client.GetService(ctxT(t), &runpb.GetServiceRequest{Name: created.GetName()})
	wantCode(t, err, codes.NotFound)
	if _, ok := h.srv.IAMPolicy(testProject, testRegion, "hello"); ok {
		t.Error("IAM policy outlived its service")
	}
	_, err = h.client.DeleteService(ctxT(t), &runpb.DeleteServiceRequest{Name: created.GetName()})
	wantCode(t, err, codes.NotFound)
	// The name can be reused.
	again := h.create(t, "hello", nil)
	if again.GetUid() == created.GetUid() || again.GetGeneration() != 1 {
		t.Errorf("recreated service uid %q generation %d; want a new uid and generation 1", again.GetUid(), again.GetGeneration())
	}
}
