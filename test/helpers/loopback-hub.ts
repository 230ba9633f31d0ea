/**
 * A Hugging Face Hub of our own on 127.0.0.1 for tests and benchmarks: the HTTP API as huggingface_hub
 * and @huggingface/hub use it (model info, tree listing, paths-info, resolve with ETag / X-Repo-Commit /
 * X-Linked-* headers, 302 to a separate "CDN" origin for LFS files, Range), plus fault injection.
 * The write side (create repo, branch, preupload, LFS batch + upload, commit) lives in loopback-hub-upload.ts.
 */
import { createHash } from "node:crypto";
import { HubUploads } from "./loopback-hub-upload.ts";

export interface HubFile {
  path: string;
  /** Content in memory, or `file` for big data kept on disk (benchmarks). */
  content?: Uint8Array | string;
  file?: string;
  /** Stored with git LFS (served through the CDN redirect); default: size ≥ 10 kB or a weights file. */
  lfs?: boolean;
}

export interface RepoOptions {
  private?: boolean;
  gated?: false | "auto" | "manual";
  /** Answer every API call for this repo with this status and no error code (generic 401/403/500 cases). */
  forceStatus?: number;
}

export interface Fault {
  /** Close the connection after this many body bytes of a response. */
  dropAfter?: number;
  /** Flip one byte of the body at this offset of the file. */
  corruptAt?: number;
  /** Answer with this status instead of the file. */
  status?: number;
  /** Send the body in small pieces with a pause, so a test can interrupt a download mid-file. */
  throttle?: { chunk: number; delayMs: number };
  /** Accept the request and never answer it (a Hub behind a black-holing proxy). */
  hang?: boolean;
  /** Send this many body bytes, then go silent without closing (a stalled transfer). */
  stallAfter?: number;
  /** Apply to this many requests, then clear (default: all). */
  times?: number;
}

/** Key of a fault on a repo's API calls (model info, tree listing): `hub.fault(repo, API_FAULT, …)`. */
export const API_FAULT = "@api";

function never(): Promise<Response> {
  return new Promise<Response>(() => {});
}

export interface LoggedRequest {
  server: "hub" | "cdn";
  method: string;
  path: string;
  range: string | null;
  authorization: string | null;
}

export interface StoredFile {
  path: string;
  size: number;
  gitOid: string;
  sha256: string;
  lfs: boolean;
  bytes?: Uint8Array;
  file?: string;
  pointerSize: number;
}

interface Commit {
  sha: string;
  files: Map<string, StoredFile>;
  date: string;
}

export interface Repo {
  id: string;
  opts: RepoOptions;
  commits: Map<string, Commit>;
  refs: Map<string, string>;
  /** Users (tokens) granted access to a gated/private repo. */
  granted: Set<string>;
}

const ERR = { code: "X-Error-Code", msg: "X-Error-Message" };

export function gitBlobSha1(bytes: Uint8Array): string {
  return createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex");
}

