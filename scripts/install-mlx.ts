/**
 * postinstall: fetch the pinned MLX backend wheel from PyPI (mlx-cpu on Linux, mlx-metal on macOS arm64),
 * unpack it into .mlx/wheel keeping its layout, and build our C shim (mlx-c/) against it into
 * mlx-c/build/libmlxk.{so,dylib}. Work that is already current is skipped.
 *
 * It never fails `npm install`: on any problem it prints ONE message saying what to install, records
 * the reason in .mlx/status.json (read by the runtime to explain why MLX is unavailable) and exits 0,
 * so commands that need no inference keep working.
 *
 * Usage: bun scripts/install-mlx.ts [--force]     (MLX_DIR=<dir with lib/ and include/> to use an existing MLX)
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { join, relative } from "node:path";
import { mlxDir } from "../src/env.ts";
import {
  type InstallStatus,
  LIB_SUFFIX,
  MLX_VERSION,
  mlxRoot,
  mlxStateDir,
  REPO_ROOT,
  SHIM_NAME,
  shimBuildDir,
  statusFile,
  WHEEL_PINS,
  type WheelPin,
  wheelDir,
} from "../src/mlx/paths.ts";

class InstallError extends Error {}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string[], cwd = REPO_ROOT): Run {
  try {
    const p = Bun.spawnSync(cmd, { cwd, stdout: "pipe", stderr: "pipe", env: process.env });
    return { code: p.exitCode ?? 1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
  } catch (e) {
    return { code: 127, stdout: "", stderr: String(e) };
  }
}

function tail(s: string, lines = 15): string {
  return s.trim().split("\n").slice(-lines).join("\n");
}

/** Which wheel this machine needs; the macOS tag follows the running macOS major version. */
function pickWheel(): WheelPin {
  const { platform, arch } = process;
  let tag: string | undefined;
  if (platform === "linux" && arch === "x64") tag = "manylinux_2_35_x86_64";
  else if (platform === "linux" && arch === "arm64") tag = "manylinux_2_35_aarch64";
  else if (platform === "darwin" && arch === "arm64") {
    const major = Number.parseInt(run(["sw_vers", "-productVersion"]).stdout.trim().split(".")[0] ?? "", 10);
    tag = major >= 26 ? "macosx_26_0_arm64" : major >= 15 ? "macosx_15_0_arm64" : "macosx_14_0_arm64";
  }
  const pin = WHEEL_PINS.find((p) => p.platform === tag);
  if (!pin) {
    throw new InstallError(
      `no MLX wheel for ${platform}/${arch}: MLX ${MLX_VERSION} ships for Linux x86-64/aarch64 (glibc >= 2.35) and macOS arm64 ≥ 14. ` +
        "Set MLX_DIR to an MLX install (a dir with lib/ and include/) to use your own build.",
    );
  }
  return pin;
}

