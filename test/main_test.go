package test

import (
	"testing"

	"github.com/jetsaga/jetsaga/internal/natstest"
)

func TestMain(m *testing.M) { natstest.Main(m) }
