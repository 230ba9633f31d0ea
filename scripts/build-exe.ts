/**
 * `npm run build`: the standalone executables (`bun build --compile`: Bun runtime + bundled sources).
 *   - dist/mlxk: this machine's, with the MLX runtime (our shim, libmlx, its BLAS) in dist/lib/ beside it;
 *   - dist/mlxk-<os>-<arch> for linux-x64, linux-arm64, darwin-arm64 (`--target`; Bun fetches the other
 *     platforms' runtimes once from the npm registry and caches them), and for each platform whose MLX runtime
 *     can be built here an archive dist/mlxk-<version>-<os>-<arch>.tar.gz (mlxk + lib/, runs wherever it is
 *     unpacked) plus dist/SHA256SUMS. linux-x64 uses the installed runtime; linux-arm64 cross-compiles the shim
 *     with aarch64-linux-gnu-g++ against the aarch64 wheel when that compiler is installed; darwin-arm64 needs
 *     Apple's SDK to link the shim, so off a Mac its archive carries the shim's sources (share/mlx-c/) instead
 *     and builds it on first use (python3 + pip, clang++), like the npm package without its platform package.
 * Without a built shim the host executable is still built: list/health/show/pull/rm need no MLX.
 * Usage: bun scripts/build-exe.ts [--outfile path] [--host-only]
 */
import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { findCompiler, InstallError, installRuntime } from "../src/mlx/install.ts";
import { copyRuntimeSidecar, copySidecar, findShim, MLX_VERSION, WHEEL_PINS } from "../src/mlx/paths.ts";
import { CLI_VERSION } from "../src/version.ts";

const root = join(import.meta.dir, "..");
const dist = join(root, "dist");

export interface Target {
  os: "linux" | "darwin";
  arch: "x64" | "arm64";
}
export const TARGETS: readonly Target[] = [
  { os: "linux", arch: "x64" },
  { os: "linux", arch: "arm64" },
  { os: "darwin", arch: "arm64" },
];
const name = (t: Target): string => `${t.os}-${t.arch}`;
export const HOST: Target = { os: process.platform === "darwin" ? "darwin" : "linux", arch: process.arch === "arm64" ? "arm64" : "x64" };
const isHost = (t: Target): boolean => t.os === process.platform && t.arch === process.arch;

/** Compile one executable; `target` undefined = this machine. */
async function compile(outfile: string, target?: Target): Promise<void> {
  mkdirSync(dirname(outfile), { recursive: true });
  // bun build treats the extensionless bin/mlxk as an asset, so compile a .ts twin of it; the cache-scan
  // worker is a second entrypoint (src/cache/pool.ts finds it below the executable's virtual root); --splitting
  // keeps lazily imported commands (server, run, pull) out of the chunk every start has to load (~3 ms)
  const entry = join(dist, `.mlxk-entry-${process.pid}-${basename(outfile)}.ts`);
  mkdirSync(dist, { recursive: true });
  writeFileSync(entry, 'import { runCli } from "../src/cli/main.ts";\nprocess.exitCode = await runCli(process.argv.slice(2));\n');
  const tgt = target ? ["--target", `bun-${target.os}-${target.arch === "arm64" ? "aarch64" : "x64"}`] : [];
  const args = ["build", "--compile", ...tgt, "--splitting", "--minify", "--bytecode", "--format", "esm", entry, join(root, "src", "cache", "scan-worker.ts"), "--outfile", outfile];
  const proc = Bun.spawn([process.execPath, ...args], { cwd: root, stdout: "pipe", stderr: "pipe" });
  const [code, out, err] = await Promise.all([proc.exited, new Response(proc.stdout).text(), new Response(proc.stderr).text()]);
  rmSync(entry, { force: true });
  if (code !== 0) throw new Error(`bun build --compile ${tgt.join(" ")} failed (${code}):\n${out}${err}`);
}

export async function buildExe(outfile = join(dist, "mlxk")): Promise<string> {
  await compile(outfile);
  if (findShim()) copyRuntimeSidecar(join(dirname(outfile), "lib"));
  return outfile;
}

/**
 * The MLX runtime of `t` as a sidecar lib/ folder, or the reason it cannot be built here. Cross builds land
 * in dist/runtime/<os>-<arch>/ (the wheel from PyPI via pip, the shim from the cross compiler).
 */
