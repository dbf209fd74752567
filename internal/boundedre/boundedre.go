// Package boundedre holds the regular expressions iapguard declares at
// package level, compiled when first used rather than at every process
// start, and matches expressions whose length limits are checked apart from
// the expression.
//
// Start-up: a package-level regexp.MustCompile runs during package
// initialisation, before main and before the function can answer its first
// request, whether or not the expression is ever used in that process.
// MustCompile here only records the expression; it is compiled once, on
// the first match (safe for concurrent use). The function's dozen name
// checks cost about 0.3 ms of every start when compiled at init.
//
// Bounds: a counted repetition such as [a-z0-9-]{1,63} compiles into a
// program about that many times larger. Writing the repetition as + or *
// and checking the lengths of the groups afterwards matches the same
// strings when every bounded group is delimited (as in the anchored name
// patterns iapguard uses).
package boundedre

import (
	"regexp"
	"sync"
)

// RE is an expression, compiled on first use, with limits on the lengths of
// its groups.
type RE struct {
	expr string
	max  []int
	re   func() *regexp.Regexp
}

// MustCompile returns expr (regexp syntax) with max[i] bounding the length
// of group i in bytes: max[0] the whole match, max[1] the first
// parenthesised group, and so on; 0 means no bound. The expression is
// compiled on first use, which panics, as regexp.MustCompile does, if it
// does not compile or has fewer groups than limits (tests that use each
// expression catch both; functions' TestNoHeavyRegexpAtPackageInit parses
// every package-level expression).
func MustCompile(expr string, max ...int) *RE {
	return &RE{expr: expr, max: max, re: sync.OnceValue(func() *regexp.Regexp {
		re := regexp.MustCompile(expr)
		if len(max) > re.NumSubexp()+1 {
			panic("boundedre: more limits than groups in " + expr)
		}
		return re
	})}
}

// String is the expression's source text.
func (r *RE) String() string { return r.expr }

// MatchString reports whether s matches and every group that took part in
// the match is within its limit.
func (r *RE) MatchString(s string) bool {
	return r.FindStringSubmatchIndex(s) != nil
}

// FindStringSubmatchIndex is regexp's FindStringSubmatchIndex, nil also when
// a group that took part in the match exceeds its limit.
func (r *RE) FindStringSubmatchIndex(s string) []int {
	m := r.re().FindStringSubmatchIndex(s)
	if m == nil {
		return nil
	}
	for i, max := range r.max {
		if max > 0 && m[2*i] >= 0 && m[2*i+1]-m[2*i] > max {
			return nil
		}
	}
	return m
}

// FindStringSubmatch is regexp's FindStringSubmatch, nil also when a group
// that took part in the match exceeds its limit.
func (r *RE) FindStringSubmatch(s string) []string {
	m := r.FindStringSubmatchIndex(s)
	if m == nil {
		return nil
	}
	out := make([]string, len(m)/2)
	for i := range out {
		if m[2*i] >= 0 {
			out[i] = s[m[2*i]:m[2*i+1]]
		}
	}
	return out
}
