// Package conformance replays recorded HTTP exchanges against the emulator
// and compares its answers with the recorded ones.
//
// The recordings are `_http.log` files in the format of
// GoogleCloudPlatform/k8s-config-connector's test fixtures
// (pkg/test/resourcefixture/testdata/**/_http.log): exchanges separated by a
// line "---"; each is a request line "METHOD URL", request headers, an
// optional JSON body, then a status line "CODE TEXT", response headers and
// an optional JSON body, blocks separated by blank lines. Volatile values are
// replaced by placeholders such as ${projectId} or ${operationID}. Lines
// starting with "# " before the request line are comments (this package's
// own synthetic corpus uses them to cite the documentation each exchange is
// written from).
//
// The same project keeps older recordings of real traffic as go-vcr
// cassettes (…/_vcr_cassettes/*.yaml); ParseCassette reads those, turning
// their volatile values into the same kind of placeholders.
//
// Replay (Run) sends each exchange of an API the emulator serves to a fresh
// emulator per file, in order, and compares status codes, error status and
// reason, and the JSON fields present and their values, minus a short
// declared list of volatile fields (Volatile). Exchanges that the
// recording project regenerated against its own mocks (a body naming
// "mockgcp", or a whole file carrying a mock's constants: mockRegenerated)
// are skipped and counted; so are exchanges of methods the emulator does
// not serve.
package conformance

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Exchange is one recorded request and its answer.
type Exchange struct {
	Comments []string
	Method   string
	URL      string
	ReqBody  string
	Status   int
	RespBody string
	// Line is the 1-based line of the request line in the file.
	Line int
	// Err is set when the exchange could not be parsed (it is counted,
	// not replayed).
	Err error
}

var statusLine = regexp.MustCompile(`^([1-5][0-9][0-9]) `)

// Parse reads an _http.log.
func Parse(r io.Reader) ([]Exchange, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var (
		out   []Exchange
		lines []string
		start = 1
		n     int
	)
	flush := func() error {
		if len(strings.TrimSpace(strings.Join(lines, ""))) == 0 {
			return nil
		}
		ex, err := parseExchange(lines, start)
		if err != nil {
			// Recordings of other shapes (gRPC calls logged without a
			// status line, for example) are kept as unparsed, not fatal.
			ex = Exchange{Line: start, Err: err}
		}
		out = append(out, ex)
		return nil
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "---" {
			if err := flush(); err != nil {
				return nil, err
			}
			lines, start = nil, n+1
			continue
		}
		lines = append(lines, line)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

func parseExchange(lines []string, start int) (Exchange, error) {
	var ex Exchange
	i := 0
	for i < len(lines) && (strings.TrimSpace(lines[i]) == "" || strings.HasPrefix(lines[i], "#")) {
		if c, ok := strings.CutPrefix(lines[i], "# "); ok {
			ex.Comments = append(ex.Comments, c)
		}
		i++
	}
	if i == len(lines) {
		return ex, fmt.Errorf("line %d: exchange without a request line", start)
	}
	ex.Line = start + i
	method, url, ok := strings.Cut(lines[i], " ")
	if ok && method == "GRPC" && strings.HasPrefix(url, "/") {
		// A recorded gRPC call: kept (and counted as an unserved API).
		url = "grpc://grpc" + url
	}
	if !ok || method == "" || !strings.HasPrefix(url, "http") && !strings.HasPrefix(url, "grpc://") {
		return ex, fmt.Errorf("line %d: %q is not METHOD URL", ex.Line, lines[i])
	}
	ex.Method, ex.URL = method, url
	i++
	for i < len(lines) && lines[i] != "" { // request headers
		i++
	}
	// The request body runs up to the status line.
	var body []string
	for i < len(lines) && !statusLine.MatchString(lines[i]) {
		body = append(body, lines[i])
		i++
	}
	ex.ReqBody = strings.TrimSpace(strings.Join(body, "\n"))
	if i == len(lines) {
		return ex, fmt.Errorf("line %d: no status line", ex.Line)
	}
	ex.Status, _ = strconv.Atoi(lines[i][:3])
	i++
	for i < len(lines) && lines[i] != "" { // response headers
		i++
	}
	ex.RespBody = strings.TrimSpace(strings.Join(lines[min(i, len(lines)):], "\n"))
	return ex, nil
}
