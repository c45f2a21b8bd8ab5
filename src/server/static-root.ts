/**
 * The folder behind `--static`: opens what a URL names and serves it only if what was opened
 * lies inside the folder and is not a dotfile, even while folders inside it are being swapped
 * for symlinks.
 *
 * Why "open, then verify" rather than "check, then open": a check on a path string (realpath,
 * lstat) and the open that follows are two lookups, and a folder on the way can become a
 * symlink to elsewhere between them; `O_NOFOLLOW` only guards the last component. Node has no
 * `openat`, so the lookup cannot be pinned to the folder either. On Linux, though,
 * `/proc/self/fd/N` names the file a descriptor refers to, as the kernel resolved it: so each
 * request opens its path (following symlinks, which keeps aliases inside the folder working),
 * reads back where the descriptor really points, refuses it unless that lies inside the
 * folder's real path, and serves from that descriptor only. Whatever is swapped, and whenever,
 * the check is about the file that will be sent: no leak however many tries. It is also cheap:
 * open + readlink + fstat, fewer system calls than a `realpath` walk.
 *
 * Where there is no `/proc` (macOS, Windows, a container without it), the folder falls back to
 * checking the `realpath` before opening the resolved path with `O_NOFOLLOW`. That refuses
 * every symlink leading out, but a folder swapped between the check and the open can still
 * win, rarely; run a static folder that others can write to on Linux.
 *
 * @module
 */

import {
  closeSync,
  constants,
  openSync,
  readlinkSync,
  realpathSync,
  type Stats,
  statSync,
} from "node:fs";
import { type FileHandle, open, readlink, realpath, stat } from "node:fs/promises";
import path from "node:path";

/** What {@link StaticRoot.open} found inside the folder. */
export type StaticEntry =
  /** A regular file, open: serve from `handle` (the caller closes it) and `stats` only. */
  | { readonly kind: "file"; readonly handle: FileHandle; readonly stats: Stats }
  /** A folder (nothing is kept open). */
  | { readonly kind: "directory" };

/** Where Linux shows each open descriptor as a link to its file. */
const PROC_FDS = "/proc/self/fd";

/**
 * Opening never blocks on a FIFO or takes a terminal as controlling tty: the type is only known
 * after the open (it is checked on the descriptor), so the open must be harmless for any type.
 */
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0) | (constants.O_NOCTTY ?? 0);

/**
 * Throws a one-line error unless `dir` is an existing folder: "static folder DIR does not
 * exist", "static folder DIR is not a folder", or "static folder DIR cannot be read: …".
 */
export function assertStaticFolder(dir: string): void {
  let stats: Stats;
  try {
    stats = statSync(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      throw new Error(`static folder ${dir} does not exist`);
    }
    throw new Error(`static folder ${dir} cannot be read: ${(error as Error).message}`);
  }
  if (!stats.isDirectory()) throw new Error(`static folder ${dir} is not a folder`);
}

/** A folder whose files are served; see the module comment for how it stays closed. */
export class StaticRoot {
  /** The folder's real path (symlinks resolved); requested paths are joined to it. */
  readonly path: string;
  /**
   * `true` where each opened descriptor is verified (Linux, `/proc`): no swap can leak a file.
   * `false` on the fallback, which checks the path before the open.
   */
  readonly verifiesAfterOpen: boolean;
  /** The real path as the kernel spells it, ending with a separator, to compare bytes with. */
  private readonly prefix: Buffer;

  private constructor(
    realPath: string,
    realBytes: Buffer,
    private readonly procFds: string | null,
  ) {
    this.path = realPath;
    this.verifiesAfterOpen = procFds !== null;
    const separator = Buffer.from(path.sep);
    this.prefix = realBytes.subarray(-separator.length).equals(separator)
      ? realBytes
      : Buffer.concat([realBytes, separator]);
  }

  /**
   * Opens the folder `dir` for serving.
   * @param procFds where descriptors show as links to their files; tests pass a missing folder
   *   to exercise the fallback.
   * @throws {Error} with a one-line message (see {@link assertStaticFolder}) if `dir` is not
   *   an existing folder.
   */
  static open(dir: string, procFds: string = PROC_FDS): StaticRoot {
    assertStaticFolder(dir);
    const realPath = realpathSync(dir);
    const kernelPath = kernelPathOf(realPath, procFds);
    return kernelPath === undefined
      ? new StaticRoot(realPath, Buffer.from(realPath), null)
      : new StaticRoot(realPath, kernelPath, procFds);
  }

