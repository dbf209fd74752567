package compute

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	compute "google.golang.org/api/compute/v1"
)

func TestParseFilter(t *testing.T) {
	obj := func(s string) map[string]any {
		d := json.NewDecoder(strings.NewReader(s))
		d.UseNumber()
		var m map[string]any
		if err := d.Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	objs := map[string]map[string]any{
		"a": obj(`{"name":"a","timeoutSec":30,"enableCDN":false,"backends":[{"group":"g1"},{"group":"g2"}],"iap":{"enabled":true}}`),
		"b": obj(`{"name":"b","timeoutSec":60,"enableCDN":true,"description":"x y"}`),
		"c": obj(`{"name":"c","timeoutSec":5,"metadatas":{"team":"red"}}`),
	}
	typ := reflect.TypeOf(&compute.BackendService{})
	tests := []struct {
		filter      string
		want        string // names matched, in order a b c
		bad         bool
		unsupported bool // a form Google accepts that the emulator answers "not supported"
	}{
		{filter: "", want: "abc"},
		{filter: "  ", want: "abc"},
		{filter: "name = a", want: "a"},
		{filter: "name=a", want: "a"},
		{filter: "name = 'a'", want: "a"},
		{filter: `name = "a"`, want: "a"},
		{filter: `name="a"`, want: "a"},
		{filter: "name != a", want: "bc"},
		{filter: "name!=a", want: "bc"},
		{filter: "enableCDN = TRUE", want: "b"},
		// An absent boolean is false: Compute omits false booleans on output
		// (recorded traffic), and its filters see the stored value.
		{filter: "enableCDN = false", want: "ac"},
		{filter: "enableCDN != true", want: "ac"},
		{filter: "timeoutSec = 30", want: "a"},
		{filter: "timeoutSec = 30.0", want: "a"},
		{filter: "backends.group = g2", want: "a"},
		{filter: "backends.group != g2", want: "bc"},
		{filter: "metadatas.team = red", want: "c"},
		{filter: `description = "x y"`, want: "b"},
		{filter: `description = "x \"y"`, want: ""},
		{filter: "iap.enabled = true", want: "a"},
		{filter: "name != a name != b", want: "c"},
		{filter: "name != a AND name != c", want: "b"},
		{filter: "name", bad: true},
		{filter: "name =", bad: true},
		{filter: "= a", bad: true},
		{filter: "nope = 1", bad: true},
		{filter: "backends.nope = 1", bad: true},
		{filter: `name = "a`, bad: true},
		{filter: "name = a AND", bad: true},
		{filter: "name == a", unsupported: true},
		{filter: "name =~ a", unsupported: true},
		{filter: "timeoutSec >= 30", unsupported: true},
		{filter: "timeoutSec < 30", unsupported: true},
		{filter: "backends:*", unsupported: true},
		{filter: "metadatas:team", unsupported: true},
		{filter: "NOT description = x", unsupported: true},
		{filter: "-name = a", unsupported: true},
		{filter: "name = a OR name = b", unsupported: true},
		{filter: "(name = a) (iap.enabled = true)", unsupported: true},
		{filter: "name = a)", unsupported: true},
		{filter: "name eq [ab]", unsupported: true},
		{filter: "name ne [ab]", unsupported: true},
		{filter: "name.exists()", unsupported: true},
	}
	for _, tc := range tests {
		t.Run(tc.filter, func(t *testing.T) {
			n, err := parseFilter(tc.filter, typ)
			if tc.bad || tc.unsupported {
				if err == nil {
					t.Fatalf("parseFilter(%q) accepted", tc.filter)
				}
				if got := strings.Contains(err.Error(), "not supported by the emulator"); got != tc.unsupported {
					t.Fatalf("parseFilter(%q) = %v; want \"not supported\" %v", tc.filter, err, tc.unsupported)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseFilter(%q): %v", tc.filter, err)
			}
			got := ""
			for _, k := range []string{"a", "b", "c"} {
				if n == nil || n.eval(objs[k]) {
					got += k
				}
			}
			if got != tc.want {
				t.Errorf("filter %q matched %q, want %q", tc.filter, got, tc.want)
			}
		})
	}
}

func TestMergePatch(t *testing.T) {
	// RFC 7396 appendix A examples.
	tests := []struct{ name, target, patch, want string }{
		{"replace member", `{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
		{"add member", `{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
		{"null deletes", `{"a":"b"}`, `{"a":null}`, `{}`},
		{"delete one of two", `{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
		{"array replaces", `{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
		{"value becomes array", `{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
		{"nested merge", `{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
		{"array of objects replaced", `{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
		{"nested null on missing", `{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
		{"scalar target", `{"a":"foo"}`, `{"a":{"b":"c"}}`, `{"a":{"b":"c"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var target, patch, want any
			for _, p := range []struct {
				s string
				v *any
			}{{tc.target, &target}, {tc.patch, &patch}, {tc.want, &want}} {
				if err := json.Unmarshal([]byte(p.s), p.v); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := json.Marshal(target)
			got := mergePatch(target, patch)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("merge (-want +got):\n%s", diff)
			}
			after, _ := json.Marshal(target)
			if string(before) != string(after) {
				t.Errorf("mergePatch modified its target: %s -> %s", before, after)
			}
		})
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		raw      string
		fullOnly bool
		want     parsedRef
		ok       bool
	}{
		{"https://www.googleapis.com/compute/v1/projects/p/global/backendServices/b", true, parsedRef{"p", "", "backendServices", "b"}, true},
		{"https://compute.googleapis.com/compute/beta/projects/7/regions/r/networkEndpointGroups/n", true, parsedRef{"7", "r", "networkEndpointGroups", "n"}, true},
		{"projects/p/global/urlMaps/m", false, parsedRef{"p", "", "urlMaps", "m"}, true},
		{"global/urlMaps/m", false, parsedRef{"def", "", "urlMaps", "m"}, true},
		{"regions/r/backendServices/b", false, parsedRef{"def", "r", "backendServices", "b"}, true},
		{"global/urlMaps/m", true, parsedRef{}, false},
		{"m", false, parsedRef{}, false},
		{"projects/p/global/urlMaps", false, parsedRef{}, false},
		{"projects/p/zones/z/instanceGroups/g", false, parsedRef{projectArg: "p", region: "zones/z", segment: "instanceGroups", name: "g"}, true},
		{"projects/p/zones/z/instanceGroups", false, parsedRef{}, false},
		{"https://www.googleapis.com/compute/v1/projects/p/global/urlMaps/", true, parsedRef{}, false},
		{"http://www.googleapis.com/compute/v1/projects/p/global/urlMaps/m", true, parsedRef{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.raw, func(t *testing.T) {
			got, ok := parseRef(tc.raw, "def", tc.fullOnly)
			if ok != tc.ok || got != tc.want {
				t.Errorf("parseRef = %+v %v, want %+v %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
