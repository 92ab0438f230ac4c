// Package version says which jetsaga this is, for the NATS micro services
// coordinators and participants register (whose version must be semver).
package version

import (
	"runtime/debug"
	"strings"
)

// Development is the version of a build from a checkout, not a tagged
// module version.
const Development = "0.0.0-dev"

// Version is the jetsaga module's version when it was built as a
// dependency at a tagged version ("1.2.3"), else Development.
var Version = func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Development
	}
	for _, m := range append([]*debug.Module{&bi.Main}, bi.Deps...) {
		if m.Path == "github.com/jetsaga/jetsaga" && strings.HasPrefix(m.Version, "v") {
			return strings.TrimPrefix(m.Version, "v")
		}
	}
	return Development
}()