function lfsPointer(sha256: string, size: number): Uint8Array {
  return new TextEncoder().encode(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${size}\n`);
}

async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  const h = new Bun.CryptoHasher("sha256");
  let size = 0;
  for await (const chunk of Bun.file(path).stream()) {
    h.update(chunk);
    size += chunk.length;
  }
  return { sha256: h.digest("hex"), size };
}

export class LoopbackHub {
  readonly repos = new Map<string, Repo>();
  readonly requests: LoggedRequest[] = [];
  /** Faults keyed by `<repo>/<path>`. */
  readonly faults = new Map<string, Fault>();
  /** Valid tokens; a token not listed here gets 401 "Invalid credentials". */
  readonly tokens = new Set<string>();
  /** Entries per page of the tree listing (the real Hub pages by 1000 with a Link header). */
  treePageSize = 1000;
  /** The upload API: LFS store, in-flight uploads, token namespaces, upload faults. */
  readonly uploads = new HubUploads(this);
  private hub!: ReturnType<typeof Bun.serve>;
  private cdn!: ReturnType<typeof Bun.serve>;
  private counter = 0;

  static async start(): Promise<LoopbackHub> {
    const h = new LoopbackHub();
    // idleTimeout 0: a `hang` fault must stay silent until the client gives up, not until Bun's 10 s idle close
    h.cdn = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (req) => h.handleCdn(req) });
    h.hub = Bun.serve({ hostname: "127.0.0.1", port: 0, idleTimeout: 0, fetch: (req) => h.handleHub(req) });
    return h;
  }

  get url(): string {
    return `http://127.0.0.1:${this.hub.port}`;
  }

  get cdnUrl(): string {
    return `http://127.0.0.1:${this.cdn.port}`;
  }

  stop(): void {
    this.hub.stop(true);
    this.cdn.stop(true);
  }

  /** Create a repo whose `main` holds `files`; returns the commit sha. */
  async addRepo(id: string, files: HubFile[], opts: RepoOptions = {}): Promise<string> {
    this.repos.set(id, { id, opts, commits: new Map(), refs: new Map(), granted: new Set() });
    return this.commit(id, files);
  }

  /** Add a commit replacing the file set of `branch` (default main); returns its sha. */
  async commit(id: string, files: HubFile[], branch = "main"): Promise<string> {
    const repo = this.repos.get(id);
    if (!repo) throw new Error(`no repo ${id}`);
    const stored = new Map<string, StoredFile>();
    for (const f of files) stored.set(f.path, await this.store(f));
    const sha = createHash("sha1")
      .update(`${id}\n${++this.counter}\n${[...stored.values()].map((f) => `${f.path}:${f.gitOid}`).join("\n")}`)
      .digest("hex");
    repo.commits.set(sha, { sha, files: stored, date: new Date().toISOString() });
    repo.refs.set(branch, sha);
    return sha;
  }

  grant(id: string, token: string): void {
    this.tokens.add(token);
    this.repos.get(id)?.granted.add(token);
  }

  fault(repo: string, path: string, fault: Fault): void {
    this.faults.set(`${repo}/${path}`, fault);
  }

  /** Bytes of a file as the Hub stores it (for byte-identity checks). */
  fileBytes(repo: string, path: string, rev = "main"): Uint8Array {
    const f = this.lookupCommit(this.repos.get(repo)!, rev)?.files.get(path);
    if (!f?.bytes) throw new Error(`no in-memory file ${path}`);
    return f.bytes;
  }

  fileInfo(repo: string, path: string, rev = "main"): { size: number; sha256: string; gitOid: string; lfs: boolean } {
    const f = this.lookupCommit(this.repos.get(repo)!, rev)?.files.get(path);
    if (!f) throw new Error(`no file ${path}`);
    return { size: f.size, sha256: f.sha256, gitOid: f.gitOid, lfs: f.lfs };
  }

  private async store(f: HubFile): Promise<StoredFile> {
    let bytes: Uint8Array | undefined;
    let size: number;
    let sha256: string;
    if (f.file !== undefined) {
      ({ sha256, size } = await hashFile(f.file));
    } else {
      bytes = typeof f.content === "string" ? new TextEncoder().encode(f.content) : (f.content ?? new Uint8Array());
      size = bytes.length;
      sha256 = createHash("sha256").update(bytes).digest("hex");
    }
    const lfs = f.lfs ?? (size >= 10_000 || /\.(safetensors|bin|gguf|npz)$/.test(f.path));
    if (!lfs && !bytes) bytes = new Uint8Array(await Bun.file(f.file!).arrayBuffer());
    // For LFS files git stores (and the tree lists) the oid of the pointer file, not of the content.
    const pointer = lfsPointer(sha256, size);
    const gitOid = lfs ? gitBlobSha1(pointer) : gitBlobSha1(bytes!);
    return { path: f.path, size, gitOid, sha256, lfs, bytes, file: f.file, pointerSize: pointer.length };
  }

  /** The commit a branch, tag or sha names (the upload side reads it). */
  commitOf(id: string, rev: string): { sha: string; files: Map<string, StoredFile> } | undefined {
    const repo = this.repos.get(id);
    return repo ? this.lookupCommit(repo, rev) : undefined;
  }

  /** Bytes of a stored file, whether kept in memory or on disk. */
  async storedBytes(f: StoredFile): Promise<Uint8Array> {
    return f.bytes ?? new Uint8Array(await Bun.file(f.file!).arrayBuffer());
  }

  /** Token of the request: undefined anonymous, null invalid. */
  callerOf(req: Request): string | undefined | null {
    return this.caller(req);
  }

  private lookupCommit(repo: Repo, rev: string): Commit | undefined {
    const sha = repo.refs.get(rev) ?? rev;
    return repo.commits.get(sha);
  }

  private log(server: "hub" | "cdn", req: Request, url: URL): void {
    this.requests.push({
      server,
      method: req.method,
      path: decodeURIComponent(url.pathname),
      range: req.headers.get("range"),
      authorization: req.headers.get("authorization"),
    });
  }

  private error(status: number, code: string | null, message: string, extra: Record<string, string> = {}): Response {
    const headers: Record<string, string> = { "Content-Type": "application/json", [ERR.msg]: message, ...extra };
    if (code) headers[ERR.code] = code;
    return new Response(JSON.stringify({ error: message }), { status, headers });
  }

  /** Who is asking: undefined = anonymous, null = invalid token, else the token. */
  private caller(req: Request): string | undefined | null {
    const auth = req.headers.get("authorization");
    if (!auth) return undefined;
    const token = auth.replace(/^Bearer\s+/i, "");
    return this.tokens.has(token) ? token : null;
  }

  /** Repo lookup with the Hub's visibility rules: private/missing repos answer 401 anonymously, 404 when logged in. */
  private access(req: Request, id: string): { repo: Repo } | { res: Response } {
    const who = this.caller(req);
    if (who === null) return { res: this.error(401, null, "Invalid credentials in Authorization header") };
    const repo = this.repos.get(id);
    if (repo?.opts.forceStatus) return { res: this.error(repo.opts.forceStatus, null, `Forced status ${repo.opts.forceStatus}`) };
    if (!repo || (repo.opts.private && !(who && repo.granted.has(who)))) {
      return { res: this.error(who ? 404 : 401, "RepoNotFound", "Repository not found") };
    }
    return { repo };
  }

  private gatedDenied(req: Request, repo: Repo): Response | null {
    if (!repo.opts.gated) return null;
    const who = this.caller(req);
    if (who && repo.granted.has(who)) return null;
    return this.error(
      who ? 403 : 401,
      "GatedRepo",
      `Access to model ${repo.id} is restricted and you are not in the authorized list. Visit ${this.url}/${repo.id} to ask for access.`,
    );
  }

  private treeEntry(f: StoredFile): Record<string, unknown> {
    const e: Record<string, unknown> = { type: "file", oid: f.gitOid, size: f.size, path: f.path };
    if (f.lfs) e.lfs = { oid: f.sha256, size: f.size, pointerSize: f.pointerSize };
    return e;
  }

  private async handleHub(req: Request): Promise<Response> {
    const url = new URL(req.url);
    this.log("hub", req, url);
    const segs = url.pathname.split("/").filter(Boolean).map(decodeURIComponent);
    const upload = await this.uploads.handle(req, url, segs);
    if (upload) return upload;
    if (segs[0] === "api" && segs[1] === "models") return this.handleApi(req, url, segs.slice(2));
    const at = segs[2] === "resolve" ? 2 : segs[1] === "resolve" ? 1 : -1;
    if (at > 0 && segs.length >= at + 3) {
      return this.handleResolve(req, segs.slice(0, at).join("/"), segs[at + 1]!, segs.slice(at + 2).join("/"));
    }
    return this.error(404, null, "Not found");
  }

  private handleApi(req: Request, url: URL, rest: string[]): Response | Promise<Response> {
    // /api/models/{id}[/revision/{rev} | /tree/{rev}[/path] | /paths-info/{rev}]; id has 1 or 2 segments
    const kw = rest.findIndex((s, i) => i > 0 && ["revision", "tree", "paths-info"].includes(s));
    const id = (kw < 0 ? rest : rest.slice(0, kw)).join("/");
    const fault = this.takeFault(id, API_FAULT);
    if (fault?.hang) return never();
    if (fault?.status) return this.error(fault.status, null, `Injected status ${fault.status}`);
    const a = this.access(req, id);
    if ("res" in a) return a.res;
    const repo = a.repo;
    const action = kw < 0 ? "info" : rest[kw]!;
    const rev = kw < 0 ? "main" : (rest[kw + 1] ?? "main");
    const commit = this.lookupCommit(repo, rev);
    if (!commit) return this.error(404, "RevisionNotFound", `Invalid rev id: ${rev}`);
    if (action === "info" || action === "revision") {
      const full: Record<string, unknown> = {
        _id: `id-${repo.id}`,
        id: repo.id,
        author: repo.id.includes("/") ? repo.id.split("/")[0] : undefined,
        sha: commit.sha,
        lastModified: commit.date,
        createdAt: commit.date,
        private: Boolean(repo.opts.private),
        gated: repo.opts.gated ?? false,
        disabled: false,
        downloads: 0,
        likes: 0,
        tags: [],
        library_name: "mlx",
        siblings: [...commit.files.keys()].map((rfilename) => ({ rfilename })),
      };
      const expand = url.searchParams.getAll("expand");
      if (expand.length === 0) return Response.json(full);
      const out: Record<string, unknown> = { _id: full._id, id: full.id };
      for (const k of expand) if (k in full) out[k] = full[k];
      return Response.json(out);
    }
    if (action === "tree") return this.tree(url, commit, rest.slice(kw + 2).join("/"));
    return this.pathsInfo(req, commit);
  }

  private tree(url: URL, commit: Commit, dir: string): Response {
    const recursive = ["1", "true"].includes((url.searchParams.get("recursive") ?? "").toLowerCase());
    const prefix = dir ? `${dir}/` : "";
    const entries: Record<string, unknown>[] = [];
    const dirs = new Set<string>();
    for (const f of [...commit.files.values()].sort((x, y) => x.path.localeCompare(y.path))) {
      if (!f.path.startsWith(prefix)) continue;
      const parts = f.path.slice(prefix.length).split("/");
      // directories are listed as their own entries (recursively: every level)
      for (let i = 1; i < parts.length && (recursive || i === 1); i++) {
        const d = prefix + parts.slice(0, i).join("/");
        if (!dirs.has(d)) {
          dirs.add(d);
          entries.push({ type: "directory", oid: gitBlobSha1(new TextEncoder().encode(d)), size: 0, path: d });
        }
      }
      if (recursive || parts.length === 1) entries.push(this.treeEntry(f));
    }
    const cursor = Number(url.searchParams.get("cursor") ?? "0");
    const page = entries.slice(cursor, cursor + this.treePageSize);
    const headers: Record<string, string> = {};
    if (cursor + this.treePageSize < entries.length) {
      const next = new URL(url);
      next.searchParams.set("cursor", String(cursor + this.treePageSize));
      headers.Link = `<${next.toString()}>; rel="next"`;
    }
    return Response.json(page, { headers });
  }

  private async pathsInfo(req: Request, commit: Commit): Promise<Response> {
    let paths: string[] = [];
    const type = req.headers.get("content-type") ?? "";
    if (type.includes("json")) paths = ((await req.json()) as { paths?: string[] }).paths ?? [];
    else paths = new URLSearchParams(await req.text()).getAll("paths");
    const out = paths.flatMap((p) => {
      const f = commit.files.get(p);
      return f ? [this.treeEntry(f)] : [];
    });
    return Response.json(out);
  }

  private takeFault(repo: string, path: string): Fault | undefined {
    const key = `${repo}/${path}`;
    const f = this.faults.get(key);
    if (!f) return undefined;
    if (f.times !== undefined && --f.times <= 0) this.faults.delete(key);
    return f;
  }

  private handleResolve(req: Request, id: string, rev: string, path: string): Response | Promise<Response> {
    const a = this.access(req, id);
    if ("res" in a) return a.res;
    const repo = a.repo;
    const denied = this.gatedDenied(req, repo);
    if (denied) return denied;
    const commit = this.lookupCommit(repo, rev);
    if (!commit) return this.error(404, "RevisionNotFound", `Invalid rev id: ${rev}`);
    const file = commit.files.get(path);
    const common = { "X-Repo-Commit": commit.sha };
    if (!file) return this.error(404, "EntryNotFound", `${path} does not exist on "${rev}"`, common);
    if (file.lfs) {
      const location = `${this.cdnUrl}/repos/${encodeURIComponent(repo.id)}/${file.sha256}?file=${encodeURIComponent(path)}&expires=9999999999`;
      return new Response(null, {
        status: 302,
        headers: {
          ...common,
          Location: location,
          ETag: `"${file.gitOid}"`,
          "X-Linked-Etag": `"${file.sha256}"`,
          "X-Linked-Size": String(file.size),
        },
      });
    }
    return this.serveFile(req, repo.id, file, { ...common, ETag: `"${file.gitOid}"` });
  }

  private handleCdn(req: Request): Response | Promise<Response> {
    const url = new URL(req.url);
    this.log("cdn", req, url);
    const m = /^\/repos\/([^/]+)\/([0-9a-f]{64})$/.exec(url.pathname);
    const repo = m ? this.repos.get(decodeURIComponent(m[1]!)) : undefined;
    const path = url.searchParams.get("file") ?? "";
    if (!m || !repo) return new Response("NoSuchKey", { status: 404 });
    for (const c of repo.commits.values()) {
      const f = c.files.get(path);
      if (f && f.sha256 === m[2]) return this.serveFile(req, repo.id, f, { ETag: `"${f.sha256}"` });
    }
    return new Response("NoSuchKey", { status: 404 });
  }

  /** Serve (a Range of) one file, applying any fault registered for it. */
  private serveFile(req: Request, repo: string, f: StoredFile, headers: Record<string, string>): Response | Promise<Response> {
    const fault = req.method === "GET" ? this.takeFault(repo, f.path) : undefined;
    if (fault?.hang) return never();
    if (fault?.status) return this.error(fault.status, null, `Injected status ${fault.status}`);
    let start = 0;
    let end = f.size; // exclusive
    let status = 200;
    const h: Record<string, string> = { ...headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream" };
    const range = req.headers.get("range");
    if (range) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(range.trim());
      if (!m || Number(m[1]) >= f.size) {
        return new Response(null, { status: 416, headers: { ...h, "Content-Range": `bytes */${f.size}` } });
      }
      start = Number(m[1]);
      if (m[2]) end = Math.min(f.size, Number(m[2]) + 1);
      status = 206;
      h["Content-Range"] = `bytes ${start}-${end - 1}/${f.size}`;
    }
    h["Content-Length"] = String(end - start);
    if (req.method === "HEAD") return new Response(null, { status, headers: h });
    if (!fault && f.file) return new Response(Bun.file(f.file).slice(start, end), { status, headers: h });
    const whole = f.bytes ?? new Uint8Array();
    if (!fault) return new Response(whole.subarray(start, end), { status, headers: h });
    return new Response(faultyBody(whole, start, end, fault), { status, headers: h });
  }
}

