/** `mlxk server` (alias `serve`): validate settings and the model, then supervise the OpenAI-compatible worker. */
import { defineCommand } from "citty";
import { type Env, serverApiKey, serverHost, serverPort, serverWorkerConfig } from "../env.ts";
import { MlxkError } from "../errors.ts";
import { jsonArgs, listArg, parseBytesArg, parseIntArg } from "./args.ts";
import type { CliContext } from "./context.ts";

/** Ollama's default idle time for a model nobody pinned. */
const DEFAULT_KEEP_ALIVE_MS = 5 * 60_000;

const NOTES = `Endpoints (OpenAI-compatible; 'Authorization: Bearer <key>' on /v1/* with --api-key):
  GET  /health                 200 when ready, 503 while a model loads
  GET  /v1/models              runnable models (GET /v1/models/{org/name}: one)
  POST /v1/chat/completions    chat (stream: true for server-sent events)
  POST /v1/completions         raw text completion (no chat template)
  POST /v1/embeddings          vectors from an embedding model
  POST /v1/responses           OpenAI Responses (stateless)
  POST /v1/messages            Anthropic Messages (+ /v1/messages/count_tokens)
  /api/*                       Ollama's API (tags, show, ps, chat, generate, embed, version)
Requests that ask for what the server cannot honour are refused with a 400 naming the field.

Examples:
  mlxk server --model Llama-3.2-1B --port 8000
  curl -s localhost:8000/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"Llama-3.2-1B","messages":[{"role":"user","content":"Hello"}]}'
  mlxk ps; mlxk stop 8000      list / stop running servers`;

