import { WebSocketServer } from "../../../server/server.js";
import type { LuaHost } from "../../host/lua-host.js";
import type { StyleDefinition, StyleRuntime } from "../style-runtime.js";
import { CallbackStyle } from "./callback-style.js";

/** WebSocketServer's callback style: the default, for a script no other style claims. */
export const callbackStyle = {
  name: "callback",
  recognize: () => null,
  async create(host, options) {
    const server = options.server ?? new WebSocketServer(options.serverOptions);
    const callbacks = new CallbackStyle(host);
    server.addHooks(callbacks);
    return callbackRuntime(server, callbacks);
  },
} as const satisfies StyleDefinition;

/** The callback style's runtime: one server; reloads swap the hooks and keep every client. */
function callbackRuntime(server: WebSocketServer, callbacks: CallbackStyle): StyleRuntime {
  return {
    servers: [server],
    load: () => callbacks.load(server),
    dispose: () => {},
    reloadInto(host: LuaHost): StyleRuntime {
      const next = new CallbackStyle(host);
      next.load(server);
      // Messages that arrived before the reload go to the script they were sent to.
      callbacks.flush();
      server.replaceHooks(callbacks, next);
      // The new script has not seen the clients that are already here: introduce them, so
      // that on_disconnect still only follows an on_connect of the same script.
      next.introduceClients(server);
      return callbackRuntime(server, next);
    },
  };
}