function sha256(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

function python(): string {
  for (const py of ["python3", "python"]) {
    if (run([py, "-m", "pip", "--version"]).code === 0) return py;
  }
  throw new InstallError(
    "Python's pip was not found (needed only to download the MLX wheel from PyPI). Install python3 with pip " +
      "(Debian/Ubuntu: apt install python3-pip; macOS: brew install python), or set MLX_DIR to an existing MLX install.",
  );
}

interface WheelMarker {
  file: string;
  sha256: string;
}

const markerPath = (): string => join(wheelDir(), "installed.json");

function wheelCurrent(pin: WheelPin): boolean {
  try {
    const m = JSON.parse(readFileSync(markerPath(), "utf8")) as WheelMarker;
    return m.file === pin.file && m.sha256 === pin.sha256 && existsSync(join(wheelDir(), "mlx", "lib", `libmlx.${LIB_SUFFIX}`));
  } catch {
    return false;
  }
}

/** pip download → verify sha256 → unzip into .mlx/wheel (replacing an older one). Returns true if it did work. */
function ensureWheel(pin: WheelPin): boolean {
  if (wheelCurrent(pin)) return false;
  const py = python();
  const dl = join(mlxStateDir(), "download");
  mkdirSync(dl, { recursive: true });
  const target = join(dl, pin.file);
  if (!existsSync(target) || sha256(target) !== pin.sha256) {
    rmSync(target, { force: true });
    log(`downloading ${pin.package}==${MLX_VERSION} (${pin.platform}) from PyPI…`);
    const r = run([
      py, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--platform", pin.platform,
      "--disable-pip-version-check", "-q", "-d", dl, `${pin.package}==${MLX_VERSION}`,
    ]);
    if (r.code !== 0 || !existsSync(target)) {
      throw new InstallError(`pip could not download ${pin.file} (is PyPI reachable?):\n${tail(r.stderr || r.stdout)}`);
    }
  }
  const got = sha256(target);
  if (got !== pin.sha256) {
    rmSync(target, { force: true });
    throw new InstallError(`sha256 mismatch for ${pin.file}: expected ${pin.sha256}, got ${got}; the file was deleted.`);
  }
  const tmp = `${wheelDir()}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  const r = run([py, "-m", "zipfile", "-e", target, tmp]);
  if (r.code !== 0) throw new InstallError(`could not unpack ${pin.file}:\n${tail(r.stderr)}`);
  rmSync(wheelDir(), { recursive: true, force: true });
  renameSync(tmp, wheelDir());
  writeFileSync(markerPath(), JSON.stringify({ file: pin.file, sha256: pin.sha256 } satisfies WheelMarker, null, 2));
  rmSync(target, { force: true });
  return true;
}

function compiler(): string {
  const candidates = [process.env.CXX, process.platform === "darwin" ? "clang++" : "g++", "clang++", "g++"];
  for (const c of candidates) {
    if (c && run([c, "--version"]).code === 0) return c;
  }
  throw new InstallError(
    "no C++20 compiler found to build the MLX shim (mlx-c/). Install g++ >= 10 (Debian/Ubuntu: apt install g++) " +
      "or clang++ (macOS: xcode-select --install), or set CXX, then run `npm install` again.",
  );
}

/** Every file under mlx-c/src and mlx-c/include (recursive), plus VERSION: the shim's inputs. */
function shimSources(): string[] {
  const dir = join(REPO_ROOT, "mlx-c");
  const files = (sub: string): string[] =>
    readdirSync(join(dir, sub), { recursive: true, withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name));
  return [...files("src"), ...files("include"), join(dir, "VERSION")];
}

interface BuildStamp {
  mlxRoot: string;
  cxx: string;
  version: string;
}

/**
 * The RPATH lets the shim find libmlx without LD_LIBRARY_PATH: the wheel ($ORIGIN-relative while it sits in
 * the repo), then $ORIGIN and $ORIGIN/mlx/lib for the sidecar layout of copyRuntimeSidecar() (compiled exe).
 */
function rpathFlags(root: string): string[] {
  const origin = process.platform === "darwin" ? "@loader_path" : "$ORIGIN";
  const lib = join(root, "lib");
  const rel = relative(shimBuildDir(), lib);
  const inRepo = !relative(REPO_ROOT, lib).startsWith("..");
  const paths = [inRepo ? `${origin}/${rel}` : lib, origin, `${origin}/mlx/lib`];
  return paths.map((p) => `-Wl,-rpath,${p}`);
}

/** Compile each source to an object (2 jobs at most: the box is shared), then link. Returns true if it built. */
async function ensureShim(root: string, force: boolean): Promise<boolean> {
  const build = shimBuildDir();
  const out = join(build, SHIM_NAME);
  const stampFile = join(build, "stamp.json");
  const version = readFileSync(join(REPO_ROOT, "mlx-c", "VERSION"), "utf8").trim();
  const libmlx = join(root, "lib", `libmlx.${LIB_SUFFIX}`);
  const inputsMtime = Math.max(...[...shimSources(), libmlx].map((f) => statSync(f).mtimeMs));
  let stamp: BuildStamp | null = null;
  try {
    stamp = JSON.parse(readFileSync(stampFile, "utf8")) as BuildStamp;
  } catch {}
  if (!force && stamp?.mlxRoot === root && stamp.version === version && existsSync(out) && statSync(out).mtimeMs > inputsMtime) {
    return false;
  }
  const cxx = compiler();
  // Per-process object dir and atomic rename: concurrent installs in one checkout must not clobber each other.
  const objDir = join(build, `obj.${process.pid}`);
  rmSync(objDir, { recursive: true, force: true });
  mkdirSync(objDir, { recursive: true });
  const common = [
    "-std=c++20", "-O2", "-fPIC", "-fvisibility=hidden", `-DMLXK_VERSION="${version}"`,
    `-I${join(REPO_ROOT, "mlx-c", "include")}`, `-I${join(root, "include")}`,
  ];
  const srcDir = join(REPO_ROOT, "mlx-c", "src");
  const sources = shimSources().filter((f) => f.endsWith(".cpp")).map((f) => relative(srcDir, f));
  const objOf = (f: string): string => join(objDir, f.replace(/\.cpp$/, ".o").replaceAll("/", "_"));
  log(`building ${SHIM_NAME} (${sources.length} files) with ${cxx}…`);
  const jobs = Math.max(1, Math.min(2, cpus().length));
  const queue = [...sources];
  const errors: string[] = [];
  const worker = async (): Promise<void> => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
      const p = Bun.spawn([cxx, ...common, "-c", join(srcDir, f), "-o", objOf(f)], { stdout: "pipe", stderr: "pipe" });
      const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
      if (code !== 0) errors.push(`${f}:\n${tail(err, 20)}`);
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker));
  if (errors.length > 0) rmSync(objDir, { recursive: true, force: true });
  if (errors.length > 0) throw new InstallError(`compiling mlx-c/ failed:\n${errors.join("\n")}`);
  const objs = sources.map(objOf);
  const shared = process.platform === "darwin" ? ["-dynamiclib", "-install_name", `@rpath/${SHIM_NAME}`] : ["-shared"];
  const tmpOut = `${out}.${process.pid}.tmp`;
  const link = run([cxx, ...shared, "-o", tmpOut, ...objs, `-L${join(root, "lib")}`, "-lmlx", ...rpathFlags(root)]);
  rmSync(objDir, { recursive: true, force: true });
  if (link.code !== 0) {
    rmSync(tmpOut, { force: true });
    throw new InstallError(`linking ${SHIM_NAME} failed:\n${tail(link.stderr)}`);
  }
  renameSync(tmpOut, out);
  writeFileSync(stampFile, JSON.stringify({ mlxRoot: root, cxx, version } satisfies BuildStamp, null, 2));
  return true;
}

/** Load the fresh shim in a child process: catches glibc/ABI problems at install time instead of first use. */
function smokeTest(shim: string): string {
  const code = `const {dlopen,CString}=require("bun:ffi");const l=dlopen(${JSON.stringify(shim)},{mlxk_mlx_version:{args:[],returns:"ptr"}});console.log(new CString(l.symbols.mlxk_mlx_version()).toString())`;
  const r = run([process.execPath, "-e", code]);
  if (r.code !== 0) throw new InstallError(`the built shim does not load:\n${tail(r.stderr)}`);
  return r.stdout.trim();
}

function writeStatus(s: InstallStatus): void {
  mkdirSync(mlxStateDir(), { recursive: true });
  writeFileSync(statusFile(), `${JSON.stringify({ ...s, updatedAt: new Date().toISOString() }, null, 2)}\n`);
}

function log(msg: string): void {
  process.stderr.write(`mlxk: ${msg}\n`);
}

async function main(): Promise<void> {
  const force = process.argv.includes("--force");
  const t0 = performance.now();
  try {
    let wheel: string | undefined;
    const custom = mlxDir(process.env);
    const root = mlxRoot(process.env);
    let did = false;
    if (custom) {
      for (const need of [join(root, "lib", `libmlx.${LIB_SUFFIX}`), join(root, "include", "mlx", "mlx.h")]) {
        if (!existsSync(need)) throw new InstallError(`MLX_DIR=${custom} has no ${relative(root, need)} (expected an MLX install such as site-packages/mlx).`);
      }
    } else {
      const pin = pickWheel();
      wheel = pin.file;
      did = ensureWheel(pin);
    }
    did = (await ensureShim(root, force || did)) || did;
    const shim = join(shimBuildDir(), SHIM_NAME);
    const version = smokeTest(shim);
    writeStatus({ ok: true, mlxVersion: version, mlxRoot: root, shim, wheel });
    if (did) log(`MLX ${version} ready (${((performance.now() - t0) / 1000).toFixed(1)} s): ${relative(REPO_ROOT, shim)}`);
  } catch (e) {
    const reason = e instanceof InstallError ? e.message : `unexpected error: ${e instanceof Error ? e.stack : String(e)}`;
    writeStatus({ ok: false, reason });
    log(`MLX runtime NOT installed — ${reason}\nmlxk: list/health/show/pull/rm still work; run/server need MLX.`);
  }
}

await main();
