package boundedre

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// seg is a piece of a generated name: a literal, or a run of characters
// from chars whose length is drawn around the limits.
type seg struct{ lit, chars string }

func lit(s string) seg       { return seg{lit: s} }
func run(cs string) seg      { return seg{chars: cs} }
func (s seg) String() string { return s.lit + s.chars }

var lengths = []int{0, 1, 2, 19, 20, 21, 39, 40, 41, 47, 48, 49, 50, 62, 63, 64, 254, 255, 256}

// Each bounded expression iapguard uses matches exactly the strings its
// counted-repetition original matched: checked on names built from the
// templates with runs at and around every limit, some of them mutated.
func TestSameAsCountedRepetition(t *testing.T) {
	t.Parallel()
	const (
		lower  = "abz09-"
		bad    = "A_/."
		digits = "0123456789"
	)
	tests := []struct {
		name      string
		original  string
		bounded   *RE
		templates [][]seg
	}{
		{"project number", `^[1-9][0-9]{0,19}$`, MustCompile(`^[1-9][0-9]*$`, 20),
			[][]seg{{lit("1"), run(digits)}, {run(digits + "a")}}},
		{"region", `^[a-z][a-z0-9-]{0,39}$`, MustCompile(`^[a-z][a-z0-9-]*$`, 40),
			[][]seg{{lit("u"), run(lower)}, {run(lower + bad)}}},
		{"service", `^[a-z]([a-z0-9-]{0,47}[a-z0-9])?$`, MustCompile(`^[a-z]([a-z0-9-]*[a-z0-9])?$`, 49),
			[][]seg{{lit("h"), run(lower), lit("o")}, {lit("h"), run(lower)}, {run(lower + bad)}}},
		{"record key",
			`^projects/[a-z0-9-]{1,63}/secrets/[a-zA-Z0-9_-]{1,255}/versions/([1-9][0-9]{0,19}|latest)$`,
			MustCompile(`^projects/([a-z0-9-]+)/secrets/([a-zA-Z0-9_-]+)/versions/([1-9][0-9]*|latest)$`, 0, 63, 255, 20),
			[][]seg{
				{lit("projects/"), run(lower), lit("/secrets/"), run(lower + "A_"), lit("/versions/"), lit("7"), run(digits)},
				{lit("projects/"), run(lower), lit("/secrets/"), run(lower + "A_"), lit("/versions/latest")},
			}},
		{"secret version",
			`^projects/[a-z0-9-]{1,63}/secrets/[a-zA-Z0-9_-]{1,255}/versions/[0-9]{1,20}$`,
			MustCompile(`^projects/([a-z0-9-]+)/secrets/([a-zA-Z0-9_-]+)/versions/([0-9]+)$`, 0, 63, 255, 20),
			[][]seg{{lit("projects/"), run(lower), lit("/secrets/"), run(lower + "A_"), lit("/versions/"), run(digits)}}},
		{"IAP resource",
			`^projects/[0-9]{1,20}/iap_web/(cloud_run-[a-z0-9-]{1,40}|compute|compute-[a-z0-9-]{1,40})/services/[a-zA-Z0-9_-]{1,63}$`,
			MustCompile(`^projects/([0-9]+)/iap_web/(?:cloud_run-([a-z0-9-]+)|compute|compute-([a-z0-9-]+))/services/([a-zA-Z0-9_-]+)$`, 0, 20, 40, 40, 63),
			[][]seg{
				{lit("projects/"), run(digits), lit("/iap_web/cloud_run-"), run(lower), lit("/services/"), run(lower + "A_")},
				{lit("projects/"), run(digits), lit("/iap_web/compute/services/"), run(lower + "A_")},
				{lit("projects/"), run(digits), lit("/iap_web/compute-"), run(lower), lit("/services/"), run(lower + "A_")},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			orig := regexp.MustCompile(tc.original)
			rng := rand.New(rand.NewPCG(17, 17))
			matched, refused := 0, 0
			for range 20000 {
				var b strings.Builder
				for _, s := range tc.templates[rng.IntN(len(tc.templates))] {
					if s.lit != "" {
						b.WriteString(s.lit)
						continue
					}
					for range lengths[rng.IntN(len(lengths))] {
						b.WriteByte(s.chars[rng.IntN(len(s.chars))])
					}
				}
				s := b.String()
				if rng.IntN(5) == 0 && len(s) > 0 { // mutate: drop or double a byte
					i := rng.IntN(len(s))
					if rng.IntN(2) == 0 {
						s = s[:i] + s[i+1:]
					} else {
						s = s[:i] + s[i:i+1] + s[i:]
					}
				}
				want := orig.MatchString(s)
				if want {
					matched++
				} else {
					refused++
				}
				if got := tc.bounded.MatchString(s); got != want {
					t.Fatalf("%q: bounded %v, original %v", s, got, want)
				}
			}
			if matched < 100 || refused < 100 {
				t.Fatalf("%d generated names matched, %d did not: too few of one kind to compare", matched, refused)
			}
		})
	}
}

// A limit applies only to a group that took part in the match.
func TestLimitsApplyToParticipatingGroups(t *testing.T) {
	t.Parallel()
	re := MustCompile(`^(?:a(x+)|b(y+))$`, 0, 2, 3)
	for s, want := range map[string]bool{"axx": true, "axxx": false, "byyy": true, "byyyy": false, "c": false} {
		if got := re.MatchString(s); got != want {
			t.Errorf("MatchString(%q) = %v, want %v", s, got, want)
		}
	}
}

// MustCompile only records the expression (it runs at package
// initialisation): compiling, and a bad expression's panic, wait for the
// first match.
func TestCompiledOnFirstUse(t *testing.T) {
	t.Parallel()
	bad := MustCompile(`^(unclosed$`)
	tooMany := MustCompile(`^(a)$`, 0, 1, 1)
	for _, re := range []*RE{bad, tooMany} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: the first match did not panic", re)
				}
			}()
			re.MatchString("a")
		}()
	}
}

func TestFindStringSubmatch(t *testing.T) {
	t.Parallel()
	re := MustCompile(`^service-([0-9]+)@(x|(y))$`, 0, 3)
	tests := []struct {
		in   string
		want []string
	}{
		{"service-123@x", []string{"service-123@x", "123", "x", ""}},
		{"service-12@y", []string{"service-12@y", "12", "y", "y"}},
		{"service-1234@x", nil}, // group 1 over its limit
		{"service-@x", nil},
	}
	for _, tc := range tests {
		got := re.FindStringSubmatch(tc.in)
		if !slices.Equal(got, tc.want) {
			t.Errorf("FindStringSubmatch(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
