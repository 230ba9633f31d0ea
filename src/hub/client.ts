/**
 * Talking to the Hub: preflight (model info + file listing through @huggingface/hub) and file
 * requests on `/{repo}/resolve/{commit}/{path}` with our own redirect handling, so the token only
 * goes to the Hub's origin and never to the CDN a large file is redirected to.
 */
import { HubApiError, listFiles, modelInfo } from "@huggingface/hub";
import { MlxkError } from "../errors.ts";
import { CLI_VERSION } from "../version.ts";
import { redact } from "./token.ts";

export interface RemoteFile {
  path: string;
  size: number;
  /** Blob name in the cache: sha256 for LFS files, git blob sha1 otherwise (the Hub's ETag). */
  blobId: string;
  /** sha256 of the content for LFS files; null for plain git files (verified by git sha1). */
  sha256: string | null;
}

export interface RemoteRepo {
  repoId: string;
  commit: string;
  gated: boolean;
  private: boolean;
  files: RemoteFile[];
}

export interface HubClientOptions {
  endpoint: string;
  token?: string;
  fetch?: typeof fetch;
  /** Cancels every request (Ctrl-C); a cancelled request throws an `interrupted` download_failed. */
  signal?: AbortSignal;
  /** Deadline for a metadata answer, headers and body (HF_HUB_ETAG_TIMEOUT). @default 10000 */
  metaTimeoutMs?: number;
  /** Deadline for the headers of a file request (HF_HUB_DOWNLOAD_TIMEOUT). @default 10000 */
  downloadTimeoutMs?: number;
  /** Attempts per request on timeouts, dropped connections, 429 and 5xx. @default 3 */
  attempts?: number;
  /** Told before each retry (the CLI shows it). */
  onRetry?: (message: string) => void;
}

interface ErrorHeaders {
  status: number;
  code: string | null;
  message: string | null;
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const BACKOFF_MS = [500, 1000, 2000, 4000];

export function interrupted(cause?: unknown): MlxkError {
  return new MlxkError("download_failed", "Download interrupted", { cause, extra: { interrupted: true } });
}

/** A sleep that ends early (rejecting) when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(interrupted());
    const onAbort = () => {
      clearTimeout(t);
      reject(interrupted());
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}

function encodePath(p: string): string {
  return p.split("/").map(encodeURIComponent).join("/");
}

/** A path from the Hub must stay inside the snapshot folder. */
function safeRepoPath(p: string): boolean {
  if (p === "" || p.startsWith("/") || p.includes("\\") || p.includes("\0")) return false;
  return p.split("/").every((s) => s !== "" && s !== "." && s !== "..");
}

export class HubClient {
  readonly endpoint: string;
  private readonly origin: string;
  private readonly token?: string;
  private readonly baseFetch: typeof fetch;
  private lastError: ErrorHeaders | null = null;
  private readonly signal?: AbortSignal;
  private readonly metaTimeoutMs: number;
  private readonly downloadTimeoutMs: number;
  private readonly attempts: number;
  private readonly onRetry: (message: string) => void;

  constructor(opts: HubClientOptions) {
    this.endpoint = opts.endpoint.replace(/\/+$/, "");
    this.origin = new URL(this.endpoint).origin;
    this.token = opts.token;
    this.baseFetch = opts.fetch ?? fetch;
    this.signal = opts.signal;
    this.metaTimeoutMs = opts.metaTimeoutMs ?? 10_000;
    this.downloadTimeoutMs = opts.downloadTimeoutMs ?? 10_000;
    this.attempts = Math.max(1, opts.attempts ?? 3);
    this.onRetry = opts.onRetry ?? (() => {});
  }

