import { WebSocketServer } from "../server/server.js";
import type { ServerOptions } from "../server/server-options.js";
import type { LuaHost } from "./lua-host.js";
import type { StyleRuntime } from "./script-app.js";

/** OpenResty style (`resty.websocket.server`): not built yet. */
export class OpenRestyStyle implements StyleRuntime {
  readonly servers: WebSocketServer[];
  constructor(_host: LuaHost, options: ServerOptions) {
    this.servers = [new WebSocketServer({ ...options, frameMode: true })];
  }
  load(): void {
    throw new Error("OpenResty-style scripts are not supported yet");
  }
  dispose(): void {}
}
