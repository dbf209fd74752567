package logsink

import "slices"

// Methods returns the serviceName/methodName pairs the sink routes, sorted,
// as "serviceName methodName".
func (s *Sink) Methods() []string {
	out := make([]string, 0, len(s.methods))
	for k := range s.methods {
		out = append(out, k[0]+" "+k[1])
	}
	slices.Sort(out)
	return out
}
