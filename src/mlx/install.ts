/**
 * Sets the MLX runtime up: fetch the pinned MLX wheel from PyPI with pip (wheel-select.ts: mlx-metal on macOS
 * arm64, mlx-cuda-12/13 plus the CUDA runtime wheels on Linux with an NVIDIA driver, mlx-cpu otherwise), check
 * its sha256, unpack it keeping its layout, and build our C shim (mlx-c/) against it. A CUDA setup that fails
 * falls back to mlx-cpu with one message.
 * Work that is already current is skipped. Two layouts: the repo's (.mlx/wheel + mlx-c/build, for
 * `npm install` in a checkout) and the per-user one ($XDG_DATA_HOME/mlxk/<mlx-version>/, first use of a
 * packaged mlxk). Throws InstallError with one message saying what to install; touches no FFI.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join, relative } from "node:path";
import { type Env, mlxDir, mlxkDataDir } from "../env.ts";
import {
  type BackendMarker,
  backendMarkerFile,
  LIB_SUFFIX,
  MLX_VERSION,
  mlxRoot,
  mlxStateDir,
  REPO_ROOT,
  SHIM_NAME,
  sourceRoot,
  shimBuildDir,
  shimSources,
  userRuntimeDir,
  userShimPath,
  type WheelPin,
  wheelDir,
} from "./paths.ts";
import { type Backend, chooseWheel, probeHost, type WheelChoice, WheelChoiceError } from "./wheel-select.ts";

export class InstallError extends Error {}

/** Where one runtime lives. */
export interface RuntimeLayout {
  /** The unpacked wheel: <wheelDir>/mlx/{lib,include}, <wheelDir>/mlx_cpu.libs. */
  wheelDir: string;
  downloadDir: string;
  /** Keep the downloaded .whl (the repo keeps it for build-platform-package and the first-use test). */
  keepDownload: boolean;
  shim: string;
  stamp: string;
}

export function repoLayout(root = REPO_ROOT): RuntimeLayout {
  return {
    wheelDir: wheelDir(root),
    downloadDir: join(mlxStateDir(root), "download"),
    keepDownload: true,
    shim: join(shimBuildDir(root), SHIM_NAME),
    stamp: join(shimBuildDir(root), "stamp.json"),
  };
}

/** The sidecar layout in the user's data dir: the shim sits beside mlx/ and mlx_cpu.libs/. */
export function userLayout(env: Env = process.env, root = sourceRoot()): RuntimeLayout {
  const shim = userShimPath(env, root);
  if (!shim) throw new InstallError("this mlxk has no mlx-c/ sources to build the MLX shim from");
  return {
    wheelDir: userRuntimeDir(env),
    downloadDir: join(mlxkDataDir(env), "download"),
    keepDownload: false,
    shim,
    stamp: `${shim}.stamp.json`,
  };
}

export interface InstallOptions {
  env?: Env;
  force?: boolean;
  /** One-line progress messages (stderr). */
  log?: (msg: string) => void;
  /** On a terminal pip draws its progress bar and compiling shows a counter. */
  tty?: boolean;
  /** Cross builds (release archives): another platform's wheel and compiler; no load test then. */
  pin?: WheelPin;
  /** The wheel to install (default: chooseWheel on this host's facts and MLXK_BACKEND). */
  choice?: WheelChoice;
  cxx?: string;
}