async function runtimeFor(t: Target, libDir: string): Promise<string | null> {
  if (isHost(t)) {
    if (!findShim()) return "the MLX shim is not built (run `npm install`)";
    copyRuntimeSidecar(libDir);
    return null;
  }
  if (t.os === "darwin") return "linking the shim for macOS needs Apple's SDK (build on a Mac: same command)";
  const cxx = findCompiler({ ...process.env, CXX: "aarch64-linux-gnu-g++" });
  if (cxx !== "aarch64-linux-gnu-g++") return "no aarch64-linux-gnu-g++ (Debian/Ubuntu: apt install g++-aarch64-linux-gnu)";
  const pin = WHEEL_PINS.find((p) => p.package === "mlx-cpu" && p.platform === "manylinux_2_35_aarch64")!;
  const dir = join(dist, "runtime", name(t));
  try {
    const r = await installRuntime(
      { wheelDir: join(dir, "wheel"), downloadDir: join(dir, "download"), keepDownload: true, shim: join(dir, "libmlxk.so"), stamp: join(dir, "stamp.json") },
      { pin, cxx, log: (m) => console.error(`mlxk build (${name(t)}): ${m}`) },
    );
    copySidecar(r.shim, r.mlxRoot, libDir);
    return null;
  } catch (e) {
    if (e instanceof InstallError) return e.message;
    throw e;
  }
}

function sha256(file: string): string {
  return createHash("sha256").update(readFileSync(file)).digest("hex");
}

export interface ReleaseResult {
  executables: string[];
  archives: string[];
  /** Platform → why its archive has no prebuilt runtime (it carries share/mlx-c/ and builds the shim on first use). */
  skipped: Record<string, string>;
  sums: string;
}

/**
 * All release executables, one archive per platform, and SHA256SUMS over both. An archive carries lib/ (the
 * prebuilt runtime) where it can be built here, else share/mlx-c/ (the shim's sources: the first `run` fetches
 * the wheel and compiles them, as the npm package does). `sourcesOnly` forces the latter (tests).
 */
export async function buildRelease(out = dist, targets: readonly Target[] = TARGETS, opts: { sourcesOnly?: boolean } = {}): Promise<ReleaseResult> {
  const res: ReleaseResult = { executables: [], archives: [], skipped: {}, sums: join(out, "SHA256SUMS") };
  for (const t of targets) {
    const exe = join(out, `mlxk-${name(t)}`);
    await compile(exe, t);
    res.executables.push(exe);
    const base = `mlxk-${CLI_VERSION}-${name(t)}`;
    const stage = join(out, ".stage", base);
    rmSync(stage, { recursive: true, force: true });
    mkdirSync(stage, { recursive: true });
    const why = opts.sourcesOnly ? "sources only (requested)" : await runtimeFor(t, join(stage, "lib"));
    if (why) {
      res.skipped[name(t)] = why;
      rmSync(join(stage, "lib"), { recursive: true, force: true });
      for (const f of ["src", "include", "VERSION"]) cpSync(join(root, "mlx-c", f), join(stage, "share", "mlx-c", f), { recursive: true });
    }
    cpSync(exe, join(stage, "mlxk"));
    const runtime = why
      ? `There is no prebuilt MLX runtime in this archive (${why}): the first \`./mlxk run\` or \`server\`\nfetches the pinned MLX wheel with python3 -m pip and builds the shim from share/mlx-c/ with clang++/g++\ninto ~/.local/share/mlxk/ (once). share/ must stay beside mlxk.`
      : "lib/ (the MLX runtime) must stay beside mlxk.";
    writeFileSync(
      join(stage, "README.txt"),
      `mlxk ${CLI_VERSION} for ${name(t)} with MLX ${MLX_VERSION}.\nRun ./mlxk from here, or put this folder anywhere and link ./mlxk into your PATH.\n${runtime}\n\`./mlxk doctor\` shows what it found.\n`,
    );
    const tgz = join(out, `${base}.tar.gz`);
    const tar = Bun.spawnSync(["tar", "-czf", tgz, "-C", join(out, ".stage"), base], { stderr: "pipe" });
    if (tar.exitCode !== 0) throw new Error(`tar failed: ${tar.stderr.toString()}`);
    res.archives.push(tgz);
  }
  rmSync(join(out, ".stage"), { recursive: true, force: true });
  const lines = [...res.archives, ...res.executables].map((f) => `${sha256(f)}  ${basename(f)}`);
  writeFileSync(res.sums, `${lines.join("\n")}\n`);
  const fill = (text: string): string => text.replaceAll("@VERSION@", CLI_VERSION).replaceAll("@RELEASE_BASE@", releaseBase());
  writeFileSync(join(out, "install.sh"), fill(readFileSync(join(root, "packaging", "install.sh"), "utf8")), { mode: 0o755 });
  writeFileSync(join(out, "mlxk.rb"), homebrewFormula(res.archives));
  return res;
}

