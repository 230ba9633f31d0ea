/** `mlxk server` (alias `serve`): validate settings and the model, then supervise the OpenAI-compatible worker. */
import { defineCommand } from "citty";
import { type Env, serverApiKey, serverHost, serverPort, serverWorkerConfig } from "../env.ts";
import { MlxkError } from "../errors.ts";
import { jsonArgs, parseIntArg } from "./args.ts";
import type { CliContext } from "./context.ts";

const NOTES = `Endpoints (OpenAI-compatible; 'Authorization: Bearer <key>' on /v1/* with --api-key):
  GET  /health                 200 when ready, 503 while a model loads
  GET  /v1/models              runnable models (GET /v1/models/{org/name}: one)
  POST /v1/chat/completions    chat (stream: true for server-sent events)
  POST /v1/completions         raw text completion (no chat template)
Requests that ask for what the server cannot honour are refused with a 400 naming the field.

Examples:
  mlxk server --model Llama-3.2-1B --port 8000
  curl -s localhost:8000/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model":"Llama-3.2-1B","messages":[{"role":"user","content":"Hello"}]}'
  mlxk ps; mlxk stop 8000      list / stop running servers`;

export default Object.assign(defineCommand({
  meta: { name: "server", description: "Serve cached models over an OpenAI-compatible HTTP API" },
  args: {
    model: { type: "string", description: "Model to load at startup (else the first request's model loads)" },
    host: { type: "string", description: "Address to bind (env MLXK_HOST)" },
    port: { type: "string", description: "Port to bind, 0 = any free port (env MLXK_PORT)" },
    "max-tokens": { type: "string", description: "Default max_tokens when a request names none (else half the context)" },
    "max-tokens-cap": { type: "string", valueHint: "n", description: "Refuse requests asking for more max_tokens than this (400); also caps the default" },
    "request-timeout": { type: "string", valueHint: "seconds", description: "Seconds one request may take, queue wait included (then 504 / an error frame)" },
    "api-key": { type: "string", description: "Require 'Authorization: Bearer <key>' on /v1/* (env MLXK_API_KEY)" },
    cors: { type: "string", description: "Comma-separated origins allowed by CORS, or '*' (default: no CORS headers)" },
    "log-json": { type: "boolean", description: "Log JSON lines to stderr" },
    ...jsonArgs,
  },
  async run({ args, data }) {
    const ctx = data as CliContext;
    // Inside a compiled executable the supervisor re-invokes us as its worker.
    if (serverWorkerConfig(ctx.env)) {
      const { workerMain } = await import("../server/worker.ts");
      await workerMain(ctx.env);
      await new Promise(() => {}); // serve until a signal ends the process
    }
    const env: Env = ctx.env;
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
    if (host.trim() === "") throw new MlxkError("InvalidArgumentError", "--host must not be empty");
    let model: string | null = null;
    if (args.model !== undefined) {
      // Fail before binding: a typo should not leave a server that 404s every request.
      const { resolveTarget } = await import("../server/models-source.ts");
      model = resolveTarget(args.model, { env }).id;
    }
    const { ensureMlxRuntime } = await import("../mlx/setup.ts");
    await ensureMlxRuntime({ env, log: (m) => ctx.stderr(`mlxk: ${m}\n`), tty: process.stderr.isTTY && !ctx.json });
    const { supervise } = await import("../server/supervisor.ts");
    let fatal: string | null = null;
    const code = await supervise({
      config: { host, port, model, maxTokens, apiKey, cors, logJson: Boolean(args["log-json"]), maxTokensCap, requestTimeoutS },
      env,
      onReady: (info) => {
        const url = `http://${info.host.includes(":") ? `[${info.host}]` : info.host}:${info.port}`;
        // pid is the supervisor's (ours): the process to signal; killing the worker only restarts it
        const data = { status: "listening", url, host: info.host, port: info.port, model: info.model, pid: process.pid, worker_pid: info.pid };
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
