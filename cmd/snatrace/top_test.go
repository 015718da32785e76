package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestTopErrors: top names what is missing and exits 2, with nothing on
// stdout: never an empty table.
func TestTopErrors(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
	}))
	defer empty.Close()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"top"}, "snatrace: --prometheus URL: the Prometheus that scrapes snatrace exporter, e.g. http://127.0.0.1:9090\n"},
		{[]string{"top", "--prometheus", "prometheus:9090"}, `snatrace: --prometheus "prometheus:9090": want an http:// or https:// URL` + "\n"},
		{[]string{"top", "--prometheus", empty.URL, "--window", "0s"}, "snatrace: --window 0s: must be at least 1s\n"},
		{[]string{"top", "--prometheus", closed.URL, "--json"}, "snatrace: cannot query the Prometheus at " + closed.URL + `: Post "` + closed.URL + "/api/v1/query\": dial tcp "},
		{[]string{"top", "--prometheus", empty.URL, "--json"}, "snatrace: the Prometheus at " + empty.URL + " has no snatrace series (no snatrace_build_info in the last hour): is snatrace exporter scraped? (deploy/kubernetes/servicemonitor.yaml, docs/deploy.md)\n"},
	} {
		stdout, stderr, code := runCLI(t, tc.args...)
		if code != 2 || stdout != "" || !strings.HasPrefix(stderr, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2, stderr %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
}
