// Upgrades handed over by your own code (noServer): check a token first, refuse with your
// own response, accept with handleUpgrade. moonsocket's handshake checks, limits and metrics
// still apply to what you hand over.
// Run: node dist/examples/ts/handle-upgrade.js
import http, { type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import { connect, WebSocketServer } from "moonsocket";

/** Who each accepted request belongs to, for onConnect (which gets the request). */
const users = new WeakMap<IncomingMessage, string>();
const wss = new WebSocketServer({ noServer: true, maxConnections: 100 });
wss.addHooks({ onConnect: (client, request) => client.send(`welcome, ${users.get(request)}`) });
await wss.start(); // runs the startup hooks; there is no port of our own

const httpServer = http.createServer((_req, res) => res.end("not a WebSocket\n"));
httpServer.on("upgrade", (req, socket, head) => {
  const token = new URL(req.url ?? "/", "http://localhost").searchParams.get("token");
  if (token !== "moon") {
    socket.end("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    return;
  }
  users.set(req, "moon-user");
  // Returns the client, or null when refused (the socket got the HTTP status) or full.
  wss.handleUpgrade(req, socket, head);
});
await new Promise<void>((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
const { port } = httpServer.address() as AddressInfo;

const refused = await connect(`ws://127.0.0.1:${port}/?token=sun`).catch((error: Error) => error);
console.log("without the token:", (refused as Error).message);
const client = await connect(`ws://127.0.0.1:${port}/?token=moon`);
console.log("with it:", (await client.receive()).text());
await client.close();
await wss.close();
httpServer.close();
