// A WebSocket endpoint on an http server you already have: its upgrades to /ws become
// WebSocket clients, its plain requests stay yours (here /healthz is handed to moonsocket).
// Run: node dist/examples/ts/attach-to-http-server.js
import http from "node:http";
import { connect, WebSocketServer } from "moonsocket";

const httpServer = http.createServer((req, res) => {
  // Our own routes first; moonsocket's (/healthz, /metrics) only because we ask.
  void wss.handleRequest(req, res).then((answered) => {
    if (!answered) res.end("your own page\n");
  });
});
const wss = new WebSocketServer({ server: httpServer, path: "/ws" });
wss.addHooks({ onMessage: (client, data, isBinary) => client.send(data, isBinary) });

httpServer.listen(0, "127.0.0.1");
const { port } = await wss.listen(); // waits for httpServer to listen; binds nothing itself

const client = await connect(`ws://127.0.0.1:${port}/ws`);
client.send("hello");
console.log("echoed:", (await client.receive()).text());
await client.close();

await wss.close(); // closes our clients with 1001; httpServer is still yours
httpServer.close();
