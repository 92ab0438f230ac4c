package ui_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/coordinator"
	"github.com/jetsaga/jetsaga/internal/natstest"
	"github.com/jetsaga/jetsaga/internal/ui"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
	"github.com/jetsaga/jetsaga/streams"
)

func TestMain(m *testing.M) { natstest.Main(m) }

// The console is tested in a real browser: headless Chromium (Debian's
// chromium package, which .ci/run installs) driven with chromedp. Without
// Chromium the tests skip, unless JETSAGA_REQUIRE_BROWSER is set (as
// .ci/run sets it), when they fail.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, p := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"} {
		if p == "" {
			continue
		}
		if found, err := exec.LookPath(p); err == nil {
			path = found
			break
		}
	}
	if path == "" {
		if os.Getenv("JETSAGA_REQUIRE_BROWSER") != "" {
			t.Fatal("no Chromium found (install Debian's chromium package; .ci/run does)")
		}
		t.Skip("no Chromium: the console's browser tests need it (.ci/run installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1300, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	// Cancel waits until the browser has exited, so that no goroutine of
	// it is left for the package's leak check (cleanups run last first).
	t.Cleanup(func() { _ = chromedp.Cancel(ctx) })
	// The first action starts the browser, which lives as long as ctx.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// Helpers on the generic chromedp API: each fails the test on an error.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// world is a server with a coordinator, a participant and sagas in each
// state the console draws.
type world struct {
	js        jetstream.JetStream
	cl        *client.Client
	succeeded string
	unwound   string
	stuck     string
	running   string
	live      string // waits for a signal the test sends while its page is open
}

func newWorld(t *testing.T) *world {
	t.Helper()
	srv := natstest.RunServer(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	topo := streams.Config{Partitions: 2}
	c, err := coordinator.New(js, coordinator.Config{Name: "c1", Topology: topo})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	_, pjs := natstest.Connect(t, srv.ClientURL())
	p, err := participant.New(pjs, participant.Config{Name: "ui-test", DisableBarrier: true})
	if err != nil {
		t.Fatal(err)
	}
	ok := func(context.Context, *participant.Request) (any, error) { return map[string]string{"ref": "r-1"}, nil }
	fail := func(context.Context, *participant.Request) (any, error) {
		return nil, participant.Permanent(errors.New("sold out"))
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(p.Register("ui.ok", ok, ok))
	must(p.Register("ui.fail", fail, nil))
	must(p.Register("ui.stuck", ok, fail))
	must(p.Start(ctx))
	t.Cleanup(func() { _ = p.Stop(context.Background()) })
	cl, err := client.New(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{js: js, cl: cl}
	start := func(def *saga.Definition, wantEnd bool) string {
		id, err := cl.Start(ctx, def, map[string]any{"who": "ada"})
		if err != nil {
			t.Fatal(err)
		}
		if wantEnd {
			if _, err := cl.Wait(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		return id
	}
	w.succeeded = start(saga.New("ui.good").Then(saga.Action("flight", "ui.ok").Undo("ui.ok")).Then(saga.Action("hotel", "ui.ok").Undo("ui.ok")).MustBuild(), true)
	w.unwound = start(saga.New("ui.bad").Then(saga.Action("flight", "ui.ok").Undo("ui.ok")).Then(saga.Action("car", "ui.fail")).MustBuild(), true)
	w.stuck = start(saga.New("ui.stuck").Then(saga.Action("flight", "ui.stuck").Undo("ui.stuck")).Then(saga.Action("car", "ui.fail")).MustBuild(), true)
	w.running = start(saga.New("ui.waits").Then(saga.Action("flight", "ui.ok").Undo("ui.ok")).Then(saga.Await("approval", "ui.approved")).MustBuild(), false)
	w.live = start(saga.New("ui.waits").Then(saga.Action("flight", "ui.ok").Undo("ui.ok")).Then(saga.Await("approval", "ui.approved")).MustBuild(), false)
	for _, id := range []string{w.running, w.live} {
		if _, err := cl.WaitFor(ctx, id, func(s *client.Saga) bool { n, _ := s.Node("approval"); return n.State == "started" }); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *world) console(t *testing.T, allow bool) *httptest.Server {
	t.Helper()
	c, err := ui.New(ui.Config{JS: w.js, Client: w.cl, AllowActions: allow, Operator: "ann"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	return srv
}

// states reads each DAG node's data-state from the saga page.
func states(ctx context.Context, t *testing.T, url string) map[string]string {
	t.Helper()
	do(t, ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS("#dag")))
	nodes := run(t, ctx, chromedp.AttributesAll(chromedp.CSSAll("#dag g.node")))
	out := map[string]string{}
	for _, n := range nodes {
		out[n["data-node"]] = n["data-state"]
	}
	return out
}

func TestConsoleInABrowser(t *testing.T) {
	t.Parallel()
	ctx := browser(t)
	w := newWorld(t)
	ro := w.console(t, false)

	// The list shows every saga started, with its status (a saga that
	// just ended is listed from the archive, written right after its
	// log's end, and a stuck one's summary follows its log: poll).
	natstest.Eventually(t, 20*time.Second, func() error {
		do(t, ctx, chromedp.Navigate(ro.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#sagas")))
		rows := run(t, ctx, chromedp.AttributesAll(chromedp.CSSAll("#sagas tr.row")))
		got := map[string]string{}
		for _, r := range rows {
			got[r["data-id"]] = r["class"]
		}
		for id, want := range map[string]string{w.succeeded: "s-succeeded", w.unwound: "s-unwound", w.stuck: "s-stuck", w.running: "s-running"} {
			if !strings.Contains(got[id], want) {
				return fmt.Errorf("list: saga %s has class %q, want %s (rows %v)", id, got[id], want, got)
			}
		}
		return nil
	})
	mode := run(t, ctx, chromedp.Text(chromedp.CSS("#mode")))
	if !strings.Contains(mode, "read-only") {
		t.Errorf("a console without --allow-actions says %q", mode)
	}
	// A filter: only the stuck one.
	do(t, ctx, chromedp.Navigate(ro.URL+"/?status=stuck"), chromedp.WaitVisible(chromedp.CSS("#sagas")))
	if rows := run(t, ctx, chromedp.AttributesAll(chromedp.CSSAll("#sagas tr.row"))); len(rows) != 1 || rows[0]["data-id"] != w.stuck {
		t.Errorf("status=stuck lists %v", rows)
	}

	// A saga's page: the SVG has every node, in its state.
	for _, c := range []struct {
		id   string
		want map[string]string
	}{
		{w.succeeded, map[string]string{"flight": "succeeded", "hotel": "succeeded"}},
		{w.unwound, map[string]string{"flight": "undo_finished", "car": "failed"}},
		{w.stuck, map[string]string{"flight": "undo_failed", "car": "failed"}},
		{w.running, map[string]string{"flight": "succeeded", "approval": "started"}},
	} {
		if got := states(ctx, t, ro.URL+"/saga/"+c.id); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("saga %s: nodes %v, want %v", c.id, got, c.want)
		}
	}
	// The stuck saga says which undo failed; a click shows a node's error.
	do(t, ctx, chromedp.Navigate(ro.URL+"/saga/"+w.stuck), chromedp.WaitVisible(chromedp.CSS("#dag")))
	alert := run(t, ctx, chromedp.Text(chromedp.CSS(".alert")))
	do(t, ctx, chromedp.Click(chromedp.CSS(`#dag g.node[data-node="car"]`)), chromedp.WaitVisible(chromedp.CSS("#details")))
	details := run(t, ctx, chromedp.Text(chromedp.CSS("#details")))
	if !strings.Contains(alert, "the undo of flight failed") || !strings.Contains(details, "sold out") {
		t.Errorf("stuck saga: alert %q, details %q", alert, details)
	}
	// Read-only: no action forms, and a POST is refused.
	do(t, ctx, chromedp.Navigate(ro.URL+"/saga/"+w.running), chromedp.WaitVisible(chromedp.CSS(".ro-note")))
	if forms := run(t, ctx, chromedp.Evaluate[int]("document.querySelectorAll('form.action').length")); forms != 0 {
		t.Errorf("a read-only console offers %d actions", forms)
	}
	resp, err := http.PostForm(ro.URL+"/saga/"+w.running+"/abort", url.Values{"reason": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a read-only console answered an abort with %d", resp.StatusCode)
	}

	// With --allow-actions: abort the waiting saga from its page.
	rw := w.console(t, true)
	do(t, ctx, chromedp.Navigate(rw.URL+"/saga/"+w.running), chromedp.WaitVisible(chromedp.CSS(`form[data-action="abort"]`)),
		chromedp.SendKeys(chromedp.CSS(`form[data-action="abort"] input[name="reason"]`), "customer cancelled"),
		chromedp.Submit(chromedp.CSS(`form[data-action="abort"]`)))
	natstest.Eventually(t, 30*time.Second, func() error {
		status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#saga-status")))
		if err != nil {
			return err
		}
		if status != "unwound" {
			return fmt.Errorf("saga %s after the abort", status)
		}
		return nil
	})
	s, err := w.cl.Status(context.Background(), w.running)
	if err != nil {
		t.Fatal(err)
	}
	var by string
	for _, e := range s.Timeline {
		if e.Type == "operator.abort" {
			by = "found"
		}
	}
	if by == "" {
		t.Fatal("no operator.abort in the log")
	}
	// The page follows the saga live: a signal sent elsewhere shows up
	// without a reload.
	do(t, ctx, chromedp.Navigate(rw.URL+"/saga/"+w.live), chromedp.WaitVisible(chromedp.CSS("#dag")))
	if err := w.cl.Signal(context.Background(), w.live, "approval", map[string]bool{"ok": true}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, func() error {
		status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#saga-status")))
		if err != nil {
			return err
		}
		if status != "succeeded" {
			return fmt.Errorf("the page shows %s", status)
		}
		return nil
	})
	// Definitions: each version with its sagas in flight (the waiting
	// saga's is gone now; the other two versions have none either).
	do(t, ctx, chromedp.Navigate(rw.URL+"/definitions"), chromedp.WaitVisible(chromedp.CSS("#definitions")))
	if vs := run(t, ctx, chromedp.AttributesAll(chromedp.CSSAll("#definitions tr.version"))); len(vs) != 4 {
		t.Errorf("definitions lists %d versions, want 4: %v", len(vs), vs)
	}
	// Coordinators: c1, with the partitions it drives.
	do(t, ctx, chromedp.Navigate(rw.URL+"/coordinators"), chromedp.WaitVisible(chromedp.CSS("tr.coordinator")))
	if c := run(t, ctx, chromedp.Text(chromedp.CSS("tr.coordinator"))); !strings.HasPrefix(c, "c1") {
		t.Errorf("coordinators: %q", c)
	}
	// A form from another site, or without the token, is refused.
	req, _ := http.NewRequest(http.MethodPost, rw.URL+"/saga/"+w.stuck+"/abandon", strings.NewReader(url.Values{"reason": {"x"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site abandon answered %d", resp.StatusCode)
	}
	resp, err = http.PostForm(rw.URL+"/saga/"+w.stuck+"/abandon", url.Values{"reason": {"x"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("an abandon without the token answered %d", resp.StatusCode)
	}
}

// TestConsoleScreenshots writes the screenshots in docs/operations.md:
//
//	UI_SCREENSHOTS=docs/img go test -run Screenshots ./internal/ui
func TestConsoleScreenshots(t *testing.T) {
	dir := os.Getenv("UI_SCREENSHOTS")
	if dir == "" {
		t.Skip("set UI_SCREENSHOTS to a directory to write the console's screenshots")
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join("..", "..", dir) // from the module's root
	}
	ctx := browser(t)
	w := newWorld(t)
	c := w.console(t, true)
	for name, path := range map[string]string{
		"console-list.png": "/", "console-succeeded.png": "/saga/" + w.succeeded,
		"console-unwound.png": "/saga/" + w.unwound, "console-stuck.png": "/saga/" + w.stuck,
	} {
		do(t, ctx, chromedp.Navigate(c.URL+path), chromedp.WaitVisible(chromedp.CSS("main")))
		if strings.HasPrefix(path, "/saga/") {
			do(t, ctx, chromedp.Click(chromedp.CSS(`#dag g.node[data-node="car"], #dag g.node[data-node="hotel"]`)))
		}
		png := run(t, ctx, chromedp.FullScreenshot(100))
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// An action is recorded with the name a proxy in front puts in the header
// --operator-header names, and the reason.
func TestActionsRecordTheProxysOperator(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	c, err := ui.New(ui.Config{JS: w.js, Client: w.cl, AllowActions: true, Operator: "fallback", OperatorHeader: "X-Forwarded-User"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	page, err := http.Get(srv.URL + "/saga/" + w.running)
	if err != nil {
		t.Fatal(err)
	}
	body := new(strings.Builder)
	_, _ = io.Copy(body, page.Body)
	page.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(body.String())
	if m == nil {
		t.Fatalf("no token in the page:\n%s", body)
	}
	form := url.Values{"csrf": {m[1]}, "reason": {"ticket 42"}}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/saga/"+w.running+"/pause", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-User", "grace@example.com")
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("pause answered %d", resp.StatusCode)
	}
	natstest.Eventually(t, 20*time.Second, func() error {
		s, err := w.cl.Status(context.Background(), w.running)
		if err != nil {
			return err
		}
		for _, op := range s.Operations {
			if op.What == "operator.pause" {
				if op.Operator != "grace@example.com" || op.Reason != "ticket 42" {
					t.Fatalf("pause recorded as by %q for %q", op.Operator, op.Reason)
				}
				return nil
			}
		}
		return fmt.Errorf("no pause in the log yet")
	})
}

// The list pages: 50 sagas, then a link to the older ones.
func TestListPages(t *testing.T) {
	t.Parallel()
	w := newWorld(t) // 5 sagas
	def := saga.New("ui.quick").Then(saga.Constant("c", 1)).MustBuild()
	for range 50 {
		id, err := w.cl.Start(context.Background(), def, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.cl.Wait(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	srv := w.console(t, false)
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	rows := regexp.MustCompile(`<tr class="row`)
	// Sagas that just ended are listed once archived, right after: poll.
	var second string
	natstest.Eventually(t, 20*time.Second, func() error {
		first := get("/")
		next := regexp.MustCompile(`id="next" href="([^"]+)"`).FindStringSubmatch(first)
		if n := len(rows.FindAllString(first, -1)); n != 50 || next == nil {
			return fmt.Errorf("first page: %d rows, next link %v", n, next)
		}
		second = get(strings.ReplaceAll(next[1], "&amp;", "&"))
		if n := len(rows.FindAllString(second, -1)); n != 5 || strings.Contains(second, `id="next"`) {
			return fmt.Errorf("second page: %d rows, want 5 and no next link", n)
		}
		return nil
	})
	if !strings.Contains(second, w.succeeded) {
		t.Fatal("the oldest saga is not on the second page")
	}
}