/** Where the release files are published; MLXK_RELEASE_BASE overrides (a mirror, or file:// in tests). */
export function releaseBase(env = process.env): string {
  return (env.MLXK_RELEASE_BASE || `https://github.com/mlxk/mlxk/releases/download/v${CLI_VERSION}`).replace(/\/+$/, "");
}

/** A Homebrew formula with one url + sha256 per archive built (on_macos/on_linux × on_arm/on_intel). */
export function homebrewFormula(archives: readonly string[]): string {
  const block = (os: "linux" | "darwin", arch: "x64" | "arm64"): string | null => {
    const a = archives.find((f) => basename(f).endsWith(`-${os}-${arch}.tar.gz`));
    if (!a) return null;
    return [
      `    ${arch === "arm64" ? "on_arm" : "on_intel"} do`,
      `      url "${releaseBase()}/${basename(a)}"`,
      `      sha256 "${sha256(a)}"`,
      "    end",
    ].join("\n");
  };
  const group = (os: "linux" | "darwin"): string[] => {
    const blocks = (["arm64", "x64"] as const).map((arch) => block(os, arch)).filter((b): b is string => b !== null);
    return blocks.length ? [`  ${os === "darwin" ? "on_macos" : "on_linux"} do`, ...blocks, "  end", ""] : [];
  };
  return [
    "# Generated by `npm run build` (scripts/build-exe.ts) from the archives it built; platforms without an",
    "# archive in this build are absent.",
    "class Mlxk < Formula",
    '  desc "Manage, run and serve MLX language models from the Hugging Face cache"',
    '  homepage "https://github.com/mlxk/mlxk"',
    `  version "${CLI_VERSION}"`,
    '  license "Apache-2.0"',
    "",
    ...group("darwin"),
    ...group("linux"),
    "  def install",
    "    # lib/ (the MLX runtime) or share/ (its sources) must stay beside the executable: keep the layout in libexec",
    '    libexec.install Dir["*"]',
    '    bin.install_symlink libexec/"mlxk"',
    '    bin.install_symlink libexec/"mlxk" => "mlxk-json"',
    "  end",
    "",
    "  def caveats",
    "    <<~EOS",
    "      `mlxk doctor` shows where the MLX runtime comes from. An archive without lib/ (built off a Mac) sets it",
    "      up on the first `mlxk run`: it fetches the pinned MLX wheel with python3 -m pip and compiles the shim",
    "      with clang++ (xcode-select --install) into ~/.local/share/mlxk/.",
    "    EOS",
    "  end",
    "",
    "  test do",
    '    assert_match version.to_s, shell_output("#{bin}/mlxk --version")',
    `    assert_match '"runtime"', shell_output("#{bin}/mlxk doctor --json")`,
    "  end",
    "end",
    "",
  ].join("\n");
}

if (import.meta.main) {
  const i = process.argv.indexOf("--outfile");
  const out = await buildExe(i > 0 ? process.argv[i + 1] : undefined);
  console.log(`built ${out}${existsSync(join(dirname(out), "lib")) ? " (+ lib/)" : " (no MLX runtime: run/server unavailable)"}`);
  if (!process.argv.includes("--host-only") && i < 0) {
    const r = await buildRelease();
    for (const a of r.archives) console.log(`built ${a}`);
    for (const [p, why] of Object.entries(r.skipped)) console.log(`${p}: no prebuilt runtime in its archive (${why}); it builds the shim on first use`);
    console.log(`wrote ${r.sums}`);
  }
}
