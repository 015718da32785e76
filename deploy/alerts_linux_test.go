//go:build linux

package deploy

import (
	"testing"

	"github.com/snatrace/snatrace/internal/podmantest"
	"github.com/snatrace/snatrace/lab"
)

func alerts(t *testing.T, p *podmantest.Podman, ref string, ps podSpec, s *lab.Session, target string) {
}
