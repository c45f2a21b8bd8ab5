/**
 * A worker process for cluster-shdict-pipes.test.ts: it opens the FIFO pair named in its
 * environment and runs the requests its parent sends over IPC against a PipeSharedDictStore.
 */
import { PipeSharedDictStore } from "../../src/cluster/shared-dict-pipe-client.js";
import type { SharedDictOp, SharedDictValue } from "../../src/cluster/shared-dict-store.js";

interface Request {
  readonly seq: number;
  readonly op: "call" | "incr-loop" | "incr-forever";
  readonly dict: string;
  readonly name: SharedDictOp;
  readonly args: SharedDictValue[];
  readonly count: number;
}

const send = process.send?.bind(process);
const requestPath = process.env.SHDICT_REQUEST;
const responsePath = process.env.SHDICT_RESPONSE;
if (send !== undefined && requestPath !== undefined && responsePath !== undefined) {
  const store = new PipeSharedDictStore({ requestPath, responsePath });
  process.on("message", (request: Request) => {
    try {
      switch (request.op) {
        case "call":
          send({ seq: request.seq, result: store.call(request.dict, request.name, request.args) });
          return;
        case "incr-loop": {
          const started = performance.now();
          for (let i = 0; i < request.count; i++) store.call(request.dict, "incr", ["n", 1, 0]);
          send({ seq: request.seq, result: performance.now() - started });
          return;
        }
        case "incr-forever":
          send({ seq: request.seq, result: "looping" });
          for (;;) store.call(request.dict, "incr", ["forever", 1, 0]);
      }
    } catch (error) {
      send({ seq: request.seq, error: String(error) });
    }
  });
  send({ ready: true });
}
