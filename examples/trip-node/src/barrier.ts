// The idempotency barrier shared with the Go SDK (docs/protocol.md, "The
// idempotency barrier"): one record per (saga, node) in the KV bucket
// jetsaga_barrier, changed only by compare-and-set, so participants of
// one action in Go and here agree on what ran.
import { actionToken, Op } from "./protocol";

export type State = "running" | "done" | "failed" | "retry" | "unknown" | "undoing" | "undone" | "tombstone";

export interface BarrierRecord {
  state: State;
  owner?: string;
  lock_until?: string; // RFC 3339
  interrupted?: boolean;
  request_id: string;
  attempt?: number;
  output?: unknown;
  error?: { kind: string; message: string };
  updated: string; // RFC 3339
}

// barrierKey is a node's record's key, in the key space of the action the
// request came for.
export function barrierKey(action: string, saga: string, node: string): string {
  return `${actionToken(action)}.${saga}.${Buffer.from(node, "utf8").toString("base64url")}`;
}

export function locked(r: BarrierRecord, now: number): boolean {
  return r.lock_until !== undefined && Date.parse(r.lock_until) > now;
}

export type Verdict = "run" | "wait" | "reply-output" | "reply-error" | "refuse" | "tombstone" | "undone" | "corrupt";

// decide is the barrier's state machine: what to do with a request for op
// and attempt, given the node's record (null if none).
export function decide(op: Op, attempt: number, r: BarrierRecord | null, now: number): Verdict {
  if (op === "do") {
    if (r === null) return "run";
    switch (r.state) {
      case "running":
        return locked(r, now) ? "wait" : "run"; // its worker died: take over
      case "unknown":
        return "run";
      case "done":
        return "reply-output";
      case "failed": // a later attempt is an operator's retry: the failure changed nothing
        return (r.attempt ?? 0) > 0 && attempt > (r.attempt ?? 0) ? "run" : "reply-error";
      case "retry":
        return attempt <= (r.attempt ?? 0) ? "reply-error" : "run";
      case "undoing":
      case "undone":
      case "tombstone":
        return "refuse";
    }
    return "corrupt";
  }
  if (r === null) return "tombstone";
  switch (r.state) {
    case "failed":
    case "retry":
      return "tombstone";
    case "running":
    case "undoing":
      return locked(r, now) ? "wait" : "run";
    case "done":
    case "unknown":
      return "run";
    case "undone":
    case "tombstone":
      return "undone";
  }
  return "corrupt";
}

// acquired is the record that takes the lock over prior for a run.
export function acquired(op: Op, attempt: number, prior: BarrierRecord | null, owner: string, requestID: string, lockUntil: number, now: number): BarrierRecord {
  const r: BarrierRecord = { state: "running", owner, lock_until: iso(lockUntil), request_id: requestID, updated: iso(now) };
  if (op === "do") {
    r.attempt = attempt;
    r.interrupted = prior !== null && prior.state !== "retry" && prior.state !== "failed";
    return r;
  }
  r.state = "undoing";
  if (prior !== null) {
    r.output = prior.output;
    r.interrupted = !!prior.interrupted || prior.state === "running" || prior.state === "unknown";
  }
  return r;
}

export type Ending = "ok" | "permanent" | "retry";

// settled is the record that releases the lock once the run ended.
export function settled(op: Op, prior: BarrierRecord | null, held: BarrierRecord, ending: Ending, output: unknown, error: BarrierRecord["error"], requestID: string, now: number): BarrierRecord {
  const r: BarrierRecord = { state: "done", request_id: requestID, updated: iso(now), interrupted: held.interrupted };
  if (op === "do") {
    if (ending === "ok") return { ...r, state: "done", output: output ?? null, interrupted: false };
    if (ending === "permanent") return { ...r, state: "failed", error, interrupted: false, attempt: held.attempt };
    if (held.interrupted) return { ...r, state: "unknown" };
    return { ...r, state: "retry", error, attempt: held.attempt };
  }
  if (ending === "ok") return { ...r, state: "undone", output: held.output, interrupted: false };
  // The undo failed: put back what was there, unlocked, for the next attempt.
  if (prior === null || prior.state === "running" || prior.state === "unknown") return { ...r, state: "unknown" };
  return { ...r, state: prior.state, output: prior.output };
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
