/**
 * Ollama's native API (what VS Code Copilot, Cline, Goose, Zed, Open WebUI speak by default) over the shared
 * run core: /api/version, /api/tags, /api/show, /api/ps, /api/chat, /api/generate (NDJSON streaming by
 * default), /api/embed (and the older /api/embeddings) on the embedders of POST /v1/embeddings, /api/pull and
 * /api/delete (only with --allow-manage).
 */
import { Elysia } from "elysia";
import type { GenerateRequest, ToolCall } from "../../engine/types.ts";
import { MlxkError } from "../../errors.ts";
import { PullProgress } from "../../hub/download.ts";
import { type RouteContext, readJson } from "../context.ts";
import { parseBody } from "../errors.ts";
import type { ModelTarget } from "../model-manager.ts";
import type { ResidentEmbedder } from "../routes/embeddings.ts";
import { servableModels } from "../routes/models.ts";
import { cancelledByClient, logDone, openRun, respond } from "../run.ts";
import { ndjsonFrame, streamResponse } from "../stream.ts";
import {
  ChatRequestSchema,
  EmbedRequestSchema,
  LegacyEmbedRequestSchema,
  chatDone,
  chatLine,
  fromChat,
  fromGenerate,
  generateDone,
  GenerateRequestSchema,
  generateLine,
  isoNow,
  loadLine,
  modelDetails,
  ModelNameSchema,
  OLLAMA_API_VERSION,
  type OllamaPlan,
  PullRequestSchema,
  pseudoDigest,
  requestedName,
  toOllamaName,
  toSpec,
} from "./convert.ts";
import { ollamaErrorBody } from "./errors.ts";

const NDJSON = { contentType: "application/x-ndjson", frame: ndjsonFrame, error: (e: unknown) => ndjsonFrame(ollamaErrorBody(e)) };
const FOREVER = "9999-12-31T23:59:59Z";

function modifiedAt(created: number): string {
  return created > 0 ? new Date(created * 1000).toISOString() : isoNow();
}