function faultyBody(whole: Uint8Array, start: number, end: number, fault: Fault): ReadableStream<Uint8Array> {
  const piece = fault.throttle?.chunk ?? 64 * 1024;
  let pos = start;
  let sent = 0;
  return new ReadableStream({
    type: "direct",
    async pull(c: ReadableStreamDirectController) {
      while (pos < end) {
        if (fault.stallAfter !== undefined && sent >= fault.stallAfter) await never();
        if (fault.dropAfter !== undefined && sent >= fault.dropAfter) {
          // throwing from a direct stream makes Bun reset the socket: the client sees a dropped connection
          throw new Error("loopback hub: injected connection drop");
        }
        let n = Math.min(piece, end - pos);
        if (fault.dropAfter !== undefined) n = Math.min(n, fault.dropAfter - sent);
        if (fault.stallAfter !== undefined) n = Math.min(n, fault.stallAfter - sent);
        const chunk = whole.slice(pos, pos + n);
        if (fault.corruptAt !== undefined && fault.corruptAt >= pos && fault.corruptAt < pos + n) {
          chunk[fault.corruptAt - pos]! ^= 0xff;
        }
        c.write(chunk);
        await c.flush();
        pos += n;
        sent += n;
        if (fault.throttle) await Bun.sleep(fault.throttle.delayMs);
      }
      c.close();
    },
  } as unknown as ConstructorParameters<typeof ReadableStream<Uint8Array>>[0]);
}
