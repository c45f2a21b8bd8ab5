// A producer that respects a slow reader: send until `send` reports Backpressure, go on
// when onDrain says the client's send buffer is empty again.
// Run: node dist/examples/ts/backpressure.js
import { connect, SendStatus, type ServerClient, WebSocketServer } from "moonsocket";

const TOTAL = 200;
const chunk = Buffer.alloc(64 * 1024, "x");
const sent = new Map<ServerClient, number>();

/** Sends the rest of the stream, stopping when the client's buffer is half full. */
function pump(client: ServerClient): void {
  let count = sent.get(client) ?? 0;
  while (count < TOTAL) {
    const status = client.send(chunk);
    count++;
    if (status === SendStatus.Backpressure) break; // onDrain calls us again
  }
  sent.set(client, count);
}

const wss = new WebSocketServer({ port: 0, maxBufferedBytes: 1024 * 1024 });
wss.addHooks({ onConnect: pump, onDrain: pump, onDisconnect: (client) => sent.delete(client) });
await wss.listen();

const client = await connect(wss.url);
let received = 0;
for await (const message of client) {
  received += message.data.length;
  if (received === TOTAL * chunk.length) break;
}
console.log(`received ${received} bytes in ${TOTAL} messages`);
await client.close();
await wss.close();
