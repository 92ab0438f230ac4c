package vm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetsaga/jetsaga/client"
	"github.com/jetsaga/jetsaga/examples/internal/demo"
	"github.com/jetsaga/jetsaga/examples/vm"
	"github.com/jetsaga/jetsaga/internal/natstest"
)

func TestMain(m *testing.M) { natstest.Main(m) }

// setup runs the example on its own embedded server, stopped at cleanup
// (after parallel subtests).
func setup(t *testing.T) (context.Context, *demo.Env) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	env, err := demo.Start(ctx, demo.Options{Dir: t.TempDir()}, vm.Register)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	return ctx, env
}

func TestVMDemo(t *testing.T) {
	t.Parallel()
	ctx, env := setup(t)
	var out bytes.Buffer
	sagas, err := vm.Demo(ctx, env.Client, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out.String())
	if len(sagas) != 2 || sagas[0].Status != client.StatusSucceeded || sagas[1].Status != client.StatusUnwound {
		t.Fatalf("outcomes: %s", out.String())
	}
	if !strings.Contains(out.String(), "attach failed (attach disk-") {
		t.Fatalf("output:\n%s", out.String())
	}
	ok, err := vm.Resources(ctx, env.JS, sagas[0].ID)
	if err != nil || len(ok) != 5 {
		t.Fatalf("the provisioned VM has %d resources, want 5 (%v)", len(ok), err)
	}
	gone, err := vm.Resources(ctx, env.JS, sagas[1].ID)
	if err != nil || len(gone) != 0 {
		t.Fatalf("the unwound VM left %v (%v)", gone, err)
	}
	// Released in reverse dependency order: boot, create, then disk and ip
	// (independent, so in either order).
	released := vm.Released(sagas[1])
	if len(released) != 4 || !slices.Equal(released[:2], []string{"instance/boot", "instance/create"}) ||
		!slices.Contains(released[2:], "disk") || !slices.Contains(released[2:], "ip") {
		t.Fatalf("released %v", released)
	}
}

// Every node got, by lookup or as params, the outputs it was meant to.
func TestVMLookups(t *testing.T) {
	t.Parallel()
	ctx, env := setup(t)
	id, err := env.Client.Start(ctx, vm.Definition(), vm.Params{Name: "db-1"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := env.Client.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != client.StatusSucceeded {
		t.Fatalf("status %s", s.Status)
	}
	var (
		config vm.Machine
		ip     vm.IP
		disk   vm.Disk
		create vm.VM
		boot   vm.Power
		inst   vm.Power
		attach vm.Attachment
	)
	for path, v := range map[string]any{"config": &config, "ip": &ip, "disk": &disk,
		"instance/create": &create, "instance/boot": &boot, "instance": &inst, "attach": &attach} {
		output(t, s, path, v)
	}
	want := vm.Machine{CPUs: 2, MemoryGB: 4, Image: "debian-13"}
	if config != want {
		t.Errorf("config = %+v, want %+v", config, want)
	}
	if ip.IP == "" || ip.Queues != config.CPUs {
		t.Errorf("ip = %+v: read config's %d CPUs?", ip, config.CPUs)
	}
	if disk.Disk == "" || disk.Image != config.Image {
		t.Errorf("disk = %+v: read config's image %q?", disk, config.Image)
	}
	if create.VM == "" || create.CPUs != config.CPUs || create.MemoryGB != config.MemoryGB || create.Image != config.Image {
		t.Errorf("instance/create = %+v: got config as the subsaga's params?", create)
	}
	if boot != (vm.Power{VM: create.VM, State: "running"}) {
		t.Errorf("instance/boot = %+v: looked up create's vm %q?", boot, create.VM)
	}
	if inst != boot {
		t.Errorf("instance (the subsaga's output) = %+v, want boot's %+v", inst, boot)
	}
	wantAttach := vm.Attachment{Name: "db-1", VM: create.VM, IP: ip.IP, Disk: disk.Disk, Device: "/dev/vdb"}
	if attach != wantAttach {
		t.Errorf("attach = %+v, want %+v", attach, wantAttach)
	}
	var sagaOut vm.Attachment
	if err := json.Unmarshal(s.Output, &sagaOut); err != nil || sagaOut != attach {
		t.Errorf("saga output %s, want attach's (%v)", s.Output, err)
	}
	// The ledger holds exactly what the actions returned.
	recs, err := vm.Resources(ctx, env.JS, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range s.Nodes {
		if n.Kind != "action" {
			continue
		}
		rec, ok := recs[id+"."+n.Path]
		if !ok || !bytes.Equal(rec, n.Output) {
			t.Errorf("ledger has %s for %s, output %s", rec, n.Path, n.Output)
		}
	}
}

func output(t *testing.T, s *client.Saga, path string, v any) {
	t.Helper()
	n, ok := s.Node(path)
	if !ok {
		t.Fatalf("no node %s", path)
	}
	if err := json.Unmarshal(n.Output, v); err != nil {
		t.Fatalf("output of %s: %s: %v", path, n.Output, err)
	}
}

// A failure at any action node unwinds the saga and leaves nothing behind.
func TestVMFailureAtEachNode(t *testing.T) {
	t.Parallel()
	ctx, env := setup(t)
	machine := func(failAt string) vm.Machine {
		return vm.Machine{CPUs: 2, MemoryGB: 4, Image: "debian-13", FailAt: failAt}
	}
	for _, tc := range []struct {
		node    string
		machine vm.Machine // instance's params: its failures are injected here
		params  vm.Params
	}{
		{node: "ip", machine: machine(""), params: vm.Params{Name: "f-ip", FailAt: "ip"}},
		{node: "disk", machine: machine(""), params: vm.Params{Name: "f-disk", FailAt: "disk"}},
		{node: "instance/create", machine: machine("create"), params: vm.Params{Name: "f-create"}},
		{node: "instance/boot", machine: machine("boot"), params: vm.Params{Name: "f-boot"}},
		{node: "attach", machine: machine(""), params: vm.Params{Name: "f-attach", FailAt: "attach"}},
	} {
		t.Run(tc.node, func(t *testing.T) {
			t.Parallel()
			id, err := env.Client.Start(ctx, vm.DefinitionFor(tc.machine), tc.params)
			if err != nil {
				t.Fatal(err)
			}
			s, err := env.Client.Wait(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if s.Status != client.StatusUnwound || s.FailedNode != tc.node {
				t.Fatalf("status %s, failed node %q; want unwound at %s", s.Status, s.FailedNode, tc.node)
			}
			// Each action either never ran, failed (changing nothing), or
			// was undone.
			for _, n := range s.Nodes {
				if n.Kind == "action" && !slices.Contains([]string{"pending", "failed", "undo_finished"}, n.State) {
					t.Errorf("node %s is %s", n.Path, n.State)
				}
			}
			if n, _ := s.Node(tc.node); n.State != "failed" {
				t.Errorf("node %s is %s, want failed", tc.node, n.State)
			}
			left, err := vm.Resources(ctx, env.JS, id)
			if err != nil || len(left) != 0 {
				t.Fatalf("left %v (%v)", left, err)
			}
		})
	}
}
