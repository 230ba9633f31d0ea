/**
 * Linux: ask the kernel to SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG), so ranks
 * started by `mlxk launch` never outlive a killed launcher. Elsewhere (macOS) a no-op: launch's teardown
 * is then the only guard.
 */
import { dlopen, FFIType } from "bun:ffi";

const PR_SET_PDEATHSIG = 1;
const SIGKILL = 9;

/** Die with the parent process (the launcher, or a server supervisor it started); exits at once when already orphaned. */
export function dieWithParent(): void {
  if (process.platform !== "linux") return;
  try {
    const libc = dlopen("libc.so.6", { prctl: { args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32 } });
    libc.symbols.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  } catch {
    return; // no glibc (musl): launch's teardown still applies
  }
  // the parent may have died before prctl took effect (orphans are re-parented to init or a subreaper)
  if (process.ppid === 1) process.exit(1);
}

const POLLIN = 0x001;
let libcPoll: ((fds: Uint8Array, n: number, timeout: number) => number) | null | undefined;

/**
 * Block (in the kernel, no CPU) until `fd` has data to read or is closed; false where poll is unavailable.
 * MLX's ring socket thread busy-polls while a recv is pending, so a rank waits here first.
 */
export function waitReadable(fd: number, timeoutMs = -1): boolean {
  if (libcPoll === undefined) {
    try {
      const lib = dlopen(process.platform === "darwin" ? "libSystem.B.dylib" : "libc.so.6", { poll: { args: [FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i32 } });
      libcPoll = (fds, n, t) => lib.symbols.poll(fds, n, t);
    } catch {
      libcPoll = null;
    }
  }
  if (!libcPoll) return false;
  // struct pollfd { int fd; short events; short revents; }
  const buf = new Uint8Array(8);
  const view = new DataView(buf.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, POLLIN, true);
  for (;;) {
    const r = libcPoll(buf, 1, timeoutMs);
    if (r >= 0) return true;
    // EINTR (a signal): poll again
  }
}
