import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { PATIENCE_MS } from "../helpers/net-helpers.js";

// README's TypeScript embedding examples (examples/ts/, type-checked by `tsc -b`) run as
// written: each ends by itself, exit code 0, saying what it showed.

const EXAMPLES = fileURLToPath(new URL("../../examples/ts/", import.meta.url));

const EXPECTED: Record<string, RegExp> = {
  "attach-to-http-server": /^echoed: hello$/m,
  "handle-upgrade": /^without the token: .*401[\s\S]*^with it: welcome, moon-user$/m,
  backpressure: /^received 13107200 bytes in 200 messages$/m,
  "lua-and-hooks": /^the script answered: HELLO FROM TYPESCRIPT$[\s\S]*counted 1 message/m,
};

describe("examples/ts", () => {
  for (const [name, expected] of Object.entries(EXPECTED)) {
    it(`${name} runs and exits 0`, async () => {
      const stdout = await new Promise<string>((resolve, reject) =>
        execFile(
          process.execPath,
          [`${EXAMPLES}${name}.js`],
          { timeout: PATIENCE_MS * 2 },
          (error, out, err) =>
            error ? reject(new Error(`${error.message}\n${err}`)) : resolve(out),
        ),
      );
      assert.match(stdout, expected);
    });
  }
});
