package deploy

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestReleaseWorkflow: the release workflow builds deploy/image/Containerfile
// for amd64 and arm64 from binaries at the path the Containerfile copies,
// and pushes the image the manifests deploy.
func TestReleaseWorkflow(t *testing.T) {
	b, err := os.ReadFile("../.github/workflows/release.yml")
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Env  map[string]string
		Jobs map[string]struct {
			Steps []struct {
				Uses string
				Run  string
				With map[string]any
			}
		}
	}
	if err := yaml.Unmarshal(b, &wf); err != nil {
		t.Fatal(err)
	}
	cf, err := os.ReadFile("image/Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	copyPath := regexp.MustCompile(`(?m)^COPY (bin/linux-)\$\{TARGETARCH\}(/snatrace) `).FindStringSubmatch(string(cf))
	if copyPath == nil {
		t.Fatalf("the Containerfile does not COPY bin/linux-${TARGETARCH}/snatrace")
	}
	var built, pushed bool
	for _, s := range wf.Jobs["image"].Steps {
		if strings.Contains(s.Run, "go build") && strings.Contains(s.Run, "-o "+copyPath[1]+"$arch"+copyPath[2]) &&
			strings.Contains(s.Run, "for arch in amd64 arm64") && strings.Contains(s.Run, "CGO_ENABLED=0") {
			built = true
		}
		if strings.HasPrefix(s.Uses, "docker/build-push-action@") {
			pushed = s.With["file"] == "deploy/image/Containerfile" && s.With["platforms"] == "linux/amd64,linux/arm64" &&
				s.With["push"] == true && s.With["tags"] == "${{ env.IMAGE }}:${{ github.ref_name }}"
		}
	}
	m := load(t)
	if !built || !pushed || wf.Env["IMAGE"] != m.kustomz.Images[0].NewName {
		t.Errorf("release workflow: static binaries for both platforms %v, buildx push of the Containerfile %v, image %q (manifests: %q)",
			built, pushed, wf.Env["IMAGE"], m.kustomz.Images[0].NewName)
	}
}
