// Package boundedre matches regular expressions whose length limits are
// checked apart from the expression. A counted repetition such as
// [a-z0-9-]{1,63} compiles into a program about that many times larger, and
// a package-level regexp.MustCompile runs at every process start: the
// function paid about 1 ms of its start for a handful of them. Writing the
// repetition as + or * and checking the lengths of the groups afterwards
// matches the same strings when every bounded group is delimited (as in the
// anchored name patterns iapguard uses).
package boundedre

import "regexp"

// RE is a compiled expression with limits on the lengths of its groups.
type RE struct {
	re  *regexp.Regexp
	max []int
}

// MustCompile compiles expr (as regexp.MustCompile) with max[i] bounding
// the length of group i in bytes: max[0] the whole match, max[1] the first
// parenthesised group, and so on; 0 means no bound.
func MustCompile(expr string, max ...int) *RE {
	re := regexp.MustCompile(expr)
	if len(max) > re.NumSubexp()+1 {
		panic("boundedre: more limits than groups in " + expr)
	}
	return &RE{re: re, max: max}
}

// MatchString reports whether s matches and every group that took part in
// the match is within its limit.
func (r *RE) MatchString(s string) bool {
	m := r.re.FindStringSubmatchIndex(s)
	if m == nil {
		return false
	}
	for i, max := range r.max {
		if max > 0 && m[2*i] >= 0 && m[2*i+1]-m[2*i] > max {
			return false
		}
	}
	return true
}