  /**
   * One HTTP exchange under a deadline, retried with backoff on timeouts, network errors, 429 and 5xx.
   * With `readBody` the deadline covers the whole (small, metadata) body and the answer comes back buffered;
   * otherwise it covers the headers and the body stays streaming under `signal` alone.
   */
  private async exchange(url: string, init: RequestInit, o: { timeoutMs: number; readBody: boolean; signal?: AbortSignal; what: string }): Promise<Response> {
    const outer = o.signal ?? this.signal;
    for (let attempt = 1; ; attempt++) {
      if (outer?.aborted) throw interrupted();
      const deadline = new AbortController();
      const timer = setTimeout(() => deadline.abort(), o.timeoutMs);
      const signal = outer ? AbortSignal.any([outer, deadline.signal]) : deadline.signal;
      let why: string;
      let failure: MlxkError;
      try {
        const res = await this.baseFetch(url, { ...init, signal });
        const transient = res.status === 429 || res.status >= 500;
        if (!transient || attempt >= this.attempts) {
          if (!o.readBody) return res;
          const body = await res.arrayBuffer();
          return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
        }
        await res.body?.cancel();
        why = `the Hub answered HTTP ${res.status}`;
        failure = new MlxkError("download_failed", `The Hub answered HTTP ${res.status} for ${o.what}.`, { retryable: true });
      } catch (e) {
        if (outer?.aborted) throw interrupted(e);
        if (e instanceof MlxkError) throw e;
        why = deadline.signal.aborted ? `no answer within ${seconds(o.timeoutMs)}` : `connection failed (${e instanceof Error ? e.message : String(e)})`;
        failure = deadline.signal.aborted
          ? new MlxkError("download_failed", `The Hub at ${this.endpoint} did not answer within ${seconds(o.timeoutMs)} (${o.what}, ${attempt} attempts). Check the network or raise ${o.readBody ? "HF_HUB_ETAG_TIMEOUT" : "HF_HUB_DOWNLOAD_TIMEOUT"}.`, { retryable: true, cause: e })
          : this.networkError(e);
      } finally {
        clearTimeout(timer);
      }
      if (attempt >= this.attempts) throw failure;
      const wait = BACKOFF_MS[Math.min(attempt - 1, BACKOFF_MS.length - 1)]!;
      this.onRetry(`${why}; retrying in ${seconds(wait)} (attempt ${attempt + 1} of ${this.attempts})`);
      await sleep(wait, outer);
    }
  }

  private headersFor(url: string, extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { "User-Agent": `mlxk/${CLI_VERSION}`, ...extra };
    if (this.token && new URL(url).origin === this.origin) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  /** The fetch handed to @huggingface/hub: adds our auth (any token form) and keeps the Hub's error headers. */
  private readonly libFetch = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    const headers = { ...(init?.headers as Record<string, string> | undefined), ...this.headersFor(url) };
    const res = await this.exchange(url, { ...init, headers }, {
      timeoutMs: this.metaTimeoutMs,
      readBody: true,
      what: url.includes("/tree/") ? "file list" : url.includes("/paths-info/") ? "file info" : "model info",
    });
    if (!res.ok) this.lastError = { status: res.status, code: res.headers.get("X-Error-Code"), message: res.headers.get("X-Error-Message") };
    return res;
  }) as typeof fetch;

  /** Map an HTTP failure to the error types of the contract; the message never contains the token. */
  errorFor(repoId: string, e: ErrorHeaders, what = "model"): MlxkError {
    const hint = this.token ? "Check that HF_TOKEN has access to it." : "Set HF_TOKEN (or log in) if it is private.";
    const serverSays = e.message ? ` (Hub: ${redact(e.message, this.token)})` : "";
    if (e.code === "GatedRepo") {
      return new MlxkError("gated", `Access denied: gated ${what} '${repoId}'. Accept its terms on the Hub and set HF_TOKEN.${serverSays}`);
    }
    if (e.code === "RevisionNotFound") return new MlxkError("model_not_found", `Revision not found for '${repoId}'.${serverSays}`);
    if (e.code === "EntryNotFound") return new MlxkError("download_failed", `File missing on the Hub for '${repoId}'.${serverSays}`);
    if (e.status === 401) return new MlxkError("access_denied", `Access denied or not found for '${repoId}' (HTTP 401). ${hint}`);
    if (e.status === 403) return new MlxkError("access_denied", `Access denied to model '${repoId}' (HTTP 403). ${hint}`);
    if (e.status === 404) return new MlxkError("model_not_found", `Model '${repoId}' not found on ${this.endpoint}.`);
    return new MlxkError("download_failed", `The Hub answered HTTP ${e.status} for '${repoId}'.${serverSays}`, { retryable: e.status >= 500 });
  }

