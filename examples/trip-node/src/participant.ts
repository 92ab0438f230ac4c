// A participant runtime: binds to each action's request consumer, keeps
// the protocol's rules for every participant (docs/protocol.md, "Rules
// every participant follows") with the idempotency barrier it shares with
// the Go SDK, runs the handlers, and replies.
import { randomUUID } from "node:crypto";
import {
  AckPolicy,
  headers,
  JetStreamClient,
  JetStreamManager,
  JsMsg,
  KV,
  millis,
  NatsConnection,
  Service,
  ConsumerInfo,
  NatsError,
} from "nats";
import { acquired, barrierKey, BarrierRecord, decide, settled } from "./barrier";
import {
  actionToken,
  consumerConfig,
  consumerName,
  Incoming,
  Namespace,
  Outcome,
  parseRequest,
  Permanent,
  replyEvent,
  Request,
  Transient,
} from "./protocol";

export type Handler = (req: Request, saga: string) => Promise<unknown>;

interface Registered {
  name: string;
  doFn: Handler;
  undoFn?: Handler;
  // what was done for the action, for the micro service's stats
  served: number;
  failed: number;
  malformed: number;
  inFlight: number;
}

const LOCK_MS = 15000; // a crashed worker's lock is taken over after this
const MAX_INFLIGHT = 16;

type Decision = { nak: number } | { outcome: Outcome };

export class Participant {
  private actions: Registered[] = [];
  private owner = `trip-node/${randomUUID()}`;
  private iterators: { stop(): void }[] = [];
  private inflight = 0;
  private svc?: Service;

  constructor(
    private js: JetStreamClient,
    private jsm: JetStreamManager,
    private barrier: KV,
    private source: string,
    private ns: Namespace,
    private log: (msg: string) => void,
  ) {}

  register(name: string, doFn: Handler, undoFn?: Handler) {
    this.actions.push({ name, doFn, undoFn, served: 0, failed: 0, malformed: 0, inFlight: 0 });
  }

  async start(): Promise<void> {
    for (const a of this.actions) {
      const info = await this.bind(a.name);
      const consumer = await this.js.consumers.get(this.ns.workStream, info.name);
      const msgs = await consumer.consume({ max_messages: MAX_INFLIGHT });
      this.iterators.push(msgs);
      const progressMs = Math.max(10, millis(info.config.ack_wait ?? 5e9) / 3);
      void (async () => {
        for await (const m of msgs) {
          while (this.inflight >= MAX_INFLIGHT) await sleep(5);
          this.inflight++;
          this.handle(a, m, progressMs)
            .catch((e) => this.log(`${a.name}: handling a request: ${(e as Error).message}`)) // never an unhandled rejection
            .finally(() => this.inflight--);
        }
      })();
    }
  }

  // serve registers the participant as the NATS micro service
  // jetsaga-participant, as the Go SDK does: an endpoint per action
  // (jetsaga.participant.<action>) answering what it did, shown by
  // `nats micro ls`, `info` and `stats`.
  async serve(nc: NatsConnection, name: string): Promise<void> {
    const names = this.actions.map((a) => a.name).sort();
    const stats = (a: Registered) => ({
      participant: name,
      action: a.name,
      consumer: consumerName(a.name),
      requests_served: a.served,
      requests_failed: a.failed,
      requests_malformed: a.malformed,
      requests_in_flight: a.inFlight,
    });
    const bySubject = new Map(this.actions.map((a) => [this.ns.subject(`jetsaga.participant.${a.name}`), a]));
    this.svc = await nc.services.add({
      name: "jetsaga-participant",
      version: "0.0.0-dev",
      description: `jetsaga participant ${name} (TypeScript): serves ${names.join(", ")}`,
      metadata: { namespace: this.ns.ns, participant: name, actions: names.join(","), barrier: "true", language: "typescript" },
      // A queue group of its own: every participant of an action answers,
      // as with the Go SDK's (which uses none).
      queue: `jetsaga-participant-${randomUUID()}`,
      statsHandler: async (ep) => {
        const a = bySubject.get(ep.subject);
        return a ? stats(a) : null;
      },
    });
    for (const a of this.actions) {
      this.svc.addEndpoint(actionToken(a.name), {
        subject: this.ns.subject(`jetsaga.participant.${a.name}`),
        metadata: { action: a.name, consumer: consumerName(a.name) },
        handler: (_err, msg) => {
          msg.respond(JSON.stringify(stats(a)));
        },
      });
    }
  }

  async stop(): Promise<void> {
    await this.svc?.stop();
    for (const it of this.iterators) it.stop();
    while (this.inflight > 0) await sleep(10);
  }

