/** What every route family gets from createApp: the model manager, the model list and the server settings. */
import { MlxkError } from "../errors.ts";
import type { PullProgress } from "../hub/download.ts";
import type { DeviceReport, ModelObject } from "../schemas/openai.ts";
import type { PullData } from "../schemas/pull.ts";
import type { ModelManager } from "./model-manager.ts";

export type LogLevel = "info" | "warn" | "error";
export type Logger = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export interface AppDeps {
  manager: ModelManager;
  /** Runnable models for GET /v1/models (the cache scan; injected so tests use a temp cache). */
  listModels: () => ModelObject[];
  /** Require `Authorization: Bearer <key>` on /v1/*. */
  apiKey?: string;
  /** Origins allowed by CORS; `*` allows any; empty/undefined sends no CORS headers. */
  cors?: string[];
  /** Largest accepted request body. @default 8 MiB */
  maxBodyBytes?: number;
  /** Server default for max_tokens when a request names none (else half the context). */
  maxTokens?: number;
  /** Largest max_tokens a request may ask for (--max-tokens-cap); more is a 400, none means the cap. */
  maxTokensCap?: number;
  /** Wall-clock limit of one request, queue wait included (--request-timeout); then 504 or an error frame. */
  requestTimeoutMs?: number;
  /** Aborted when the server shuts down: running answers end with a server_shutdown error (frame). */
  shutdown?: AbortSignal;
  log?: Logger;
  /** Load an embedding model for POST /v1/embeddings (default: the CLI resolver with process.env). */
  openEmbedder?: (spec: string) => Promise<import("../embed/open.ts").OpenedEmbedder>;
  /** Pull and delete over HTTP (Ollama's /api/pull, /api/delete); absent = refused with 403 (`--allow-manage`). */
  manage?: ModelManagement;
  /** Whether MLX can run here (health is 503 when not) and on which device; absent = assume it can. */
  runtime?: () => RuntimeStatus;
}

export interface RuntimeStatus {
  available: boolean;
  reason?: string;
  /** The device models run on, with its memory (GET /v1/models reports it). */
  device?: DeviceReport;
}

export interface ModelManagement {
  /** Download into the cache; `progress` is updated while it runs. */
  pull: (spec: string, opts: { include?: string[]; signal?: AbortSignal; progress: PullProgress }) => Promise<PullData>;
  /** Delete a cache model by its exact name; returns the bytes freed. Refuses workspaces and fuzzy names. */
  remove: (spec: string) => { name: string; freedBytes: number };
}

export interface RouteContext extends Required<Pick<AppDeps, "manager" | "listModels" | "maxBodyBytes">> {
  manage: ModelManagement | undefined;
  maxTokens: number | undefined;
  maxTokensCap?: number;
  requestTimeoutMs?: number;
  shutdown?: AbortSignal;
  runtime: () => RuntimeStatus;
  log: Logger;
  fingerprint: string;
}

export const DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024;

/** Read a JSON body with a size bound that holds even without Content-Length (chunked uploads). */
export async function readJson(request: Request, maxBytes: number): Promise<unknown> {
  const tooLarge = () => new MlxkError("payload_too_large", `Request body exceeds the limit of ${maxBytes} bytes`, { extra: { code: "payload_too_large" } });
  const declared = Number(request.headers.get("content-length") ?? "NaN");
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge();
  const parts: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    for await (const chunk of request.body) {
      size += chunk.byteLength;
      if (size > maxBytes) throw tooLarge();
      parts.push(chunk);
    }
  }
  const text = new TextDecoder().decode(Buffer.concat(parts));
  if (text.trim() === "") throw new MlxkError("validation_error", "Request body is empty: send a JSON object", { extra: { code: "invalid_json" } });
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new MlxkError("validation_error", `Request body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`, {
      extra: { code: "invalid_json" },
    });
  }
}

/** Yield to the event loop: lets aborts, new connections and socket writes through between tokens. */
export function tick(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}
