package top

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzResponse answers every query with the fuzzed body: Query returns an
// error or a report that encodes as JSON and text, and never panics.
func FuzzResponse(f *testing.F) {
	for _, seed := range []string{
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"instance":"a:1","node":"n","owner":"docker","source":"audit"},"value":[1,"2"]}]}}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"instance":"a:1"},"value":[1,"NaN"]}]}}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"+Inf"]}]}}`,
		`{"status":"success","data":{"resultType":"matrix","result":[]}}`,
		`{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}`,
		`{"status":"error","errorType":"bad_data","error":"parse error"}`,
		`not json`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			rw.Header().Set("Content-Type", "application/json")
			rw.Write(body)
		}))
		defer srv.Close()
		rep, err := Query(context.Background(), apiFor(t, srv.URL), srv.URL, Options{Now: now})
		if err != nil {
			return
		}
		if len(rep.Nodes) == 0 {
			t.Fatalf("a report without nodes")
		}
		if _, err := json.Marshal(rep); err != nil {
			t.Fatalf("report does not encode: %v", err)
		}
		if err := rep.WriteText(&bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
	})
}
