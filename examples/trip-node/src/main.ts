// The trip example's participants — flights.book, hotels.book, cars.book,
// each undone by cancelling — in TypeScript on Node.js, speaking jetsaga's
// wire protocol with the official nats client and the CloudEvents SDK.
// Bookings go to the same KV bucket as the Go example's
// (example_trip_bookings), under the same keys, so either can serve a trip.
//
//   npm ci && npm run build && node dist/main.js --server nats://127.0.0.1:4222
import { connect, JetStreamClient, KV } from "nats";
import { Participant } from "./participant";
import { Namespace, Permanent, Request, Transient } from "./protocol";

const BOOKINGS = "example_trip_bookings";
const NO_CARS = "Atlantis";

interface TripParams {
  traveller?: string;
  destination?: string;
  hotel_busy?: number; // the hotel's system is busy for the first N attempts
}

// ledgerKey is the Go example's key for a node's booking.
function ledgerKey(idem: string): string {
  return idem.replace(/:/g, ".").replace(/@/g, "_");
}

function book(kind: "flight" | "hotel" | "car", ledger: KV) {
  return async (req: Request, saga: string): Promise<unknown> => {
    const p = (req.params ?? {}) as TripParams;
    if (kind === "hotel" && req.attempt <= (p.hotel_busy ?? 0)) {
      throw new Transient(`hotel system busy (attempt ${req.attempt}; busy for ${p.hotel_busy})`, 200);
    }
    if (kind === "car") {
      if (!req.outputs || req.outputs.flight === undefined) {
        throw new Permanent("a car needs the flight's booking (outputs.flight)");
      }
      if (p.destination === NO_CARS) throw new Permanent(`no rental cars in ${p.destination}`);
    }
    const booking = { kind, ref: `${kind}-${saga.slice(0, 8)}`, traveller: p.traveller ?? "", where: p.destination ?? "" };
    const key = ledgerKey(req.idempotency_key);
    try {
      await ledger.create(key, JSON.stringify(booking));
      return booking;
    } catch {
      const e = await ledger.get(key); // booked before: the same booking
      if (e && e.operation === "PUT") return e.json();
      throw new Error(`booking ${key} exists but cannot be read`);
    }
  };
}

function cancel(ledger: KV) {
  return async (req: Request): Promise<unknown> => {
    await ledger.purge(ledgerKey(req.idempotency_key)); // nothing there is fine
    return null;
  };
}

async function main() {
  const args = process.argv.slice(2);
  const i = args.indexOf("--server");
  const server = i >= 0 ? args[i + 1] : (process.env.NATS_URL ?? "nats://127.0.0.1:4222");
  const j = args.indexOf("--namespace");
  const ns = new Namespace(j >= 0 ? args[j + 1] : (process.env.JETSAGA_NAMESPACE ?? ""));
  const nc = await connect({ servers: server.split(","), name: "trip-node", maxReconnectAttempts: -1 });
  const js: JetStreamClient = nc.jetstream();
  const jsm = await nc.jetstreamManager();
  const ledger = await js.views.kv(BOOKINGS, { history: 1 });
  const barrier = await js.views.kv(ns.barrierBucket, { bindOnly: true }); // jetsaga creates it
  const log = (m: string) => console.error(`trip-node: ${m}`);
  const p = new Participant(js, jsm, barrier, "/jetsaga/participant/trip-node", ns, log);
  p.register("flights.book", book("flight", ledger), cancel(ledger));
  p.register("hotels.book", book("hotel", ledger), cancel(ledger));
  p.register("cars.book", book("car", ledger), cancel(ledger));
  await p.start();
  await p.serve(nc, "trip-node");
  console.log(`trip-node: serving flights.book, hotels.book, cars.book on ${server}`);
  let stopping = false;
  const stop = async () => {
    if (stopping) return; // a second signal while draining
    stopping = true;
    try {
      await p.stop();
      await nc.drain();
    } catch (e) {
      log(`stopping: ${(e as Error).message}`);
    }
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main().catch((e) => {
  console.error(`trip-node: ${e instanceof Error ? e.message : e}`);
  process.exit(1);
});