  // bind returns the action's consumer, creating it with the protocol's
  // config only if it does not exist; an existing one is used as it is,
  // unless taking requests from it would be unsafe.
  private async bind(action: string) {
    const name = consumerName(action);
    let info;
    try {
      info = await this.jsm.consumers.info(this.ns.workStream, name);
    } catch (e) {
      if (apiCode(e) !== 10014) throw e; // consumer not found
      try {
        // The create action, not create-or-update: an existing consumer
        // with another config is an error (10148), not changed.
        const api = this.jsm.consumers as unknown as { add(s: string, c: unknown, action: string): Promise<ConsumerInfo> };
        info = await api.add(this.ns.workStream, consumerConfig(this.ns, action), "create");
      } catch (e2) {
        if (apiCode(e2) !== 10148) throw e2; // another participant created it first
        info = await this.jsm.consumers.info(this.ns.workStream, name);
      }
    }
    const filters = info.config.filter_subjects ?? (info.config.filter_subject ? [info.config.filter_subject] : []);
    if (filters.length !== 1 || filters[0] !== this.ns.requestSubject(action)) {
      throw new Error(`consumer ${name} filters ${JSON.stringify(filters)}, not ${this.ns.requestSubject(action)}; delete it`);
    }
    if (info.config.ack_policy !== AckPolicy.Explicit) {
      throw new Error(`consumer ${name} has ack policy ${info.config.ack_policy}, not explicit; delete it`);
    }
    return info;
  }

  private async handle(a: Registered, m: JsMsg, progressMs: number): Promise<void> {
    a.inFlight++;
    try {
      await this.handleOne(a, m, progressMs);
    } finally {
      a.inFlight--;
    }
  }

  private async handleOne(a: Registered, m: JsMsg, progressMs: number): Promise<void> {
    const inc = parseRequest(m.data, a.name);
    if (typeof inc === "string") {
      this.log(`malformed request on ${m.subject} terminated: ${inc}`);
      a.malformed++;
      this.settleMsg(inc, () => m.term(inc));
      return;
    }
    const progress = setInterval(() => this.settleMsg(inc.id, () => m.working()), progressMs);
    let d: Decision;
    try {
      d = await this.decide(a, inc, progressMs);
    } catch (e) {
      this.log(`${inc.id}: ${(e as Error).message}; the request comes back`);
      d = { nak: 1000 };
    } finally {
      clearInterval(progress);
    }
    if ("nak" in d) {
      this.settleMsg(inc.id, () => m.nak(d.nak));
      return;
    }
    let reply: { id: string; body: string };
    try {
      reply = replyEvent(this.source, inc, d.outcome);
    } catch (e) {
      // An output that is not JSON (a BigInt, a cycle): the action's
      // result cannot be told, so it failed for good, as the Go SDK says.
      reply = replyEvent(this.source, inc, { ok: false, error: { kind: "permanent", message: `output is not JSON: ${(e as Error).message}` } });
    }
    const { id, body } = reply;
    const h = headers();
    h.set("Nats-Msg-Id", id);
    h.set("Content-Type", "application/cloudevents+json");
    try {
      await this.js.publish(inc.req.reply_to, body, { msgID: id, headers: h });
    } catch (e) {
      this.log(`${inc.id}: publish reply: ${(e as Error).message}; the request comes back`);
      this.settleMsg(inc.id, () => m.nak(1000));
      return;
    }
    this.settleMsg(inc.id, () => m.ack()); // only now: the reply is stored
    a.served++;
    if (!d.outcome.ok) a.failed++;
  }

  // settleMsg acks, naks, terminates or reports progress: a closed or
  // draining connection throws, and the request then comes back after the
  // ack wait, which is all that can be done.
  private settleMsg(what: string, f: () => void): void {
    try {
      f();
    } catch (e) {
      this.log(`${what}: ${(e as Error).message}`);
    }
  }