export interface InstallResult {
  mlxVersion: string;
  mlxRoot: string;
  shim: string;
  wheel?: string;
  /** The device the installed MLX serves and why (null with MLX_DIR: whatever that build has). */
  backend: Backend | null;
  backendReason: string;
  /** False when everything was already current. */
  did: boolean;
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string[], env: Env, cwd?: string): Run {
  try {
    const p = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe", env });
    return { code: p.exitCode ?? 1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
  } catch (e) {
    return { code: 127, stdout: "", stderr: String(e) };
  }
}

function tail(s: string, lines = 15): string {
  return s.trim().split("\n").slice(-lines).join("\n");
}

/** Which wheel this machine needs (wheel-select.ts on this host's facts; MLXK_BACKEND overrides). */
export function pickWheel(env: Env = process.env): WheelChoice {
  try {
    return chooseWheel(probeHost(env), env);
  } catch (e) {
    if (e instanceof WheelChoiceError) throw new InstallError(e.message);
    throw e;
  }
}

function sha256(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

/** The first python with a working pip, or null. */
export function findPython(env: Env = process.env): string | null {
  for (const py of ["python3", "python"]) {
    if (run([py, "-m", "pip", "--version"], env).code === 0) return py;
  }
  return null;
}

function python(env: Env): string {
  const py = findPython(env);
  if (py) return py;
  throw new InstallError(
    "Python's pip was not found (needed only to download the MLX wheel from PyPI). Install python3 with pip " +
      "(Debian/Ubuntu: apt install python3-pip; macOS: brew install python), or set MLX_DIR to an existing MLX install.",
  );
}

interface WheelMarker {
  file: string;
  sha256: string;
}

const markerPath = (l: RuntimeLayout): string => join(l.wheelDir, "installed.json");

function wheelCurrent(l: RuntimeLayout, pin: WheelPin): boolean {
  try {
    const m = JSON.parse(readFileSync(markerPath(l), "utf8")) as WheelMarker;
    return m.file === pin.file && m.sha256 === pin.sha256 && existsSync(join(l.wheelDir, "mlx", "lib", `libmlx.${LIB_SUFFIX}`));
  } catch {
    return false;
  }
}

/** pip download → verify sha256 → unzip into wheelDir (replacing an older one). Returns true if it did work. */
function ensureWheel(l: RuntimeLayout, pin: WheelPin, o: Required<InstallOptions>): boolean {
  if (wheelCurrent(l, pin)) return false;
  const py = python(o.env);
  mkdirSync(l.downloadDir, { recursive: true });
  const target = join(l.downloadDir, pin.file);
  if (!existsSync(target) || sha256(target) !== pin.sha256) {
    rmSync(target, { force: true });
    o.log(`downloading ${pin.package}==${MLX_VERSION} (${pin.platform}) from PyPI with ${py} -m pip…`);
    const args = [
      py, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--platform", pin.platform,
      "--disable-pip-version-check", "-d", l.downloadDir, `${pin.package}==${MLX_VERSION}`,
    ];
    // on a terminal pip draws its own progress bar; otherwise keep its output for the error message
    let r: Run;
    if (o.tty) {
      const p = Bun.spawnSync(args, { stdout: "inherit", stderr: "inherit", env: o.env });
      r = { code: p.exitCode ?? 1, stdout: "", stderr: "(pip's output is above)" };
    } else {
      r = run([...args.slice(0, 3), "-q", ...args.slice(3)], o.env);
    }
    if (r.code !== 0 || !existsSync(target)) {
      throw new InstallError(
        `pip could not download ${pin.file} — is PyPI reachable (network, proxy, PIP_INDEX_URL)?\n${tail(r.stderr || r.stdout)}`,
      );
    }
  }
  const got = sha256(target);
  if (got !== pin.sha256) {
    rmSync(target, { force: true });
    throw new InstallError(`sha256 mismatch for ${pin.file}: expected ${pin.sha256}, got ${got}; the file was deleted.`);
  }
  const tmp = `${l.wheelDir}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  const r = run([py, "-m", "zipfile", "-e", target, tmp], o.env);
  if (r.code !== 0) throw new InstallError(`could not unpack ${pin.file}:\n${tail(r.stderr)}`);
  rmSync(l.wheelDir, { recursive: true, force: true });
  mkdirSync(dirname(l.wheelDir), { recursive: true });
  renameSync(tmp, l.wheelDir);
  writeFileSync(markerPath(l), JSON.stringify({ file: pin.file, sha256: pin.sha256 } satisfies WheelMarker, null, 2));
  if (!l.keepDownload) rmSync(target, { force: true });
  return true;
}

const runtimeMarker = (l: RuntimeLayout): string => join(l.wheelDir, "cuda-runtime.json");

/**
 * The CUDA libraries libmlx links against (cuBLAS, cuDNN, NCCL, …), from PyPI with their dependencies, unpacked
 * beside mlx/ where libmlx's RPATH looks ($ORIGIN/../../nvidia/<lib>/lib). pip resolves the versions MLX's
 * wheel metadata allows; the MLX wheel itself stays sha256-pinned.
 */
function ensureCudaRuntime(l: RuntimeLayout, choice: WheelChoice, o: Required<InstallOptions>): boolean {
  if (choice.runtime.length === 0) return false;
  try {
    if (JSON.stringify(JSON.parse(readFileSync(runtimeMarker(l), "utf8"))) === JSON.stringify(choice.runtime)) return false;
  } catch {}
  const py = python(o.env);
  const dl = join(l.downloadDir, `cuda-runtime-${choice.pin.package}`);
  rmSync(dl, { recursive: true, force: true });
  mkdirSync(dl, { recursive: true });
  o.log(`downloading the CUDA runtime for ${choice.pin.package} from PyPI (${choice.runtime.length} packages and their dependencies, several GB)…`);
  const args = [py, "-m", "pip", "download", "--only-binary=:all:", "--platform", choice.pin.platform, "--disable-pip-version-check", "-d", dl, ...choice.runtime];
  const r = o.tty ? (() => {
    const p = Bun.spawnSync(args, { stdout: "inherit", stderr: "inherit", env: o.env });
    return { code: p.exitCode ?? 1, stdout: "", stderr: "(pip's output is above)" };
  })() : run([...args.slice(0, 3), "-q", ...args.slice(3)], o.env);
  if (r.code !== 0) throw new InstallError(`pip could not download the CUDA runtime (${choice.runtime.join(" ")}):\n${tail(r.stderr || r.stdout)}`);
  for (const f of readdirSync(dl).filter((n) => n.endsWith(".whl"))) {
    const u = run([py, "-m", "zipfile", "-e", join(dl, f), l.wheelDir], o.env);
    if (u.code !== 0) throw new InstallError(`could not unpack ${f}:\n${tail(u.stderr)}`);
  }
  rmSync(dl, { recursive: true, force: true });
  writeFileSync(runtimeMarker(l), JSON.stringify(choice.runtime));
  return true;
}

/** The first working C++ compiler ($CXX, then the platform's usual ones), or null. */
export function findCompiler(env: Env = process.env): string | null {
  const candidates = [env.CXX, process.platform === "darwin" ? "clang++" : "g++", "clang++", "g++"];
  for (const c of candidates) {
    if (c && run([c, "--version"], env).code === 0) return c;
  }
  return null;
}

function compiler(env: Env, cxx?: string): string {
  const c = cxx ?? findCompiler(env);
  if (c) return c;
  throw new InstallError(
    "no C++20 compiler found to build the MLX shim (mlx-c/). Install g++ >= 10 (Debian/Ubuntu: apt install g++) " +
      "or clang++ (macOS: xcode-select --install), or set CXX, then run the command again.",
  );
}

interface BuildStamp {
  mlxRoot: string;
  cxx: string;
  version: string;
}

/**
 * The RPATH lets the shim find libmlx without LD_LIBRARY_PATH: the wheel ($ORIGIN-relative unless MLX_DIR
 * points elsewhere), then $ORIGIN and $ORIGIN/mlx/lib for the sidecar layout (compiled exe, platform
 * package, user runtime).
 */
function rpathFlags(l: RuntimeLayout, root: string, custom: boolean): string[] {
  const origin = process.platform === "darwin" ? "@loader_path" : "$ORIGIN";
  const lib = join(root, "lib");
  const rel = relative(dirname(l.shim), lib);
  const paths = [custom ? lib : `${origin}/${rel}`, origin, `${origin}/mlx/lib`];
  return [...new Set(paths)].map((p) => `-Wl,-rpath,${p}`);
}

/** Compile each source to an object (2 jobs at most: the box is shared), then link. Returns true if it built. */
async function ensureShim(l: RuntimeLayout, root: string, custom: boolean, o: Required<InstallOptions>): Promise<boolean> {
  const build = dirname(l.shim);
  const src = sourceRoot();
  if (!src) throw new InstallError("this mlxk has no mlx-c/ sources to build the MLX shim from");
  const version = readFileSync(join(src, "mlx-c", "VERSION"), "utf8").trim();
  const libmlx = join(root, "lib", `libmlx.${LIB_SUFFIX}`);
  const inputsMtime = Math.max(...[...shimSources(src), libmlx].map((f) => statSync(f).mtimeMs));
  let stamp: BuildStamp | null = null;
  try {
    stamp = JSON.parse(readFileSync(l.stamp, "utf8")) as BuildStamp;
  } catch {}
  if (!o.force && stamp?.mlxRoot === root && stamp.version === version && existsSync(l.shim) && statSync(l.shim).mtimeMs > inputsMtime) {
    return false;
  }
  const cxx = compiler(o.env, o.cxx);
  // Per-process object dir and atomic rename: concurrent installs must not clobber each other.
  const objDir = join(build, `obj.${process.pid}`);
  rmSync(objDir, { recursive: true, force: true });
  mkdirSync(objDir, { recursive: true });
  const common = [
    "-std=c++20", "-O2", "-fPIC", "-fvisibility=hidden", `-DMLXK_VERSION="${version}"`,
    `-I${join(src, "mlx-c", "include")}`, `-I${join(root, "include")}`,
  ];
  const srcDir = join(src, "mlx-c", "src");
  const sources = shimSources(src).filter((f) => f.endsWith(".cpp")).map((f) => relative(srcDir, f));
  const objOf = (f: string): string => join(objDir, f.replace(/\.cpp$/, ".o").replaceAll("/", "_"));
  o.log(`building ${SHIM_NAME} (${sources.length} files) with ${cxx}…`);
  const jobs = Math.max(1, Math.min(2, cpus().length));
  const queue = [...sources];
  const errors: string[] = [];
  let done = 0;
  const worker = async (): Promise<void> => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
      const p = Bun.spawn([cxx, ...common, "-c", join(srcDir, f), "-o", objOf(f)], { stdout: "pipe", stderr: "pipe", env: o.env });
      const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
      if (code !== 0) errors.push(`${f}:\n${tail(err, 20)}`);
      done++;
      if (o.tty) process.stderr.write(`\r\x1b[2Kmlxk: compiled ${done}/${sources.length} ${f}${done === sources.length ? "\n" : ""}`);
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  if (errors.length > 0) rmSync(objDir, { recursive: true, force: true });
  if (errors.length > 0) throw new InstallError(`compiling mlx-c/ failed:\n${errors.join("\n")}`);
  const objs = sources.map(objOf);
  const shared = process.platform === "darwin" ? ["-dynamiclib", "-install_name", `@rpath/${SHIM_NAME}`] : ["-shared"];
  const tmpOut = `${l.shim}.${process.pid}.tmp`;
  const link = run([cxx, ...shared, "-o", tmpOut, ...objs, `-L${join(root, "lib")}`, "-lmlx", ...rpathFlags(l, root, custom)], o.env);
  rmSync(objDir, { recursive: true, force: true });
  if (link.code !== 0) {
    rmSync(tmpOut, { force: true });
    throw new InstallError(`linking ${SHIM_NAME} failed:\n${tail(link.stderr)}`);
  }
  renameSync(tmpOut, l.shim);
  writeFileSync(l.stamp, JSON.stringify({ mlxRoot: root, cxx, version } satisfies BuildStamp, null, 2));
  return true;
}

/**
 * Load the fresh shim in a child process: catches glibc/ABI problems (and, for a GPU build, missing CUDA
 * libraries or no visible device) now instead of at first inference. Returns MLX's version and whether it has a GPU.
 */
function smokeTest(shim: string, env: Env): { version: string; gpu: boolean } {
  const code = `const {dlopen,CString}=require("bun:ffi");const l=dlopen(${JSON.stringify(shim)},{mlxk_mlx_version:{args:[],returns:"ptr"},mlxk_device_count:{args:["i32"],returns:"i32"}});console.log(new CString(l.symbols.mlxk_mlx_version()).toString()+" "+l.symbols.mlxk_device_count(1))`;
  // BUN_BE_BUN: a compiled mlxk executable then acts as the bun CLI (for -e)
  const r = run([process.execPath, "-e", code], { ...env, BUN_BE_BUN: "1" });
  if (r.code !== 0) throw new InstallError(`the built shim does not load:\n${tail(r.stderr)}`);
  const [version = "", gpu] = r.stdout.trim().split(" ");
  return { version, gpu: Number(gpu) > 0 };
}

/** Run `attempt` with a CUDA choice; when it fails, say so once and run it again with the CPU wheel. */
export async function withCpuFallback<R>(
  choice: WheelChoice,
  cpu: () => WheelChoice,
  attempt: (c: WheelChoice) => Promise<R>,
  log: (msg: string) => void,
): Promise<{ result: R; choice: WheelChoice }> {
  try {
    return { result: await attempt(choice), choice };
  } catch (e) {
    if (choice.backend !== "cuda" || !(e instanceof InstallError)) throw e;
    // the first line, and the next when it only introduces it ("…does not load:" + the loader's error)
    const lines = e.message.split("\n").map((l) => l.trim()).filter(Boolean);
    const why = lines[0]?.endsWith(":") && lines[1] ? `${lines[0]} ${lines[1]}` : (lines[0] ?? "unknown error");
    log(`CUDA setup failed (${why}); installing the CPU build (mlx-cpu) instead. Fix the cause and rerun \`bun scripts/install-mlx.ts\`, or set MLXK_BACKEND=cpu to stop trying.`);
    const c = cpu();
    const fallback = { ...c, reason: `CUDA setup failed (${why}); fell back to CPU` };
    return { result: await attempt(fallback), choice: fallback };
  }
}

/** Fetch, verify, unpack and build into `layout`; throws InstallError. */
export async function installRuntime(layout: RuntimeLayout, opts: InstallOptions = {}): Promise<InstallResult> {
  const o = { env: process.env, force: false, log: () => {}, tty: false, ...opts } as Required<InstallOptions>;
  const custom = mlxDir(o.env);
  if (custom) {
    const root = mlxRoot(o.env);
    for (const need of [join(root, "lib", `libmlx.${LIB_SUFFIX}`), join(root, "include", "mlx", "mlx.h")]) {
      if (!existsSync(need)) throw new InstallError(`MLX_DIR=${custom} has no ${relative(root, need)} (expected an MLX install such as site-packages/mlx).`);
    }
    mkdirSync(dirname(layout.shim), { recursive: true });
    const did = await ensureShim(layout, root, true, o);
    const smoke = smokeTest(layout.shim, o.env);
    const backend: Backend = smoke.gpu ? (process.platform === "darwin" ? "metal" : "cuda") : "cpu";
    return { mlxVersion: smoke.version, mlxRoot: root, shim: layout.shim, backend, backendReason: `MLX_DIR=${custom}`, did };
  }
  if (opts.pin) {
    // a cross build for a release archive: that platform's CPU/Metal wheel, not loadable here
    const choice: WheelChoice = { backend: opts.pin.package === "mlx-metal" ? "metal" : "cpu", pin: opts.pin, runtime: [], reason: "release build" };
    const did = ensureWheel(layout, opts.pin, o);
    const root = join(layout.wheelDir, "mlx");
    mkdirSync(dirname(layout.shim), { recursive: true });
    const built = await ensureShim(layout, root, false, { ...o, force: o.force || did });
    return { mlxVersion: MLX_VERSION, mlxRoot: root, shim: layout.shim, wheel: opts.pin.file, backend: choice.backend, backendReason: choice.reason, did: did || built };
  }
  const first = opts.choice ?? pickWheel(o.env);
  const attempt = async (c: WheelChoice): Promise<InstallResult> => {
    let did = ensureWheel(layout, c.pin, o);
    did = ensureCudaRuntime(layout, c, o) || did;
    const root = join(layout.wheelDir, "mlx");
    mkdirSync(dirname(layout.shim), { recursive: true });
    did = (await ensureShim(layout, root, false, { ...o, force: o.force || did })) || did;
    const smoke = smokeTest(layout.shim, o.env);
    if (c.backend === "cuda" && !smoke.gpu) throw new InstallError("the CUDA build of MLX loads but sees no GPU device");
    return { mlxVersion: smoke.version, mlxRoot: root, shim: layout.shim, wheel: c.pin.file, backend: c.backend, backendReason: c.reason, did };
  };
  const cpuChoice = () => pickWheel({ ...o.env, MLXK_BACKEND: "cpu" });
  const r = (await withCpuFallback(first, cpuChoice, attempt, o.log)).result;
  if (r.backend) {
    const m: BackendMarker = { backend: r.backend, reason: r.backendReason, wheel: r.wheel ?? null };
    writeFileSync(backendMarkerFile(layout.wheelDir), JSON.stringify(m, null, 2));
  }
  return r;
}
