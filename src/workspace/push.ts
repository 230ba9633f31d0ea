/**
 * `push`: a workspace (or any model dir) to a private Hub repo through the Hub's HTTP API — preupload (which files
 * go through LFS), LFS batch + upload of the big ones, one commit — via @huggingface/hub, with xet off so the plain
 * LFS protocol is used. Only files that differ from the branch are sent; an interrupted push leaves no commit and
 * the next run uploads what the Hub does not hold yet. The token goes only to the Hub and never into any output.
 *
 * Exports: push(opts) → PushData, pushFiles(dir) (the files a push sends, ignore rules applied)
 */
import { commit, createBranch, createRepo, listFiles } from "@huggingface/hub";
import { existsSync, readFileSync, statSync } from "node:fs";
import { basename, isAbsolute, join, resolve } from "node:path";
import { SENTINEL_FILE } from "../cache/content-hash.ts";
import { walkFiles } from "../cache/layout.ts";
import { resolveWorkspace, workspaceHealth } from "../cache/workspace.ts";
import { type Env, hubEndpoint, workspaceHome } from "../env.ts";
import { MlxkError, toMlxkError } from "../errors.ts";
import { fnmatchToRegExp } from "../hub/glob.ts";
import { parseRepoSpec } from "../hub/repo-id.ts";
import { redact, resolveToken } from "../hub/token.ts";
import type { PushData } from "../schemas/workspace.ts";
import { CLI_VERSION } from "../version.ts";

export interface PushOptions {
  localDir: string;
  repoId: string;
  env: Env;
  cwd?: string;
  private?: boolean;
  create?: boolean;
  branch?: string;
  message?: string;
  checkOnly?: boolean;
  dryRun?: boolean;
  signal?: AbortSignal;
}

/** mlx-knife's list, plus our own sentinel, caches and temp files. `.hfignore` lines are added. */
const IGNORES = [".git/", ".hf_cache/", "__pycache__/", ".venv/", "venv/", ".DS_Store", ".hfignore", ".gitignore", "*.pyc", SENTINEL_FILE, `${SENTINEL_FILE}.tmp`, "*.mlxk-part"];

export interface LocalFile {
  path: string;
  abs: string;
  size: number;
}

function ignoreRules(dir: string): { dirs: RegExp[]; files: RegExp[] } {
  const extra = existsSync(join(dir, ".hfignore"))
    ? readFileSync(join(dir, ".hfignore"), "utf8").split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"))
    : [];
  const dirs: RegExp[] = [];
  const files: RegExp[] = [];
  for (const p of [...IGNORES, ...extra]) {
    const q = p.replace(/^\//, "").replace(/\/\*\*$/, "/");
    if (q.endsWith("/")) dirs.push(fnmatchToRegExp(q.slice(0, -1)));
    else files.push(fnmatchToRegExp(q));
  }
  return { dirs, files };
}

/** The files a push sends: everything below `dir` but the ignored, sorted by path. */
export function pushFiles(dir: string): LocalFile[] {
  const rules = ignoreRules(dir);
  return walkFiles(dir)
    .filter((f) => {
      const parts = f.rel.split("/");
      if (parts.slice(0, -1).some((p, i) => rules.dirs.some((r) => r.test(p) || r.test(parts.slice(0, i + 1).join("/"))))) return false;
      return !rules.files.some((r) => r.test(parts.at(-1)!) || r.test(f.rel));
    })
    .filter((f) => f.size >= 0)
    .map((f) => ({ path: f.rel, abs: f.path, size: f.size }))
    .sort((a, b) => (a.path < b.path ? -1 : 1));
}

function locateDir(spec: string, env: Env, cwd: string): string {
  const abs = isAbsolute(spec) ? spec : resolve(cwd, spec);
  if (existsSync(abs) && statSync(abs).isDirectory()) return abs;
  const ws = resolveWorkspace(workspaceHome(env), spec);
  if (ws) return ws;
  throw new MlxkError("workspace_not_found", `No workspace or directory '${spec}'`);
}

/** mlx-knife's --check-only report: what would be pushed and whether it looks like a complete model. */
function checkWorkspace(dir: string, files: LocalFile[]): Record<string, unknown> {
  const cfgPath = join(dir, "config.json");
  let valid = false;
  try {
    valid = typeof JSON.parse(readFileSync(cfgPath, "utf8")) === "object";
  } catch {
    valid = false;
  }
  const weights = files.filter((f) => /\.(safetensors|bin|gguf)$/.test(f.path));
  let index = { has_index: false, missing: [] as string[] };
  const idx = join(dir, "model.safetensors.index.json");
  if (existsSync(idx)) {
    const map = (JSON.parse(readFileSync(idx, "utf8")) as { weight_map?: Record<string, string> }).weight_map ?? {};
    index = { has_index: true, missing: [...new Set(Object.values(map))].filter((s) => !existsSync(join(dir, s))).sort() };
  }
  const shards = weights.map((w) => /model-(\d{5})-of-(\d{5})\.safetensors$/.exec(w.path)).filter((m) => m !== null);
  const total = shards.length ? Number(shards[0]![2]) : 0;
  const health = workspaceHealth(dir);
  const anomalies: string[] = [];
  if (!health.healthy) anomalies.push(health.reason);
  return {
    files_count: files.length,
    total_bytes: files.reduce((s, f) => s + f.size, 0),
    config: { exists: existsSync(cfgPath), valid_json: valid, path: "config.json" },
    weights: { count: weights.length, formats: [...new Set(weights.map((w) => w.path.slice(w.path.lastIndexOf(".") + 1)))].sort(), index, pattern_complete: shards.length === total },
    anomalies,
    healthy: health.healthy,
  };
}

async function hubJson(url: string, token: string, signal?: AbortSignal): Promise<{ status: number; body: Record<string, unknown> | null }> {
  const res = await fetch(url, { headers: { Authorization: `Bearer ${token}`, "User-Agent": `mlxk/${CLI_VERSION}` }, signal });
  const body = res.ok ? ((await res.json()) as Record<string, unknown>) : null;
  if (!res.ok) await res.body?.cancel();
  return { status: res.status, body };
}

function gitBlobSha1(abs: string, size: number): string {
  return new Bun.CryptoHasher("sha1").update(`blob ${size}\0`).update(readFileSync(abs)).digest("hex");
}

async function sha256Of(abs: string): Promise<string> {
  const h = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(abs).stream()) h.update(chunk);
  return h.digest("hex");
}

