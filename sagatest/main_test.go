package sagatest

import (
	"testing"

	"github.com/jetsaga/jetsaga/internal/natstest"
)

// TestMain fails the package if a test leaves goroutines behind: a kit's
// crashed coordinators must be gone too.
func TestMain(m *testing.M) { natstest.Main(m) }