  // decide answers one request from the node's barrier record, running
  // the handler when the record says it should run. Each round reads the
  // record and tries one compare-and-set; a lost race is another round.
  private async decide(a: Registered, inc: Incoming, progressMs: number): Promise<Decision> {
    const key = barrierKey(a.name, inc.saga, inc.req.node);
    const { op, attempt } = inc.req;
    for (let round = 0; round < 8; round++) {
      const entry = await this.barrier.get(key);
      const rec: BarrierRecord | null = entry && entry.operation === "PUT" ? JSON.parse(entry.string()) : null;
      const rev = rec === null ? 0 : entry!.revision;
      const now = Date.now();
      switch (decide(op, attempt, rec, now)) {
        case "wait":
          return { nak: Math.min(Math.max(Date.parse(rec!.lock_until!) - now, 50), 1000) };
        case "reply-output":
          return { outcome: { ok: true, output: rec!.output ?? null } };
        case "reply-error":
          return { outcome: { ok: false, error: (rec!.error as Outcome["error"]) ?? { kind: "permanent", message: "action failed permanently before" } } };
        case "refuse":
          return { outcome: fail("permanent", `action arrived after its undo (barrier state ${rec!.state}): refused, never run`) };
        case "undone":
          return { outcome: { ok: true } };
        case "corrupt":
          this.log(`${inc.id}: barrier record in state ${rec!.state}, which this participant does not know; the request waits`);
          return { nak: 60000 };
        case "tombstone": {
          const tomb: BarrierRecord = { state: "tombstone", request_id: inc.id, updated: new Date(now).toISOString() };
          if ((await this.cas(key, tomb, rev)) === null) continue;
          return { outcome: { ok: true } }; // the action never ran: nothing to undo, and it is refused if it comes
        }
        case "run": {
          const h = op === "do" ? a.doFn : a.undoFn;
          if (!h) return { outcome: fail("permanent", `no undo for action ${a.name}`) };
          if (inc.req.deadline && Date.parse(inc.req.deadline) <= now) {
            return { outcome: fail("transient", `deadline ${inc.req.deadline} passed before the handler started`) };
          }
          const held = acquired(op, attempt, rec, this.owner, inc.id, now + LOCK_MS, now);
          const taken = await this.cas(key, held, rev);
          if (taken === null) continue;
          // Renew the lock while the handler runs (progress is sent by
          // handle). Renewals run one after another, and settling waits
          // for the last, so it compares against the revision that
          // renewal wrote.
          const lock = { rev: taken, lost: false, until: now + LOCK_MS, renewing: Promise.resolve() };
          let pending = false;
          const renew = setInterval(() => {
            if (pending) return; // a slow write: do not queue another behind it
            pending = true;
            lock.renewing = lock.renewing.then(async () => {
              if (lock.lost) return;
              const until = Date.now() + LOCK_MS;
              held.lock_until = new Date(until).toISOString();
              held.updated = new Date().toISOString();
              try {
                const r = await this.cas(key, held, lock.rev);
                if (r === null) lock.lost = true; // another worker changed the record: it may own it now
                else [lock.rev, lock.until] = [r, until];
              } catch (e) {
                this.log(`${inc.id}: renew barrier lock: ${(e as Error).message}`); // tried again next tick
              } finally {
                pending = false;
              }
            });
          }, Math.min(progressMs, LOCK_MS / 3));
          let out: Outcome;
          try {
            out = await run(() => h(inc.req, inc.saga));
          } finally {
            clearInterval(renew);
            await lock.renewing;
          }
          if (lock.lost || Date.now() > lock.until) return { nak: 1000 }; // another worker may own it now
          const ending = out.ok ? "ok" : out.error?.kind === "permanent" ? "permanent" : "retry";
          const next = settled(op, rec, held, ending, out.output, out.error, inc.id, Date.now());
          try {
            if ((await this.cas(key, next, lock.rev)) === null) this.log(`${inc.id}: the barrier record changed under its lock`);
          } catch (e) {
            // The reply still tells the truth about this run; the record
            // keeps the lock, which expires, and a repeat runs again.
            this.log(`${inc.id}: record outcome in barrier: ${(e as Error).message}`);
          }
          return { outcome: out };
        }
      }
    }
    return { nak: 500 };
  }

  // cas writes rec if the key is still at revision rev (0: absent) and
  // returns the new revision, or null if another worker changed it.
  private async cas(key: string, rec: BarrierRecord, rev: number): Promise<number | null> {
    const body = JSON.stringify(rec);
    try {
      return rev === 0 ? await this.barrier.create(key, body) : await this.barrier.update(key, body, rev);
    } catch (e) {
      const code = apiCode(e);
      if (code === 10071 || code === 10164) return null; // wrong last sequence: someone else wrote
      throw e;
    }
  }
}

async function run(f: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: true, output: await f() };
  } catch (e) {
    if (e instanceof Permanent) return fail("permanent", e.message);
    const out = fail("transient", (e as Error).message);
    if (e instanceof Transient && e.retryAfterMs) out.retry_after = `${e.retryAfterMs}ms`;
    return out;
  }
}

function fail(kind: "transient" | "permanent", message: string): Outcome {
  return { ok: false, error: { kind, message } };
}

function apiCode(e: unknown): number | undefined {
  return (e as NatsError).api_error?.err_code;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