export async function push(opts: PushOptions): Promise<PushData> {
  const { repoId, revision } = parseRepoSpec(opts.repoId);
  if (revision !== null || !repoId.includes("/")) throw new MlxkError("ValidationError", `Invalid repo id '${opts.repoId}': expected org/name (give the branch with --branch)`);
  const branch = opts.branch ?? "main";
  const dir = locateDir(opts.localDir, opts.env, opts.cwd ?? process.cwd());
  const files = pushFiles(dir);
  const endpoint = hubEndpoint(opts.env);
  const data: PushData = {
    repo_id: repoId,
    branch,
    repo_url: `${endpoint}/${repoId}`,
    commit_sha: null,
    commit_url: null,
    uploaded_files_count: 0,
    local_files_count: files.length,
    no_changes: false,
    created_repo: false,
    created_branch: false,
    change_summary: { added: 0, modified: 0, deleted: 0 },
    message: "",
    experimental: false,
    disclaimer: null,
  };
  if (opts.checkOnly) {
    data.workspace_health = checkWorkspace(dir, files);
    data.message = `${files.length} files would be pushed from ${dir}`;
    return data;
  }
  if (!opts.private) throw new MlxkError("InvalidArgumentError", "push needs --private: mlxk only writes private repos (make it public on the Hub when you mean to)");
  if (files.length === 0) throw new MlxkError("workspace_not_found", `Nothing to push: ${dir} has no files after the ignore rules`);
  const token = resolveToken(opts.env);
  if (!token) throw new MlxkError("auth_error", "HF_TOKEN not set (push needs a write token; --check-only works without one)");
  const failed = (type: "upload_failed" | "branch_create_failed" | "push_operation_failed" | "repo_not_found", what: string, e?: unknown): never => {
    const m = e === undefined ? what : `${what}: ${toMlxkError(e).message}`;
    throw new MlxkError(type, redact(m, token), { data: { ...data, message: redact(m, token) } });
  };
  const repoUrl = `${endpoint}/api/models/${repoId}`;
  let info: Awaited<ReturnType<typeof hubJson>>;
  try {
    info = await hubJson(repoUrl, token, opts.signal);
  } catch (e) {
    return failed("upload_failed", `Cannot reach the Hub at ${endpoint}`, e);
  }
  // the Hub answers 401 both for a bad token and for a private repo the token cannot see: both read as "not there"
  const exists = info.status === 200;
  if (!exists && info.status !== 404 && info.status !== 401) return failed("upload_failed", `The Hub answered HTTP ${info.status} for ${repoId}`);
  if (exists && info.body?.private !== true) {
    throw new MlxkError("ValidationError", `'${repoId}' is a public repo; mlxk push only writes private repos`);
  }
  const branchExists = exists ? (branch === "main" ? true : (await hubJson(`${repoUrl}/revision/${encodeURIComponent(branch)}`, token, opts.signal)).status === 200) : false;
  // what the branch (or main, for a new branch) already holds, to send only what changed
  const remote = new Map<string, { oid: string; lfs: string | null; size: number }>();
  if (exists) {
    try {
      for await (const f of listFiles({ repo: { type: "model", name: repoId }, revision: branchExists ? branch : "main", recursive: true, accessToken: token, hubUrl: endpoint })) {
        if (f.type === "file") remote.set(f.path, { oid: f.oid ?? "", lfs: f.lfs?.oid ?? null, size: f.lfs?.size ?? f.size });
      }
    } catch (e) {
      return failed("upload_failed", `Cannot list ${repoId}@${branch}`, e);
    }
  }
  const changes: NonNullable<PushData["files"]> = [];
  const send: LocalFile[] = [];
  for (const f of files) {
    const r = remote.get(f.path);
    let change: "added" | "modified" | "unchanged" = "added";
    if (r) {
      const same = r.size === f.size && (r.lfs ? (await sha256Of(f.abs)) === r.lfs : gitBlobSha1(f.abs, f.size) === r.oid);
      change = same ? "unchanged" : "modified";
    }
    changes.push({ path: f.path, change, size: f.size });
    if (change !== "unchanged") send.push(f);
  }
  const local = new Set(files.map((f) => f.path));
  for (const [path, r] of remote) if (!local.has(path)) changes.push({ path, change: "remote_only", size: r.size });
  const summary = { added: changes.filter((c) => c.change === "added").length, modified: changes.filter((c) => c.change === "modified").length, deleted: 0 };
  data.change_summary = summary;
  data.files = changes;
  data.no_changes = send.length === 0;
  if (opts.dryRun) {
    data.dry_run = true;
    data.dry_run_summary = summary;
    data.would_create_repo = !exists;
    data.would_create_branch = !branchExists;
    data.message = send.length === 0 ? "Nothing to push: the branch already holds these files" : `Would upload ${send.length} file(s) to ${repoId}@${branch}`;
    return data;
  }
  if (!exists) {
    if (!opts.create) throw new MlxkError("repo_not_found", `Repo '${repoId}' does not exist (or the token cannot see it); add --create to create it as a private repo`, { data });
    try {
      await createRepo({ repo: { type: "model", name: repoId }, accessToken: token, hubUrl: endpoint, private: true });
    } catch (e) {
      return failed("push_operation_failed", `Cannot create ${repoId}`, e);
    }
    data.created_repo = true;
  }
  if (!branchExists && branch !== "main") {
    try {
      await createBranch({ repo: { type: "model", name: repoId }, branch, accessToken: token, hubUrl: endpoint });
    } catch (e) {
      return failed("branch_create_failed", `Cannot create branch '${branch}' on ${repoId}`, e);
    }
    data.created_branch = true;
  }
  if (send.length === 0) {
    data.message = `Nothing to push: ${repoId}@${branch} already holds these ${files.length} files`;
    return data;
  }
  try {
    const out = await commit({
      repo: { type: "model", name: repoId },
      accessToken: token,
      hubUrl: endpoint,
      branch,
      title: opts.message ?? `mlxk push from ${basename(dir)}`,
      operations: send.map((f) => ({ operation: "addOrUpdate" as const, path: f.path, content: Bun.file(f.abs) })),
      useXet: false,
      abortSignal: opts.signal,
    });
    data.commit_sha = out?.commit.oid ?? null;
    data.commit_url = out?.commit.url ?? null;
  } catch (e) {
    return failed("upload_failed", `Upload to ${repoId}@${branch} failed; nothing was committed, run the push again to resume`, e);
  }
  data.uploaded_files_count = send.length;
  data.message = `Pushed ${send.length} file(s) to ${repoId}@${branch}`;
  return data;
}
