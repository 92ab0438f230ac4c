package events_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jetsaga/jetsaga/events"
)

// The log message in docs/protocol.md decodes to the CloudEvent printed
// under it, every attribute the table lists included: a reader in another
// language writes its decoder from that example.
func TestProtocolDocLogExample(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "A log message, for example")
	if !ok {
		t.Fatal("docs/protocol.md has no log message example")
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllStringSubmatch(after, 2)
	if len(blocks) != 2 {
		t.Fatal("want the example's log message and its CloudEvent, two json blocks")
	}
	shown, err := events.Decode([]byte(blocks[1][1]))
	if err != nil {
		t.Fatalf("the example CloudEvent: %v", err)
	}
	evs, err := events.DecodeLog(shown.SagaID, []byte(blocks[0][1]))
	if err != nil {
		t.Fatalf("the example log message: %v", err)
	}
	got := evs[0]
	got.TraceParent = shown.TraceParent // a later message's events carry the saga's, from its first message
	a, err := events.Encode(got)
	if err != nil {
		t.Fatal(err)
	}
	b, err := events.Encode(shown)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatalf("the example log message's first event is\n%s\nbut the doc shows\n%s", a, b)
	}
	for _, attr := range []string{`"source":"/jetsaga/coordinator/`, `"jetsagaepoch":"`, `"time":"`, `"datacontenttype":"application/json"`} {
		if !strings.Contains(blocks[1][1], attr) {
			t.Errorf("the example CloudEvent lacks %s, which the attribute table requires", attr)
		}
	}
}
