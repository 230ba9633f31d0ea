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