  /**
   * Opens the entry named by URL `segments` (already decoded and free of `.`, `..` and
   * separators). Resolves `undefined` when it is missing, lies outside the folder (through a
   * symlink, however placed), is or lies in a dotfile, or is neither a file nor a folder.
   * @throws {Error} for failures other than those (too many open files…): the caller answers 500.
   */
  open(segments: readonly string[]): Promise<StaticEntry | undefined> {
    const candidate = path.join(this.path, ...segments);
    return this.verifiesAfterOpen ? this.openThenVerify(candidate) : this.checkThenOpen(candidate);
  }

  /**
   * Whether an open descriptor's file lies inside the folder and not in a dotfile, judged by
   * where the descriptor points now, not by the path it was opened with. Resolves `false` when
   * that cannot be proven: always, where there is no `/proc` ({@link verifiesAfterOpen} false).
   */
  async contains(handle: FileHandle): Promise<boolean> {
    if (this.procFds === null) return false;
    return this.isInside(await readlink(`${this.procFds}/${handle.fd}`, { encoding: "buffer" }));
  }

  private async openThenVerify(candidate: string): Promise<StaticEntry | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(candidate, OPEN_FLAGS);
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
    let keepOpen = false;
    try {
      if (!(await this.contains(handle))) return undefined;
      const stats = await handle.stat();
      if (stats.isDirectory()) return { kind: "directory" };
      if (!stats.isFile()) return undefined;
      keepOpen = true;
      return { kind: "file", handle, stats };
    } finally {
      if (!keepOpen) await handle.close().catch(() => {});
    }
  }

  /** The fallback without `/proc`: realpath, check, then open the checked path. */
  private async checkThenOpen(candidate: string): Promise<StaticEntry | undefined> {
    let real: string;
    let checked: Stats;
    try {
      real = await realpath(candidate);
      if (!this.isInside(Buffer.from(real))) return undefined;
      checked = await stat(real);
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
    if (checked.isDirectory()) return { kind: "directory" };
    if (!checked.isFile()) return undefined;
    let handle: FileHandle;
    try {
      // O_NOFOLLOW: `real` has no symlink left; refuse it if its last part became one.
      handle = await open(real, OPEN_FLAGS | (constants.O_NOFOLLOW ?? 0));
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
    const stats = await handle.stat().catch(async (error: unknown) => {
      await handle.close().catch(() => {});
      throw error;
    });
    if (!stats.isFile() || stats.ino !== checked.ino || stats.dev !== checked.dev) {
      await handle.close().catch(() => {});
      return undefined;
    }
    return { kind: "file", handle, stats };
  }

  /** `real` is the folder itself or lies under it, with no part of the way a dotfile. */
  private isInside(real: Buffer): boolean {
    if (real.equals(this.prefix) || real.equals(this.prefix.subarray(0, -1))) return true;
    if (
      real.length <= this.prefix.length ||
      !real.subarray(0, this.prefix.length).equals(this.prefix)
    ) {
      return false;
    }
    // latin1 keeps one character per byte, so no name is mangled before its first byte is read.
    const relative = real.subarray(this.prefix.length).toString("latin1");
    return !relative.split(path.sep).some((part) => part.startsWith("."));
  }
}

function isMissing(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return (
    code === "ENOENT" ||
    code === "ENOTDIR" ||
    code === "ELOOP" ||
    code === "EACCES" ||
    code === "EPERM" ||
    code === "EISDIR" ||
    code === "ENAMETOOLONG"
  );
}

/**
 * The folder's path as the kernel shows it for a descriptor, or `undefined` where it cannot be
 * read back: no `/proc`, or a folder that cannot be opened (Windows opens no folders).
 */
function kernelPathOf(folder: string, procFds: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(folder, OPEN_FLAGS);
  } catch {
    return undefined;
  }
  try {
    return readlinkSync(`${procFds}/${fd}`, { encoding: "buffer" });
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}
