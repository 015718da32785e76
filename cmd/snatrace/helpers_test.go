package main

import (
	"encoding/json"

	"github.com/snatrace/snatrace/netns"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func listNamespaces(prefix string) ([]string, error) {
	if prefix == "" {
		return nil, nil
	}
	return netns.List(prefix)
}
