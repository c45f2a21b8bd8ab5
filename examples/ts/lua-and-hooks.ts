// A Lua script and TypeScript hooks on one server you built: the script answers, the
// TypeScript side logs and counts. (Callback-style scripts; see README's Lua sections.)
// Run: node dist/examples/ts/lua-and-hooks.js
import { fileURLToPath } from "node:url";
import { connect, ScriptApp, WebSocketServer } from "moonsocket";

let messages = 0;
const server = new WebSocketServer({ port: 0 });
server.addHooks({
  onConnect: (client) => console.log(`client ${client.id} from ${client.remoteAddress}`),
  onMessage: () => void messages++,
});
// shout.lua sits beside this file in examples/ts/.
const scriptPath = fileURLToPath(new URL("../../../examples/ts/shout.lua", import.meta.url));
const app = await ScriptApp.create({ scriptPath, server });
await server.listen();

const client = await connect(server.url);
client.send("hello from typescript");
console.log("the script answered:", (await client.receive()).text());
await client.close();
await server.close();
app.dispose();
console.log(`the TypeScript hook counted ${messages} message(s)`);