  private networkError(e: unknown): MlxkError {
    const msg = e instanceof Error ? e.message : String(e);
    return new MlxkError("download_failed", `Cannot reach the Hub at ${this.endpoint}: ${redact(msg, this.token)}`, { retryable: true, cause: e });
  }

  /** Everything pull needs to know before it writes anything: access, commit, file list. */
  async preflight(repoId: string, revision: string | null): Promise<RemoteRepo> {
    const common = { hubUrl: this.endpoint, fetch: this.libFetch };
    let info: Awaited<ReturnType<typeof modelInfo<"sha">>>;
    try {
      this.lastError = null;
      info = await modelInfo({ ...common, name: repoId, revision: revision ?? "main", additionalFields: ["sha"] });
    } catch (e) {
      throw this.preflightError(repoId, e);
    }
    const commit = info.sha;
    if (typeof commit !== "string" || !/^[0-9a-f]{40}$/.test(commit)) {
      throw new MlxkError("download_failed", `The Hub at ${this.endpoint} returned no commit for '${repoId}'.`);
    }
    const files: RemoteFile[] = [];
    try {
      for await (const f of listFiles({ ...common, repo: { type: "model", name: repoId }, revision: commit, recursive: true })) {
        if (f.type !== "file") continue;
        const blobId = f.lfs?.oid ?? f.oid ?? "";
        if (!safeRepoPath(f.path) || !/^([0-9a-f]{40}|[0-9a-f]{64})$/.test(blobId)) {
          throw new MlxkError("download_failed", `The Hub listed an unusable file entry '${f.path}' for '${repoId}'.`);
        }
        files.push({ path: f.path, size: f.lfs?.size ?? f.size, blobId, sha256: f.lfs ? f.lfs.oid : null });
      }
    } catch (e) {
      throw this.preflightError(repoId, e);
    }
    const gated = Boolean(info.gated);
    // model info is public for gated repos; only a file request tells whether we were let in
    const probe = files.find((f) => f.path === "config.json") ?? files[0];
    if (gated && probe) {
      const res = await this.request("HEAD", repoId, commit, probe.path, 0, this.signal);
      await res.body?.cancel();
    }
    return { repoId, commit, gated, private: Boolean(info.private), files };
  }

  private preflightError(repoId: string, e: unknown): MlxkError {
    if (e instanceof MlxkError) return e;
    if (e instanceof HubApiError) {
      const headers = this.lastError ?? { status: e.statusCode, code: null, message: null };
      return this.errorFor(repoId, { ...headers, status: e.statusCode });
    }
    if (this.signal?.aborted || (e instanceof Error && e.name === "AbortError")) return interrupted(e);
    return this.networkError(e);
  }

  /**
   * GET (or HEAD) one file of a commit, from byte `start` on; follows the Hub's redirect to the CDN
   * without the token. Returns the final 200/206/416 response; throws typed errors otherwise.
   */
  async request(method: "GET" | "HEAD", repoId: string, commit: string, path: string, start: number, signal: AbortSignal | undefined): Promise<Response> {
    let url = `${this.endpoint}/${repoId}/resolve/${commit}/${encodePath(path)}`;
    for (let hop = 0; hop < 6; hop++) {
      const extra: Record<string, string> = { "Accept-Encoding": "identity" };
      if (start > 0) extra.Range = `bytes=${start}-`;
      const res = await this.exchange(url, { method, headers: this.headersFor(url, extra), redirect: "manual" }, {
        timeoutMs: method === "HEAD" ? this.metaTimeoutMs : this.downloadTimeoutMs,
        readBody: method === "HEAD",
        signal: signal ?? this.signal,
        what: path,
      });
      if (REDIRECTS.has(res.status)) {
        const loc = res.headers.get("Location");
        await res.body?.cancel();
        if (!loc) break;
        // a HEAD only needs the Hub's own answer: the CDN would not know the repo's access rules
        if (method === "HEAD") return res;
        url = new URL(loc, url).href;
        continue;
      }
      if (res.ok || res.status === 416) return res;
      const err = { status: res.status, code: res.headers.get("X-Error-Code"), message: res.headers.get("X-Error-Message") };
      await res.body?.cancel();
      throw this.errorFor(repoId, err);
    }
    throw new MlxkError("download_failed", `Too many redirects for '${path}' of '${repoId}'.`);
  }
}
