// Package vm is the VM-provisioning example, in the spirit of the demo of
// Oxide's steno: allocate an IP and create a disk in parallel, create and
// boot the instance in a subsaga, then attach the disk. When a step fails,
// everything done so far is released in reverse order, the subsaga's steps
// included. Resources are kept in a KV bucket (the ledger), standing in for
// a cloud's control plane.
package vm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"path"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetsaga/jetsaga/examples/internal/ledger"
	"github.com/jetsaga/jetsaga/participant"
	"github.com/jetsaga/jetsaga/saga"
)

// Bucket holds the resources.
const Bucket = "example_vm_resources"

// Params are a VM's params.
type Params struct {
	Name string `json:"name"`
	// FailAt names a node of the saga (ip, disk or attach) whose action
	// fails for good, so that the saga unwinds. Empty: nothing fails.
	FailAt string `json:"fail_at"`
}

// Machine is the output of the constant node config: the shape of the VM.
// It is also the params of the instance subsaga.
type Machine struct {
	CPUs     int    `json:"cpus"`
	MemoryGB int    `json:"memory_gb"`
	Image    string `json:"image"`
	// FailAt names a node of the instance subsaga (create or boot) whose
	// action fails for good. A subsaga sees only its own params, not the
	// saga's, so its failures are injected here rather than in Params.
	FailAt string `json:"fail_at,omitempty"`
}

// Definition is the VM saga:
//
//	config → ip ∥ disk → instance (create → boot) → attach
func Definition() *saga.Definition {
	return DefinitionFor(Machine{CPUs: 2, MemoryGB: 4, Image: "debian-13"})
}

// DefinitionFor is Definition with m as config's value.
func DefinitionFor(m Machine) *saga.Definition {
	return saga.New("vm.provision").
		Then(saga.Constant("config", m)).
		Parallel(
			saga.Action("ip", "net.allocate_ip").Undo("net.release_ip").Reads("config"),
			saga.Action("disk", "storage.create_disk").Undo("storage.delete_disk").Reads("config"),
		).
		Then(saga.Subsaga("instance", InstanceDefinition(), "config")).
		// ip is an ancestor through instance, so attach may read it.
		Then(saga.Action("attach", "vm.attach_disk").Undo("vm.detach_disk").
			After("instance", "disk").Reads("instance", "disk", "ip")).
		MustBuild()
}

// InstanceDefinition is the instance subsaga: create the VM, then boot it.
// Its params are the Machine; its output is boot's.
func InstanceDefinition() *saga.Definition {
	return saga.New("vm.instance").
		Then(saga.Action("create", "vm.create").Undo("vm.destroy")).
		Then(saga.Action("boot", "vm.boot").Undo("vm.shutdown").Reads("create")).
		MustBuild()
}

// IP is net.allocate_ip's output.
type IP struct {
	IP string `json:"ip"`
	// Queues is the NIC's queue count: one per CPU of the machine.
	Queues int `json:"nic_queues"`
}

// Disk is storage.create_disk's output.
type Disk struct {
	Disk   string `json:"disk"`
	Image  string `json:"image"`
	SizeGB int    `json:"size_gb"`
}

// VM is vm.create's output.
type VM struct {
	VM       string `json:"vm"`
	CPUs     int    `json:"cpus"`
	MemoryGB int    `json:"memory_gb"`
	Image    string `json:"image"`
}

// Power is vm.boot's output, and so the instance subsaga's.
type Power struct {
	VM    string `json:"vm"`
	State string `json:"state"`
}

// Attachment is vm.attach_disk's output, and so the saga's: the VM as
// provisioned.
type Attachment struct {
	Name   string `json:"name"`
	VM     string `json:"vm"`
	IP     string `json:"ip"`
	Disk   string `json:"disk"`
	Device string `json:"device"`
}

