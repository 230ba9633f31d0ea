/**
 * Every environment variable mlxk reads, in one place. Functions take an `env` record so tests
 * (and the server worker) can pass their own instead of mutating process.env.
 */
import { homedir } from "node:os";
import { join } from "node:path";

export type Env = Record<string, string | undefined>;

/** An empty string counts as unset, as in huggingface_hub. */
function get(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

function truthy(v: string | undefined): boolean {
  return v !== undefined && ["1", "true", "yes", "on"].includes(v.toLowerCase());
}

/** Hub cache dir as huggingface_hub resolves it: HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub > $XDG_CACHE_HOME/huggingface/hub > ~/.cache/huggingface/hub. */
export function hubCacheDir(env: Env = process.env): string {
  const explicit = get(env, "HF_HUB_CACHE") ?? get(env, "HUGGINGFACE_HUB_CACHE");
  if (explicit) return expandHome(explicit, env);
  return join(hfHome(env), "hub");
}

/** $HF_HOME > $XDG_CACHE_HOME/huggingface > ~/.cache/huggingface (token file lives here). */
export function hfHome(env: Env = process.env): string {
  const home = get(env, "HF_HOME");
  if (home) return expandHome(home, env);
  const xdg = get(env, "XDG_CACHE_HOME");
  return join(xdg ? expandHome(xdg, env) : join(userHome(env), ".cache"), "huggingface");
}

function userHome(env: Env): string {
  return get(env, "HOME") ?? homedir();
}

function expandHome(p: string, env: Env): string {
  return p === "~" || p.startsWith("~/") ? join(userHome(env), p.slice(1)) : p;
}

/** Hub endpoint; HF_ENDPOINT lets tests point pull at a loopback Hub. */
export function hubEndpoint(env: Env = process.env): string {
  return (get(env, "HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, "");
}

export function hubOffline(env: Env = process.env): boolean {
  return truthy(get(env, "HF_HUB_OFFLINE"));
}

export function progressDisabled(env: Env = process.env): boolean {
  return truthy(get(env, "HF_HUB_DISABLE_PROGRESS_BARS"));
}

/** Token from env (HF_TOKEN, then HUGGING_FACE_HUB_TOKEN); the token file is read by the hub module. */
export function envToken(env: Env = process.env): string | undefined {
  return get(env, "HF_TOKEN") ?? get(env, "HUGGING_FACE_HUB_TOKEN");
}

/** Where the MLX wheel and our shim come from; default is the project's own .mlx/ folder. */
export function mlxDir(env: Env = process.env): string | undefined {
  return get(env, "MLX_DIR");
}

/** Per-user data dir for the MLX runtime set up on first use: $XDG_DATA_HOME/mlxk > ~/.local/share/mlxk. */
export function mlxkDataDir(env: Env = process.env): string {
  const xdg = get(env, "XDG_DATA_HOME");
  return join(xdg ? expandHome(xdg, env) : join(userHome(env), ".local", "share"), "mlxk");
}

export function mlxShimPath(env: Env = process.env): string | undefined {
  return get(env, "MLXK_SHIM");
}

export function serverHost(env: Env = process.env): string | undefined {
  return get(env, "MLXK_HOST");
}

export function serverPort(env: Env = process.env): string | undefined {
  return get(env, "MLXK_PORT");
}

export function serverApiKey(env: Env = process.env): string | undefined {
  return get(env, "MLXK_API_KEY");
}

/** Print stack traces of internal errors. */
export function debug(env: Env = process.env): boolean {
  return get(env, "MLXK_DEBUG") !== undefined;
}

export function noColor(env: Env = process.env): boolean {
  return get(env, "NO_COLOR") !== undefined;
}

/**
 * Whether to color output going to a stream: FORCE_COLOR (any value but 0/false) forces it on, even into a pipe;
 * else NO_COLOR (https://no-color.org) or TERM=dumb turn it off; else only on a terminal.
 */
export function useColor(env: Env, isTTY: boolean): boolean {
  const force = get(env, "FORCE_COLOR");
  if (force !== undefined) return !["0", "false"].includes(force.toLowerCase());
  if (noColor(env) || get(env, "TERM") === "dumb") return false;
  return isTTY;
}

/** Token file path override (huggingface_hub's HF_TOKEN_PATH); default is `<HF_HOME>/token`. */
export function hfTokenPath(env: Env = process.env): string {
  const p = get(env, "HF_TOKEN_PATH");
  return p ? expandHome(p, env) : join(hfHome(env), "token");
}

/** Compute dtype for float weights and activations: float32 (CPU default; bf16/fp16 are emulated and ~7× slower on CPU), float16, bfloat16, auto (keep the checkpoint's) or half (GPU default, src/mlx/backend.ts). */
export function computeDtype(env: Env = process.env): string | undefined {
  return get(env, "MLXK_DTYPE");
}

/** CPU streams the engine splits big matmuls over (default 2; 1 = no splitting). */
export function engineStreams(env: Env = process.env): string | undefined {
  return get(env, "MLXK_STREAMS");
}

/** Our own CPU kernels (quantized matmul, …) instead of MLX's ops on the CPU device; MLXK_KERNELS=0 turns them off for A/B runs. */
export function kernelsEnabled(env: Env = process.env): boolean {
  const v = get(env, "MLXK_KERNELS");
  return v === undefined || !["0", "false", "no", "off"].includes(v.toLowerCase());
}

/** The decoder block as fused kernels (src/mlx/block.ts) where it fits; MLXK_FUSED_BLOCKS=0 builds it op by op. */
export function fusedBlocksEnabled(env: Env = process.env): boolean {
  const v = get(env, "MLXK_FUSED_BLOCKS");
  return v === undefined || !["0", "false", "no", "off"].includes(v.toLowerCase());
}

/** MLXK_MALLOC_KEEP=0: leave the C library's malloc thresholds alone (by default the CPU backend keeps freed host memory for reuse). */
export function mallocKeepEnabled(env: Env = process.env): boolean {
  const v = get(env, "MLXK_MALLOC_KEEP");
  return v === undefined || !["0", "false", "no", "off"].includes(v.toLowerCase());
}

/** MLXK_BACKEND: cpu, cuda or metal; overrides the installer's wheel choice and, at run time, the device models run on. */
export function backendOverride(env: Env = process.env): string | undefined {
  return get(env, "MLXK_BACKEND");
}

/** Set by the server supervisor for its worker process: the worker's settings as JSON (internal). */
export function serverWorkerConfig(env: Env = process.env): string | undefined {
  return get(env, "MLXK_SERVER_WORKER");
}

/** MLXK_SCAN_WORKERS: extra threads for `list`/`health` over the whole cache (0 = scan on one thread); unset → automatic. */
export function scanWorkers(env: Env = process.env): number | undefined {
  const v = get(env, "MLXK_SCAN_WORKERS");
  if (v === undefined || !/^\d+$/.test(v.trim())) return undefined;
  return Math.min(Number(v.trim()), 8);
}

/** MLXK_WORKSPACE_HOME: mlx-knife's workspace dir (its child model dirs resolve by bare name and show up in list/health). */
export function workspaceHome(env: Env = process.env): string | undefined {
  const v = get(env, "MLXK_WORKSPACE_HOME");
  return v ? expandHome(v, env) : undefined;
}

function seconds(env: Env, name: string, fallback: number): number {
  const v = get(env, name);
  const n = v === undefined ? Number.NaN : Number(v.trim());
  return Number.isFinite(n) && n > 0 ? n : fallback;
}

/** HF_HUB_ETAG_TIMEOUT (s, default 10 as in huggingface_hub): how long a metadata call may take to answer. */
export function hubEtagTimeoutMs(env: Env = process.env): number {
  return seconds(env, "HF_HUB_ETAG_TIMEOUT", 10) * 1000;
}

/** HF_HUB_DOWNLOAD_TIMEOUT (s, default 10 as in huggingface_hub): longest wait for the first or next bytes of a file. */
export function hubDownloadTimeoutMs(env: Env = process.env): number {
  return seconds(env, "HF_HUB_DOWNLOAD_TIMEOUT", 10) * 1000;
}

/** XDG_STATE_HOME/mlxk (default ~/.local/state/mlxk): chat history and the running-server registry. */
export function stateDir(env: Env = process.env): string {
  const xdg = get(env, "XDG_STATE_HOME");
  return join(xdg ? expandHome(xdg, env) : join(userHome(env), ".local", "state"), "mlxk");
}
