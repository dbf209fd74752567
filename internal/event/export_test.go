package event

import "slices"

// handledMethods is every audit-log methodName the decoder acts on,
// sorted.
var handledMethods = func() []string {
	out := slices.Clone(runHandled)
	for _, v := range computeAPIVersions {
		for coll, ms := range computeHandled {
			for _, m := range ms {
				out = append(out, v+".compute."+coll+"."+m)
			}
		}
	}
	slices.Sort(out)
	return out
}()

// HandledMethods returns, sorted, every audit-log methodName the decoder
// acts on (returns Targets or a ComputeRef for a successful, final entry).
// Every one of them must have an Eventarc trigger in eventarc/triggers.yaml.
func HandledMethods() []string { return slices.Clone(handledMethods) }

// ServiceNameOf returns the audit serviceName that logs method m
// (RunServiceName or ComputeServiceName), or "" if m is not a handled method.
func ServiceNameOf(m string) string {
	if slices.Contains(runHandled, m) {
		return RunServiceName
	}
	if _, ok := parseComputeMethod(m); ok {
		return ComputeServiceName
	}
	return ""
}
