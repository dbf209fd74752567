package conformance

import (
	"fmt"
	"io"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// A go-vcr (version 2) cassette, as k8s-config-connector keeps its older
// recordings of real traffic (…/_vcr_cassettes/tf.yaml): interactions of a
// request and its response, bodies verbatim. Only the members the runner
// needs are read.
type cassette struct {
	Version      int `yaml:"version"`
	Interactions []struct {
		Request struct {
			Body   string `yaml:"body"`
			URL    string `yaml:"url"`
			Method string `yaml:"method"`
		} `yaml:"request"`
		Response struct {
			Body string `yaml:"body"`
			Code int    `yaml:"code"`
		} `yaml:"response"`
	} `yaml:"interactions"`
}

// cassetteValues are the volatile values of a cassette, rewritten to the
// placeholders an _http.log would carry ("$$" is a literal "$" in the
// replacements). The recorder already replaced
// the project by example-project and its number by 123456789; what Google
// generated (operation names, revision suffixes, the project hash of
// run.app URLs) is left for the runner to learn from the emulator's
// answers.
var cassetteValues = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`\bexample-project\b`), "$${projectId}"},
	{regexp.MustCompile(`\b123456789\b`), "$${projectNumber}"},
	// Cloud Run v2 operations (a UUID) and Compute operations
	// (operation-MILLIS-HEX-HEX-HEX, also bare as an operation's name).
	{regexp.MustCompile(`operations/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b`), "operations/$${operationID}"},
	// Compute's are polled out of order (a client may poll an older
	// one), so each gets a placeholder of its own, learnt from the answer
	// that first names it.
	{computeOp, ""},
	// Compute's resource ids (unsigned 64-bit, 16 to 20 digits): one
	// placeholder per id, learnt where it first appears.
	{regexp.MustCompile(`\b([0-9]{16,20})\b`), "$${id${1}}"},
	// Revision names: SERVICE-NNNNN-xyz, the suffix random (one
	// placeholder per revision number).
	{regexp.MustCompile(`(/revisions/[a-z0-9-]+-)([0-9]{5})-[a-z0-9]{3}\b`), "${1}${2}-$${revision${2}}"},
	// run.app URLs: SERVICE-PROJECTHASH-REGIONCODE.a.run.app.
	{regexp.MustCompile(`-[a-z0-9]{10}-([a-z]{2,3})\.a\.run\.app\b`), "-$${projectHash}-${1}.a.run.app"},
}

var computeOp = regexp.MustCompile(`\boperation-[0-9]+-[0-9a-f]+-[0-9a-f]+-[0-9a-f]+\b`)

func placeholdCassette(s string) string {
	for _, v := range cassetteValues {
		if v.re == computeOp {
			s = v.re.ReplaceAllStringFunc(s, func(op string) string {
				return "${op" + strings.ReplaceAll(strings.TrimPrefix(op, "operation-"), "-", "") + "}"
			})
			continue
		}
		s = v.re.ReplaceAllString(s, v.repl)
	}
	return s
}

// ParseCassette reads a go-vcr cassette as exchanges, its volatile values
// rewritten to placeholders (cassetteValues). Line is the interaction's
// index.
func ParseCassette(r io.Reader) ([]Exchange, error) {
	var c cassette
	if err := yaml.NewDecoder(r).Decode(&c); err != nil {
		if err == io.EOF {
			return nil, nil
		}
		return nil, fmt.Errorf("reading a go-vcr cassette: %w", err)
	}
	out := make([]Exchange, 0, len(c.Interactions))
	for i, in := range c.Interactions {
		ex := Exchange{Line: i, Method: in.Request.Method, URL: placeholdCassette(in.Request.URL),
			ReqBody: placeholdCassette(in.Request.Body), Status: in.Response.Code, RespBody: placeholdCassette(in.Response.Body)}
		if ex.Method == "" || ex.Status == 0 {
			ex.Err = fmt.Errorf("interaction %d: no method or status", i)
		}
		out = append(out, ex)
	}
	return out, nil
}
