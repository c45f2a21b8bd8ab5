import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import {
  type FileHandle,
  mkdir,
  mkdtemp,
  open,
  rename,
  rm,
  symlink,
  unlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { type StaticEntry, StaticRoot } from "../../../src/server/static-root.js";

const HAS_PROC = existsSync("/proc/self/fd");

let base: string;
let root: string;
let outside: string;

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), "moonsocket-static-root-"));
  root = path.join(base, "public");
  outside = path.join(base, "outside");
  await mkdir(path.join(root, "sub"), { recursive: true });
  await mkdir(path.join(root, ".hidden"));
  await mkdir(path.join(root, "box"));
  await mkdir(outside);
  // Shares the root's name as a prefix: a string prefix test without a separator lets it in.
  await mkdir(path.join(base, "public-other"));
  await writeFile(path.join(root, "a.txt"), "inside a");
  await writeFile(path.join(root, "sub", "b.txt"), "inside b");
  await writeFile(path.join(root, ".env"), "SECRET");
  await writeFile(path.join(root, ".hidden", "c.txt"), "SECRET");
  await writeFile(path.join(root, "box", "data.txt"), "inside box");
  await writeFile(path.join(outside, "data.txt"), "OUTSIDE");
  await writeFile(path.join(base, "public-other", "data.txt"), "OUTSIDE");
  await symlink(path.join(root, "a.txt"), path.join(root, "alias.txt"));
  await symlink(path.join(root, "sub"), path.join(root, "sub-alias"));
  await symlink(path.join(outside, "data.txt"), path.join(root, "out-file.txt"));
  await symlink(outside, path.join(root, "out-dir"));
  await symlink(path.join(base, "public-other"), path.join(root, "prefix-twin"));
  await symlink(path.join(root, ".env"), path.join(root, "env-alias.txt"));
  await symlink(path.join(root, ".hidden"), path.join(root, "hidden-alias"));
  await symlink(root, path.join(base, "way-in"));
});

after(async () => {
  await rm(base, { recursive: true, force: true });
});

/** The content of an entry that must be a file; closes its handle. */
async function contentOf(entry: StaticEntry | undefined): Promise<string> {
  assert.equal(entry?.kind, "file");
  if (entry?.kind !== "file") return "";
  try {
    return await entry.handle.readFile("utf8");
  } finally {
    await entry.handle.close();
  }
}

const modes = [
  { name: "verifying each descriptor through /proc", procFds: "/proc/self/fd", skip: !HAS_PROC },
  { name: "the fallback without /proc", procFds: "/nonexistent-proc-fds", skip: false },
];

for (const mode of modes) {
  describe(`StaticRoot, ${mode.name}`, { skip: mode.skip && "no /proc here" }, () => {
    let staticRoot: StaticRoot;
    before(() => {
      staticRoot = StaticRoot.open(root, mode.procFds);
    });

    it("says which way it checks", () => {
      assert.equal(staticRoot.verifiesAfterOpen, mode.procFds === "/proc/self/fd");
    });

    it("opens files, and folders as directories", async () => {
      assert.equal(await contentOf(await staticRoot.open(["a.txt"])), "inside a");
      assert.equal(await contentOf(await staticRoot.open(["sub", "b.txt"])), "inside b");
      assert.deepEqual(await staticRoot.open([]), { kind: "directory" });
      assert.deepEqual(await staticRoot.open(["sub"]), { kind: "directory" });
    });

    it("follows symlinks that stay inside the folder", async () => {
      assert.equal(await contentOf(await staticRoot.open(["alias.txt"])), "inside a");
      assert.equal(await contentOf(await staticRoot.open(["sub-alias", "b.txt"])), "inside b");
    });

    it("refuses whatever a symlink leads to outside the folder", async () => {
      for (const segments of [
        ["out-file.txt"],
        ["out-dir"],
        ["out-dir", "data.txt"],
        ["prefix-twin", "data.txt"],
      ]) {
        assert.equal(await staticRoot.open(segments), undefined, segments.join("/"));
      }
    });

    it("refuses dotfiles and dot folders, also through symlinks", async () => {
      for (const segments of [
        [".env"],
        [".hidden", "c.txt"],
        ["env-alias.txt"],
        ["hidden-alias", "c.txt"],
      ]) {
        assert.equal(await staticRoot.open(segments), undefined, segments.join("/"));
      }
    });

    it("declines missing entries and paths through a file", async () => {
      assert.equal(await staticRoot.open(["missing.txt"]), undefined);
      assert.equal(await staticRoot.open(["a.txt", "x"]), undefined);
      assert.equal(await staticRoot.open(["x".repeat(5000)]), undefined);
    });
  });
}

describe("StaticRoot on special files", { skip: !HAS_PROC && "no /proc here" }, () => {
  // The timeout is only a safety net: a blocking open would never return.
  it("declines a FIFO without waiting for a writer", { timeout: 30_000 }, async (t) => {
    const fifo = path.join(root, "pipe.txt");
    if (spawnSync("mkfifo", [fifo]).status !== 0) {
      t.skip("no mkfifo");
      return;
    }
    try {
      // A blocking open would wait here for a writer that never comes (the test times out).
      assert.equal(await StaticRoot.open(root).open(["pipe.txt"]), undefined);
    } finally {
      await unlink(fifo);
    }
  });
});

describe("StaticRoot.contains", { skip: !HAS_PROC && "no /proc here" }, () => {
  let staticRoot: StaticRoot;
  before(() => {
    staticRoot = StaticRoot.open(root);
  });

  it("judges the file a descriptor holds, not the path it was opened by", async () => {
    // The race of a swapped folder, played out step by step: `box` is a symlink to the outside
    // folder when the file is opened, and a real folder again when the open is judged. A check
    // of the path now finds root/box/data.txt, a plain file inside; the descriptor is not.
    const box = path.join(root, "box");
    const saved = path.join(root, ".box-saved");
    let handle: FileHandle | undefined;
    await rename(box, saved);
    try {
      await symlink(outside, box);
      handle = await open(path.join(box, "data.txt"));
      await unlink(box);
    } finally {
      await rename(saved, box);
    }
    try {
      assert.equal(await handle.readFile("utf8"), "OUTSIDE");
      assert.equal(await staticRoot.contains(handle), false);
    } finally {
      await handle.close();
    }
  });

  it("accepts a file inside, whatever way led to it", async () => {
    for (const way of [path.join(root, "a.txt"), path.join(base, "way-in", "a.txt")]) {
      const handle = await open(way);
      try {
        assert.equal(await staticRoot.contains(handle), true, way);
      } finally {
        await handle.close();
      }
    }
  });

  it("refuses a dotfile inside", async () => {
    const handle = await open(path.join(root, ".env"));
    try {
      assert.equal(await staticRoot.contains(handle), false);
    } finally {
      await handle.close();
    }
  });
});

describe("StaticRoot.open", () => {
  it("names a missing folder or a file in one line", () => {
    const missing = path.join(base, "nope");
    assert.throws(() => StaticRoot.open(missing), {
      message: `static folder ${missing} does not exist`,
    });
    const file = path.join(root, "a.txt");
    assert.throws(() => StaticRoot.open(file), {
      message: `static folder ${file} is not a folder`,
    });
  });

  it("serves a folder reached through a symlink", async () => {
    const staticRoot = StaticRoot.open(path.join(base, "way-in"));
    assert.equal(await contentOf(await staticRoot.open(["a.txt"])), "inside a");
  });
});
