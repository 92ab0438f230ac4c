// The parts of jetsaga's participant protocol (docs/protocol.md) a
// participant needs: the request consumer's name and config, reading a
// request, and writing a reply. Written from the document alone.
import { AckPolicy, DeliverPolicy, nanos } from "nats";
import { CloudEvent } from "cloudevents";

// Namespace: a deployment's streams and buckets are named "<ns>_<name>",
// its subjects "<ns>.<subject>"; the default deployment has none.
export class Namespace {
  constructor(readonly ns: string = "") {
    if (!/^[A-Za-z0-9_-]{0,32}$/.test(ns)) throw new Error(`namespace ${JSON.stringify(ns)}: letters, digits, '-' and '_' only, at most 32`);
  }
  name(base: string): string {
    return this.ns === "" ? base : `${this.ns}_${base}`;
  }
  subject(base: string): string {
    return this.ns === "" ? base : `${this.ns}.${base}`;
  }
  get workStream(): string {
    return this.name("JETSAGA_WORK");
  }
  get barrierBucket(): string {
    return this.name("jetsaga_barrier");
  }
  requestSubject(action: string): string {
    return this.subject(`jetsaga.req.${action}`);
  }
}
export const REQUEST_TYPE = "io.jetsaga.action.request.v1";
export const REPLY_TYPE = "io.jetsaga.action.reply.v1";

// fnv1a32 is the 32-bit FNV-1a hash of s's UTF-8 bytes.
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(s, "utf8")) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

// actionToken names an action in one subject token: its consumer's name
// and its key space in the barrier bucket are made from it.
export function actionToken(action: string): string {
  return `${action.replace(/\./g, "_")}-${fnv1a32(action).toString(16).padStart(8, "0")}`;
}

// consumerName is the durable name of an action's request consumer.
export function consumerName(action: string): string {
  return `jetsaga-act-${actionToken(action)}`;
}

// consumerConfig is the config the protocol publishes for an action's
// consumer: created with it when missing, never updated.
export function consumerConfig(ns: Namespace, action: string) {
  return {
    durable_name: consumerName(action),
    description: `jetsaga participants of ${action}`,
    filter_subject: ns.requestSubject(action),
    deliver_policy: DeliverPolicy.All,
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(5000),
    max_deliver: -1,
    max_ack_pending: 1000,
    // thresholds `nats server check consumer` alerts on
    metadata: {
      "io.nats.monitor.enabled": "true",
      "io.nats.monitor.unprocessed-critical": "1000",
      "io.nats.monitor.outstanding-ack-critical": "900",
      "io.nats.monitor.redelivery-critical": "100",
    },
  };
}

export type Op = "do" | "undo";

export interface Request {
  op: Op;
  node: string;
  action: string;
  undo?: string;
  attempt: number;
  idempotency_key: string;
  params: unknown;
  outputs?: Record<string, unknown>;
  skipped?: string[];
  output?: unknown;
  deadline?: string;
  reply_to: string;
}

export interface Incoming {
  id: string;
  saga: string;
  traceparent?: string;
  req: Request;
}

export interface ErrorBody {
  kind: "transient" | "permanent";
  message: string;
}

export interface Outcome {
  ok: boolean;
  output?: unknown;
  error?: ErrorBody;
  retry_after?: string;
}

// parseRequest reads a request for action; a string is why the message is
// not one (the message is then terminated, not answered).
export function parseRequest(data: Uint8Array, action: string): Incoming | string {
  let obj: Record<string, unknown>;
  try {
    obj = JSON.parse(Buffer.from(data).toString("utf8"));
  } catch (e) {
    return `not JSON: ${(e as Error).message}`;
  }
  let ce: CloudEvent<unknown>;
  try {
    ce = new CloudEvent(obj as never); // validates the CloudEvents attributes
  } catch (e) {
    return `not a valid CloudEvent: ${(e as Error).message}`;
  }
  if (ce.type !== REQUEST_TYPE) return `type ${ce.type}, want ${REQUEST_TYPE}`;
  if (!ce.subject) return "no subject (the saga id)";
  const d = ce.data as Partial<Request> | undefined;
  if (!d || typeof d !== "object") return "data is not a JSON object";
  if (d.op !== "do" && d.op !== "undo") return `op ${JSON.stringify(d.op)} is neither do nor undo`;
  if (typeof d.node !== "string" || d.node === "") return "node is missing";
  if (d.action !== action) return `request for action ${JSON.stringify(d.action)} on the subject of ${action}`;
  if (!Number.isInteger(d.attempt) || (d.attempt as number) < 1) return "attempt is not a whole number from 1";
  if (typeof d.idempotency_key !== "string" || d.idempotency_key === "") return "idempotency_key is missing";
  if (typeof d.reply_to !== "string" || !/^[^\s.*>]+(\.[^\s.*>]+)*$/.test(d.reply_to)) {
    return `reply_to ${JSON.stringify(d.reply_to)} is not a subject to publish to`;
  }
  const traceparent = typeof obj.traceparent === "string" ? obj.traceparent : undefined;
  return { id: ce.id, saga: ce.subject, traceparent, req: d as Request };
}

// replyEvent is the reply to in, as a CloudEvent in the JSON structured
// format, and its id (the Nats-Msg-Id).
export function replyEvent(source: string, inc: Incoming, out: Outcome): { id: string; body: string } {
  const id = `${inc.id}:reply`;
  const data: Record<string, unknown> = {
    request_id: inc.id,
    op: inc.req.op,
    node: inc.req.node,
    attempt: inc.req.attempt,
    ok: out.ok,
  };
  if (out.ok && inc.req.op === "do") data.output = out.output ?? null;
  if (!out.ok) data.error = out.error;
  if (!out.ok && out.retry_after) data.retry_after = out.retry_after;
  const attrs: Record<string, unknown> = {
    specversion: "1.0",
    id,
    source,
    type: REPLY_TYPE,
    subject: inc.saga,
    time: new Date().toISOString(),
    datacontenttype: "application/json",
    data,
  };
  if (inc.traceparent) attrs.traceparent = inc.traceparent; // copied, per the protocol
  const ce = new CloudEvent(attrs as never); // throws if we got an attribute wrong
  return { id, body: JSON.stringify(ce) };
}

// Transient and Permanent are the errors handlers throw.
export class Transient extends Error {
  constructor(message: string, public retryAfterMs?: number) {
    super(message);
  }
}

export class Permanent extends Error {}