export function ollamaRoutes(ctx: RouteContext, embedders?: ResidentEmbedder) {
  const spec = (name: string | undefined) => (name === undefined ? undefined : toSpec(name, ctx.manager.servedNames));

  const generating = async (request: Request, kind: "chat" | "generate") => {
    const raw = await readJson(request, ctx.maxBodyBytes);
    const body = kind === "chat" ? parseBody(ChatRequestSchema, raw) : parseBody(GenerateRequestSchema, raw);
    const { input, plan } = kind === "chat" ? fromChat(body as never) : fromGenerate(body as never);
    const name = requestedName(body);
    if (input === null) return loadOrUnload(kind, name, plan);
    return run(request, kind, name, input, plan, body.think);
  };

  /** No prompt: Ollama clients use this to load a model ahead of time (or unload it with keep_alive 0). */
  const loadOrUnload = async (kind: "chat" | "generate", name: string | undefined, plan: OllamaPlan) => {
    const resolved = ctx.manager.resolve(spec(name));
    const shown = name ?? toOllamaName(resolved.name);
    if (plan.keepAliveMs === 0) {
      await ctx.manager.unload(resolved.target.id);
      return Response.json(loadLine(kind, shown, "unload"));
    }
    const lease = await ctx.manager.lease(resolved);
    lease.release({ keepAliveMs: plan.keepAliveMs });
    return Response.json(loadLine(kind, shown, "load"));
  };

  const run = async (
    request: Request,
    kind: "chat" | "generate",
    name: string | undefined,
    input: GenerateRequest["input"],
    plan: OllamaPlan,
    think: boolean | string | null | undefined,
  ) => {
    const r = await openRun(ctx, request, {
      model: spec(name),
      input,
      // num_predict -1/-2 ("until the context is full") means the server's cap where one is set
      maxTokens: plan.maxTokens === Number.MAX_SAFE_INTEGER && ctx.maxTokensCap !== undefined ? ctx.maxTokensCap : plan.maxTokens,
      maxTokensParam: "options.num_predict",
      sampling: plan.sampling,
      stop: plan.stop,
      contextLimit: plan.contextLimit,
      keepAliveMs: plan.keepAliveMs,
      tools: plan.tools,
      promptParam: kind === "chat" ? "messages" : "prompt",
    });
    if (think != null && think !== false && !r.lease.engine.info.reasoning) {
      r.close();
      throw new MlxkError("validation_error", `Model '${r.lease.name}' does not support thinking ('think')`, { extra: { param: "think", code: "unsupported_parameter" } });
    }
    const shown = name ?? toOllamaName(r.lease.name);
    const id = crypto.randomUUID();
    // Ollama streams a tool call whole, once its arguments are complete: deltas are gathered until the next call starts or the answer ends.
    async function* lines(): AsyncGenerator<unknown, void, undefined> {
      const calls: ToolCall[] = [];
      let sent = 0;
      const flush = (upTo: number) => {
        const ready = calls.slice(sent, upTo);
        const first = sent;
        sent = Math.max(sent, upTo);
        return ready.length > 0 ? [chatLine(shown, { text: "", reasoning: "" }, ready, first)] : [];
      };
      for await (const ev of r.events()) {
        if (ev.type === "done") {
          yield* flush(calls.length);
          logDone(ctx, r, ev, { id, surface: `ollama-${kind}`, stream: true });
          if (ev.finishReason === "cancelled") throw cancelledByClient();
          const ms = performance.now() - r.started;
          yield kind === "chat" ? chatDone(shown, ev, ms) : generateDone(shown, ev, ms);
          return;
        }
        for (const d of ev.toolCalls ?? []) {
          if (d.id !== undefined) {
            yield* flush(d.index);
            calls[d.index] = { id: d.id, name: d.name ?? "", arguments: d.arguments };
          } else if (calls[d.index]) calls[d.index]!.arguments += d.arguments;
        }
        if (ev.text === "" && ev.reasoning === "") continue;
        yield kind === "chat" ? chatLine(shown, ev) : generateLine(shown, ev);
      }
    }
    return respond(r, {
      stream: plan.stream,
      whole: (out) => {
        logDone(ctx, r, out.done, { id, surface: `ollama-${kind}`, stream: false });
        const ms = performance.now() - r.started;
        return Response.json(kind === "chat" ? chatDone(shown, out.done, ms, out) : generateDone(shown, out.done, ms, out));
      },
      streamed: () => streamResponse(lines(), NDJSON, { onCancel: r.abort, onClose: () => r.close() }),
    });
  };

  const describe = (t: ModelTarget) => ({
    size: t.weightBytes,
    digest: pseudoDigest(t.id),
    details: modelDetails({ path: t.path, modelType: t.detection?.configModelType, quantization: t.quantization }),
  });

  const tags = () => {
    const models = servableModels(ctx).map((m) => {
      let target: ModelTarget | null = null;
      try {
        target = ctx.manager.resolve(m.id).target;
      } catch {
        target = null;
      }
      const name = toOllamaName(m.id);
      return { name, model: name, modified_at: modifiedAt(m.created), ...(target ? describe(target) : { size: 0, digest: pseudoDigest(m.id), details: modelDetails({ path: m.id }) }) };
    });
    return Response.json({ models });
  };

  const show = async ({ request }: { request: Request }) => {
    const body = parseBody(ModelNameSchema, await readJson(request, ctx.maxBodyBytes));
    const name = requestedName(body);
    if (name === undefined) throw new MlxkError("validation_error", "Parameter 'model' is required", { extra: { param: "model", code: "missing_required_parameter" } });
    let target: ModelTarget;
    try {
      target = ctx.manager.resolve(spec(name)).target;
    } catch (e) {
      // an embedder is not a generation target, but it is served (/api/embed): describe it as such
      if (e instanceof MlxkError && e.type === "capability_mismatch" && embedders) {
        return Response.json({ license: "", modelfile: "", parameters: "", template: "", details: modelDetails({ path: "" }), model_info: {}, capabilities: ["embedding"], modified_at: isoNow() });
      }
      throw e;
    }
    const engine = ctx.manager.residentEngine(target.id);
    const arch = engine?.info.modelType ?? target.detection?.configModelType ?? "";
    const contextLength = engine?.info.contextLength ?? target.contextLength;
    // what the chat template supports (read from the model's files; a loaded engine knows reasoning for sure)
    const traits = target.template;
    const capabilities =
      target.detection?.kind === "embedding"
        ? ["embedding"]
        : ["completion", ...(traits?.tools ? ["tools"] : []), ...(engine?.info.reasoning || traits?.thinking ? ["thinking"] : [])];
    const modelInfo: Record<string, unknown> = { "general.architecture": arch, "general.basename": target.id };
    if (arch && contextLength) modelInfo[`${arch}.context_length`] = contextLength;
    return Response.json({
      license: "",
      modelfile: "",
      parameters: "",
      template: "",
      details: modelDetails({ path: target.path, modelType: arch, quantization: target.quantization }),
      model_info: modelInfo,
      capabilities,
      modified_at: isoNow(),
    });
  };

  const ps = () => {
    const st = ctx.manager.status();
    const models = ctx.manager.resident.map((t) => {
      const r = st.resident.find((x) => x.id === t.id);
      const name = toOllamaName(t.id === ctx.manager.pinned?.id ? (ctx.manager.servedNames[0] ?? t.id) : t.id);
      const engine = ctx.manager.residentEngine(t.id);
      return {
        name,
        model: name,
        ...describe(t),
        expires_at: r?.expiresAt != null ? new Date(r.expiresAt).toISOString() : FOREVER,
        // MLX uses unified memory: the whole model is "on the device" when there is one
        size_vram: 0,
        context_length: engine?.info.contextLength ?? t.contextLength ?? 0,
      };
    });
    return Response.json({ models });
  };

  const manage = () => {
    if (!ctx.manage) throw new MlxkError("permission_denied", "Model management over HTTP is off: start the server with --allow-manage to allow /api/pull and /api/delete", { extra: { code: "manage_not_allowed" } });
    return ctx.manage;
  };

  const pull = async ({ request }: { request: Request }) => {
    const body = parseBody(PullRequestSchema, await readJson(request, ctx.maxBodyBytes));
    const m = manage();
    const name = requestedName(body);
    if (name === undefined) throw new MlxkError("validation_error", "Parameter 'model' is required", { extra: { param: "model", code: "missing_required_parameter" } });
    const { repo, include } = pullSpec(name);
    const progress = new PullProgress();
    const abort = new AbortController();
    request.signal.addEventListener("abort", () => abort.abort(), { once: true });
    const job = m.pull(repo, { include, signal: abort.signal, progress });
    if (body.stream === false) {
      const data = await job;
      if (data.health === "unhealthy") throw new MlxkError("download_failed", `Downloaded '${repo}' is not healthy: ${data.health_reason ?? "unknown reason"}`);
      return Response.json({ status: "success" });
    }
    async function* lines(): AsyncGenerator<unknown, void, undefined> {
      yield { status: "pulling manifest" };
      let finished = false;
      const done = job.finally(() => {
        finished = true;
      });
      while (!finished) {
        await Promise.race([done.catch(() => undefined), Bun.sleep(250)]);
        if (progress.totalBytes > 0 && !finished) yield { status: `pulling ${repo}`, digest: pseudoDigest(repo), total: progress.totalBytes, completed: progress.doneBytes };
      }
      const data = await job;
      if (progress.totalBytes > 0) yield { status: `pulling ${repo}`, digest: pseudoDigest(repo), total: progress.totalBytes, completed: progress.totalBytes };
      yield { status: "verifying sha256 digest" };
      if (data.health === "unhealthy") throw new MlxkError("download_failed", `Downloaded '${repo}' is not healthy: ${data.health_reason ?? "unknown reason"}`);
      yield { status: "success" };
    }
    return streamResponse(lines(), NDJSON, { onCancel: () => abort.abort() });
  };

  const del = async ({ request }: { request: Request }) => {
    const body = parseBody(ModelNameSchema, await readJson(request, ctx.maxBodyBytes));
    const m = manage();
    const name = requestedName(body);
    if (name === undefined) throw new MlxkError("validation_error", "Parameter 'model' is required", { extra: { param: "model", code: "missing_required_parameter" } });
    const s = toSpec(name);
    if (ctx.manager.pinned && (s === ctx.manager.pinned.id || ctx.manager.servedNames.includes(name))) {
      throw new MlxkError("permission_denied", `'${name}' is the model this server serves; stop the server to delete it`, { extra: { code: "model_in_use" } });
    }
    await ctx.manager.unload(s);
    m.remove(s);
    return new Response(null, { status: 200 });
  };

  /** Embeddings run in the generation queue's turn (MLX runs one thing at a time), on the shared resident embedder. */
  const embedWith = async (request: Request, name: string | undefined, inputs: string[], o: { truncate: boolean; dimensions?: number | null; options?: Record<string, unknown> | null }) => {
    if (!embedders) throw new MlxkError("not_implemented", "Embeddings are not available on this server");
    if (name === undefined) throw new MlxkError("validation_error", "Parameter 'model' is required", { extra: { param: "model", code: "missing_required_parameter" } });
    // generation options mean nothing to an encoder; runtime hints are fine
    const opts = Object.keys(o.options ?? {}).filter((k) => !["num_thread", "num_gpu", "main_gpu", "num_batch", "use_mmap", "use_mlock", "numa", "low_vram", "num_ctx"].includes(k));
    if (opts.length > 0) throw new MlxkError("validation_error", `options.${opts[0]} does not apply to embeddings`, { extra: { param: `options.${opts[0]}`, code: "unsupported_parameter" } });
    const t0 = performance.now();
    const release = await ctx.manager.queue.acquire(request.signal);
    try {
      const opened = await embedders.get(toSpec(name));
      const { vectors, promptTokens } = opened.embedder.embed(inputs, { truncate: o.truncate, dimensions: o.dimensions ?? null });
      return { vectors, promptTokens, ms: performance.now() - t0 };
    } finally {
      release();
    }
  };

  const embed = async ({ request }: { request: Request }) => {
    const body = parseBody(EmbedRequestSchema, await readJson(request, ctx.maxBodyBytes));
    const inputs = typeof body.input === "string" ? [body.input] : body.input;
    if (inputs.length === 0) throw new MlxkError("validation_error", "'input' must not be empty", { extra: { param: "input", code: "invalid_value" } });
    const name = requestedName(body);
    const r = await embedWith(request, name, inputs, { truncate: body.truncate !== false, dimensions: body.dimensions, options: body.options });
    return Response.json({
      model: name,
      embeddings: r.vectors.map((x) => Array.from(x)),
      total_duration: Math.round(r.ms * 1e6),
      load_duration: 0,
      prompt_eval_count: r.promptTokens,
    });
  };

  const legacyEmbed = async ({ request }: { request: Request }) => {
    const body = parseBody(LegacyEmbedRequestSchema, await readJson(request, ctx.maxBodyBytes));
    const r = await embedWith(request, requestedName(body), [body.prompt], { truncate: true, options: body.options });
    return Response.json({ embedding: Array.from(r.vectors[0]!) });
  };

  // Ollama's model-authoring endpoints have no counterpart over an HF cache: say what to use instead
  const authoring = (what: string, instead: string) => () => {
    throw new MlxkError("not_implemented", `${what} is not supported by mlxk's Ollama API: ${instead}`, { extra: { code: "not_supported" } });
  };

  return new Elysia({ name: "ollama" })
    .post("/api/create", authoring("/api/create (Modelfiles)", "models come from the Hugging Face cache (mlxk pull, mlxk convert)"), { parse: "none" })
    .post("/api/copy", authoring("/api/copy", "serve a model under another name with --served-model-name"), { parse: "none" })
    .post("/api/push", authoring("/api/push", "models are pushed to the Hugging Face Hub, not to this server"), { parse: "none" })
    .post("/api/embed", embed, { parse: "none" })
    .post("/api/embeddings", legacyEmbed, { parse: "none" })
    .get("/", () => new Response("Ollama is running (mlxk)", { headers: { "content-type": "text/plain; charset=utf-8" } }))
    .head("/", () => new Response(null, { status: 200 }))
    .get("/api/version", () => Response.json({ version: OLLAMA_API_VERSION }))
    .get("/api/tags", tags)
    .post("/api/show", show, { parse: "none" })
    .get("/api/ps", ps)
    .post("/api/chat", ({ request }) => generating(request, "chat"), { parse: "none" })
    .post("/api/generate", ({ request }) => generating(request, "generate"), { parse: "none" })
    .post("/api/pull", pull, { parse: "none" })
    .delete("/api/delete", del, { parse: "none" });
}

/** `org/name[:tag]` for pull: `latest` is the default revision; another tag picks GGUF files by quant (Ollama's hf.co convention). */
export function pullSpec(name: string): { repo: string; include?: string[] } {
  const s = toSpec(name);
  const m = /^(.*\/[^:]+):([^/:]+)$/.exec(s);
  if (!m) return { repo: s };
  return { repo: m[1]!, include: [`*${m[2]}*.gguf`] };
}