export default Object.assign(defineCommand({
  meta: { name: "server", description: "Serve cached models over the OpenAI (chat, Responses), Anthropic Messages and Ollama HTTP APIs" },
  args: {
    model: { type: "string", description: "The model to serve, loaded at startup; requests may omit 'model' (else the first request's model loads)" },
    "served-model-name": { type: "string", description: "Name(s) clients may use for --model, e.g. gpt-4o-mini (repeatable or comma-separated; the first is reported)" },
    "allow-switch": { type: "boolean", description: "With --model: let requests load other cached models too" },
    "allow-paths": { type: "boolean", description: "Accept file/dir paths as a request's 'model' (off: cache and workspace names only)" },
    "max-models": { type: "string", description: "Models resident at once (default: as many as free memory holds)" },
    "keep-alive": { type: "string", description: "Idle time before a model other than --model is unloaded, e.g. 5m, 1h, -1 = never (default 5m)" },
    "allow-manage": { type: "boolean", description: "Allow Ollama's /api/pull and /api/delete to download and delete cache models" },
    host: { type: "string", description: "Address to bind (env MLXK_HOST)" },
    port: { type: "string", description: "Port to bind, 0 = any free port (env MLXK_PORT)" },
    "max-tokens": { type: "string", description: "Default max_tokens when a request names none (else half the context)" },
    "max-tokens-cap": { type: "string", valueHint: "n", description: "Refuse requests asking for more max_tokens than this (400); also caps the default" },
    "request-timeout": { type: "string", valueHint: "seconds", description: "Seconds one request may take, queue wait included (then 504 / an error frame)" },
    "api-key": { type: "string", description: "Require 'Authorization: Bearer <key>' on /v1/* (env MLXK_API_KEY)" },
    cors: { type: "string", description: "Comma-separated origins allowed by CORS, or '*' (default: no CORS headers)" },
    "log-json": { type: "boolean", description: "Log JSON lines to stderr" },
    "prompt-cache": { type: "boolean", default: true, description: "Reuse the KV of earlier requests' shared prefix (--no-prompt-cache: off)" },
    "prompt-cache-bytes": { type: "string", description: "Memory for the prompt cache, e.g. 2GiB (default: a quarter of free memory, at most 8 GiB)" },
    parallel: { type: "string", valueHint: "n", description: "Requests decoded together (continuous batching; default 8, fewer when memory is short; 1 = one at a time)" },
    ...jsonArgs,
  },
  async run({ args, data, rawArgs }) {
    const ctx = data as CliContext;
    // Inside a compiled executable the supervisor re-invokes us as its worker.
    if (serverWorkerConfig(ctx.env)) {
      const { workerMain } = await import("../server/worker.ts");
      await workerMain(ctx.env);
      await new Promise(() => {}); // serve until a signal ends the process
    }
    const env: Env = ctx.env;
    // under `mlxk launch`: ranks > 0 serve rank 0's pipeline; rank 0 serves one pinned model and never restarts
    // its worker (a new worker cannot rejoin the ring: the launch ends instead)
    const { launchInfo } = await import("../distributed/world.ts");
    const launched = launchInfo(env);
    if (launched) {
      if (args.model === undefined) throw new MlxkError("InvalidArgumentError", "under mlxk launch the server needs --model (every rank loads it at start)");
      if (args["allow-switch"]) throw new MlxkError("InvalidArgumentError", "--allow-switch is not available under mlxk launch: every rank holds a slice of the one --model");
      if (launched.rank > 0) {
        const { followLaunched } = await import("../distributed/follower.ts");
        await followLaunched(args.model, env);
        return;
      }
    }
    const host = args.host ?? serverHost(env) ?? "127.0.0.1";
    const port = parseIntArg(args.port !== undefined ? "port" : "port (MLXK_PORT)", args.port ?? serverPort(env) ?? "8000", 0, 65535)!;
    const maxTokens = parseIntArg("max-tokens", args["max-tokens"], 1) ?? null;
    const maxTokensCap = parseIntArg("max-tokens-cap", args["max-tokens-cap"], 1) ?? null;
    const requestTimeoutS = parseIntArg("request-timeout", args["request-timeout"], 1, 86_400) ?? null;
    if (maxTokens !== null && maxTokensCap !== null && maxTokens > maxTokensCap) {
      throw new MlxkError("InvalidArgumentError", `--max-tokens (${maxTokens}) must not exceed --max-tokens-cap (${maxTokensCap})`);
    }
    const apiKey = args["api-key"] ?? serverApiKey(env) ?? null;
    const cors = (args.cors ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
    const cacheBytes = parseBytesArg("prompt-cache-bytes", args["prompt-cache-bytes"]);
    if (args["prompt-cache"] === false && cacheBytes !== undefined) throw new MlxkError("InvalidArgumentError", "--no-prompt-cache and --prompt-cache-bytes contradict each other: give one");
    // unset: the worker sizes it from the free memory of the device it runs models on
    const promptCacheBytes = args["prompt-cache"] === false ? 0 : cacheBytes;
    // unset: the worker takes 8, fewer when the device's free memory is short
    const parallel = parseIntArg("parallel", args.parallel, 1, 256);
    if (host.trim() === "") throw new MlxkError("InvalidArgumentError", "--host must not be empty");
    let model: string | null = null;
    if (args.model !== undefined) {
      // Fail before binding: a typo should not leave a server that 404s every request.
      const { resolveTarget } = await import("../server/models-source.ts");
      model = resolveTarget(args.model, { env }).id;
    }
    const servedNames = listArg(rawArgs, "served-model-name");
    if (servedNames.length > 0 && model === null) throw new MlxkError("InvalidArgumentError", "--served-model-name names the --model: give --model too");
    if (args["allow-switch"] && model === null) throw new MlxkError("InvalidArgumentError", "--allow-switch only matters with --model (without it every cached model can be requested)");
    const maxModels = parseIntArg("max-models", args["max-models"], 1, 64) ?? null;
    let keepAliveMs: number | null = DEFAULT_KEEP_ALIVE_MS;
    if (args["keep-alive"] !== undefined) {
      const { parseKeepAlive } = await import("../server/ollama/convert.ts");
      try {
        keepAliveMs = parseKeepAlive(args["keep-alive"], "--keep-alive");
      } catch (e) {
        throw new MlxkError("InvalidArgumentError", e instanceof Error ? e.message : String(e));
      }
    }
    const { ensureMlxRuntime } = await import("../mlx/setup.ts");
    await ensureMlxRuntime({ env, log: (m) => ctx.stderr(`mlxk: ${m}\n`), tty: process.stderr.isTTY && !ctx.json });
    const { supervise } = await import("../server/supervisor.ts");
    let fatal: string | null = null;
    const code = await supervise({
      config: {
        host,
        port,
        model,
        maxTokens,
        apiKey,
        cors,
        logJson: Boolean(args["log-json"]),
        servedNames,
        allowSwitch: Boolean(args["allow-switch"]),
        allowPaths: Boolean(args["allow-paths"]),
        allowManage: Boolean(args["allow-manage"]),
        maxModels,
        keepAliveMs,
        promptCacheBytes,
        parallel,
        maxTokensCap,
        requestTimeoutS,
      },
      env,
      ...(launched ? { maxRestarts: 0 } : {}),
      onReady: (info) => {
        const url = `http://${info.host.includes(":") ? `[${info.host}]` : info.host}:${info.port}`;
        // pid is the supervisor's (ours): the process to signal; killing the worker only restarts it
        const data = { status: "listening", url, host: info.host, port: info.port, model: info.model, served_names: servedNames, pid: process.pid, worker_pid: info.pid };
        if (ctx.json) ctx.stdout(`${JSON.stringify({ status: "success", command: "server", data, error: null })}\n`);
        else ctx.stdout(`mlxk server listening on ${url}${info.model ? ` (loading ${info.model})` : " (models load on first request)"}\n`);
      },
      onFatal: (m) => {
        fatal = m;
      },
      onNote: (m) => ctx.stderr(`mlxk server: ${m}\n`),
    });
    if (code !== 0) throw new MlxkError("execution_error", fatal ?? `Server worker exited with code ${code}`);
  },
}), { notes: NOTES });