// Register adds the network, storage and VM participants to p.
func Register(ctx context.Context, js jetstream.JetStream, p *participant.Participant) error {
	l, err := ledger.Open(ctx, js, Bucket)
	if err != nil {
		return err
	}
	// Every action creates one resource, keyed by its idempotency key, and
	// returns it: Add is idempotent, so a repeat creates nothing new.
	allocateIP := func(ctx context.Context, req *participant.Request) (any, error) {
		var m Machine
		if err := req.Lookup("config", &m); err != nil {
			return nil, err
		}
		if err := injected(req, "no address left in 10.0.0.0/16"); err != nil {
			return nil, err
		}
		return l.Add(ctx, req.IdempotencyKey, IP{IP: address(req.SagaID), Queues: m.CPUs})
	}
	createDisk := func(ctx context.Context, req *participant.Request) (any, error) {
		var m Machine
		if err := req.Lookup("config", &m); err != nil {
			return nil, err
		}
		if err := injected(req, "storage pool full"); err != nil {
			return nil, err
		}
		return l.Add(ctx, req.IdempotencyKey, Disk{Disk: "disk-" + short(req.SagaID), Image: m.Image, SizeGB: 20})
	}
	create := func(ctx context.Context, req *participant.Request) (any, error) {
		var m Machine // the subsaga's params: config's output
		if err := req.DecodeParams(&m); err != nil {
			return nil, err
		}
		if err := injected(req, "no host with %d CPUs free", m.CPUs); err != nil {
			return nil, err
		}
		return l.Add(ctx, req.IdempotencyKey, VM{VM: "vm-" + short(req.SagaID), CPUs: m.CPUs, MemoryGB: m.MemoryGB, Image: m.Image})
	}
	boot := func(ctx context.Context, req *participant.Request) (any, error) {
		var vm VM
		if err := req.Lookup("create", &vm); err != nil {
			return nil, err
		}
		if err := injected(req, "%s did not boot", vm.VM); err != nil {
			return nil, err
		}
		return l.Add(ctx, req.IdempotencyKey, Power{VM: vm.VM, State: "running"})
	}
	attach := func(ctx context.Context, req *participant.Request) (any, error) {
		var params Params
		if err := req.DecodeParams(&params); err != nil {
			return nil, err
		}
		var inst Power
		var disk Disk
		var ip IP
		if err := errors.Join(req.Lookup("instance", &inst), req.Lookup("disk", &disk), req.Lookup("ip", &ip)); err != nil {
			return nil, err
		}
		if err := injected(req, "attach %s to %s: no free slot", disk.Disk, inst.VM); err != nil {
			return nil, err
		}
		return l.Add(ctx, req.IdempotencyKey, Attachment{Name: params.Name, VM: inst.VM, IP: ip.IP, Disk: disk.Disk, Device: "/dev/vdb"})
	}
	// Every undo removes what its action created; Remove tolerates a
	// resource that is not there.
	release := func(ctx context.Context, req *participant.Request) (any, error) {
		return nil, l.Remove(ctx, req.IdempotencyKey)
	}
	return errors.Join(
		p.Register("net.allocate_ip", allocateIP, release),
		p.Register("storage.create_disk", createDisk, release),
		p.Register("vm.create", create, release),
		p.Register("vm.boot", boot, release),
		p.Register("vm.attach_disk", attach, release),
	)
}

// injected is a permanent failure, with the message format and args, if the
// params of req's scope (the saga's, or the Machine inside the instance
// subsaga) name req's node in fail_at.
func injected(req *participant.Request, format string, args ...any) error {
	var p struct {
		FailAt string `json:"fail_at"`
	}
	if err := req.DecodeParams(&p); err != nil {
		return err
	}
	if p.FailAt == "" || p.FailAt != path.Base(req.Node) {
		return nil
	}
	return participant.Permanent(fmt.Errorf(format+" (injected)", args...))
}

// address is the saga's IP, picked by a hash of its id.
func address(sagaID string) string {
	h := fnv.New32a()
	h.Write([]byte(sagaID))
	n := h.Sum32()
	return fmt.Sprintf("10.0.%d.%d", n>>8&0xff, 2+n%250)
}

func short(sagaID string) string { return fmt.Sprintf("%.8s", sagaID) }

// Resources lists what a saga left in the ledger, by key.
func Resources(ctx context.Context, js jetstream.JetStream, sagaID string) (map[string]json.RawMessage, error) {
	l, err := ledger.Open(ctx, js, Bucket)
	if err != nil {
		return nil, err
	}
	return l.Records(ctx, sagaID)
}
