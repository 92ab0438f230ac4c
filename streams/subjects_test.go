package streams_test

import (
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/jetsaga/jetsaga/streams"
)

// The partition function is part of the wire contract: these vectors must
// never change.
func TestPartitionVectors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id         string
		partitions int
		want       int
	}{
		{"", 64, 5},   // FNV-1a offset basis 0x811c9dc5
		{"a", 64, 44}, // 0xe40c292c
		{"00000000-0000-0000-0000-000000000000", 64, 17}, // 0xbe478ed1
		{"0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0e", 64, 10}, // 0x0aab01ca
		{"0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0e", 1, 0},
		{"0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0e", 7, 5},
		{"f47ac10b-58cc-4372-a567-0e02b2c3d479", 64, 0}, // 0x5b651540
		{"f47ac10b-58cc-4372-a567-0e02b2c3d479", 1000, 232},
	}
	for _, tt := range tests {
		if got := streams.Partition(tt.id, tt.partitions); got != tt.want {
			t.Errorf("Partition(%q, %d) = %d, want %d", tt.id, tt.partitions, got, tt.want)
		}
	}
}

func TestPartitionIsFNV1a32(t *testing.T) {
	t.Parallel()
	for range 1000 {
		id := uuid.NewString()
		h := fnv.New32a()
		h.Write([]byte(id))
		for _, p := range []int{1, 2, 3, 64, 1024} {
			if got, want := streams.Partition(id, p), int(h.Sum32()%uint32(p)); got != want {
				t.Fatalf("Partition(%q, %d) = %d, FNV-1a says %d", id, p, got, want)
			}
		}
	}
}

func TestPartitionPanicsOnZero(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Fatal("Partition(id, 0) did not panic")
		}
	}()
	streams.Partition("x", 0)
}

func TestSubjects(t *testing.T) {
	t.Parallel()
	id := "0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0e"
	tests := []struct{ got, want string }{
		{streams.LogSubject(id), "jetsaga.log." + id},
		{streams.RequestSubject("payments.charge"), "jetsaga.req.payments.charge"},
		{streams.ReplySubject(7), "jetsaga.reply.7"},
		{streams.CommandSubject(63), "jetsaga.cmd.63"},
		{streams.TimerScheduleSubject(3, "t-1"), "jetsaga.timer.sched.3.t-1"},
		{streams.TimerFireSubject(3), "jetsaga.timer.fire.3"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestValidateActionName(t *testing.T) {
	t.Parallel()
	valid := []string{"charge", "payments.charge", "a.b.c", "Pay_ments-1.re_fund", "x"}
	for _, name := range valid {
		if err := streams.ValidateActionName(name); err != nil {
			t.Errorf("ValidateActionName(%q) = %v, want nil", name, err)
		}
	}
	invalid := []struct {
		name, wantInMsg string
	}{
		{"", "empty"},
		{".charge", "token 1 is empty"},
		{"payments.", "token 2 is empty"},
		{"payments..charge", "token 2 is empty"},
		{"payments.*", "wildcard '*'"},
		{"payments.>", "wildcard '>'"},
		{"pay ments", "whitespace ' '"},
		{"pay\tments", "whitespace"},
		{"payments.ch$rge", "'$' at byte 11"},
		{"paiement.débit", "non-ASCII"},
	}
	for _, tt := range invalid {
		err := streams.ValidateActionName(tt.name)
		if !errors.Is(err, streams.ErrInvalidActionName) {
			t.Errorf("ValidateActionName(%q) = %v, want ErrInvalidActionName", tt.name, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantInMsg) {
			t.Errorf("ValidateActionName(%q) = %q, want it to mention %q", tt.name, err, tt.wantInMsg)
		}
	}
}

func TestValidateSagaID(t *testing.T) {
	t.Parallel()
	for range 100 {
		if id := uuid.NewString(); streams.ValidateSagaID(id) != nil {
			t.Fatalf("ValidateSagaID(%q) = %v", id, streams.ValidateSagaID(id))
		}
	}
	invalid := []struct {
		id, wantInMsg string
	}{
		{"", "empty"},
		{"0B5C6D3E-8F1A-4B2C-9D4E-5F6A7B8C9D0E", "uppercase"},
		{"{0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0e}", "38 bytes"},
		{"urn:uuid:0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0e", "45 bytes"},
		{"0b5c6d3e8f1a4b2c9d4e5f6a7b8c9d0e", "32 bytes"},
		{"0b5c6d3e_8f1a-4b2c-9d4e-5f6a7b8c9d0e", "byte 8 must be '-'"},
		{"0b5c6d3e-8f1a-4b2c-9d4e-5f6a7b8c9d0g", "'g' at byte 35"},
		{"0b5c6d3e-8f1a-4b2c-9d4e.5f6a7b8c9d0e", "byte 23"},
	}
	for _, tt := range invalid {
		err := streams.ValidateSagaID(tt.id)
		if !errors.Is(err, streams.ErrInvalidSagaID) {
			t.Errorf("ValidateSagaID(%q) = %v, want ErrInvalidSagaID", tt.id, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantInMsg) {
			t.Errorf("ValidateSagaID(%q) = %q, want it to mention %q", tt.id, err, tt.wantInMsg)
		}
	}
}

// ValidateSagaID accepts exactly the strings uuid.Parse reads and String
// writes back the same.
func TestValidateSagaIDAgreesWithUUID(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	const hexdigits = "0123456789abcdefABCDEF-xg"
	for i := range 200000 {
		b := []byte(uuid.NewString())
		if i%2 == 1 { // mutate some bytes
			for range 1 + rng.IntN(3) {
				b[rng.IntN(len(b))] = hexdigits[rng.IntN(len(hexdigits))]
			}
		}
		s := string(b)
		u, err := uuid.Parse(s)
		want := err == nil && u.String() == s
		if got := streams.ValidateSagaID(s) == nil; got != want {
			t.Fatalf("%q: ValidateSagaID says %v, uuid %v", s, got, want)
		}
	}
}

// The consumer name docs/protocol.md gives as an example is the one
// participants derive: other languages check their derivation against it.
func TestActionConsumerNameVector(t *testing.T) {
	t.Parallel()
	if got := streams.ActionConsumerName("hotels.book"); got != "jetsaga-act-hotels_book-bca0c1e1" {
		t.Fatalf("ActionConsumerName(hotels.book) = %s, want the protocol's example jetsaga-act-hotels_book-bca0c1e1", got)
	}
}
