/**
 * The Engine (src/engine/types.ts) over MLX: a loaded model plus its text pipeline (tokenizer, chat
 * template, EOS ids, detokenizer, stop strings, reasoning split). Greedy requests without penalties
 * decode fully on the device (pipelined); everything else samples on the host over f32 logits.
 */
import { fallbackChatFormat, loadTextPipeline, Rng, sampleToken, type SampledToken, type TextPipeline } from "../generate/index.ts";
import { checkSchema } from "../generate/json-schema-check.ts";
import { createToolCallParser, detectToolCallFormat, ForcedCallParser, templateRendersTools, type ToolCallFormat } from "../generate/tool-calls/index.ts";
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import { compileGrammar, createConstraint, type TokenConstraint } from "./constrain.ts";
import type { StandardKVCache } from "../models/cache.ts";
import { Decoder } from "../models/transformer.ts";
import { batchRefusal, MlxBatcher, type MlxJoin } from "./batch.ts";
import { tokenLoop, type HostSampler } from "./generate.ts";
import { Scheduler } from "./scheduler.ts";
import { type LoadedModel, loadGgufModel, loadModelDir, type LoadOptions } from "./load.ts";
import type { ModelSource } from "./open.ts";
import { mergeSteps, OutputChain, type OutputStep } from "./output.ts";
import { settle } from "./prepare.ts";
import { PromptCache } from "./prompt-cache.ts";
import { type Boundary, type ChatRendering, messageBoundaries, RenderMemo } from "./boundaries.ts";
import { isReusable, type ReusableCache } from "../models/cache.ts";
import { forcedToolChoice, type GrammarSpec, grammarFor, nativeSyntax, parametersSchema, templateMessage, templateTool, withToolsPrompt } from "./tools.ts";
import type {
  ChatMessage,
  Engine,
  GenerateChunk,
  GenerateDone,
  GenerateEvent,
  GenerateRequest,
  ModelInfo,
  PreparedRequest,
  PrepareOptions,
  TokenLogprob,
  ToolDefinition,
} from "./types.ts";

type ModelCache = ReturnType<LoadedModel["model"]["makeCache"]>[number];

export interface EngineOptions {
  promptCacheBytes?: number;
  /** Requests decoded at once (continuous batching); 1 or absent = one at a time. */
  parallel?: number;
  /** Bytes the running requests' KV may reserve in total (admission); absent = unbounded. */
  kvBudgetBytes?: number;
  /** Free memory now (os.freemem): a request whose KV does not fit is refused before it starts. */
  freeMemory?: () => number;
}

export class MlxEngine implements Engine {
  readonly info: ModelInfo;
  /** KV of earlier requests, reused by prompts that start the same way (null: off). */
  readonly promptCache: PromptCache<ModelCache> | null;
  /** Renderings of message-list prefixes (the message boundaries of the prompt cache). */
  readonly #renders = new RenderMemo(16);

  /** Continuous batching (null: one request at a time); see batching for why it is off. */
  readonly #scheduler: Scheduler<MlxJoin> | null = null;
  readonly #batcher: MlxBatcher | null = null;
  /** Asked-for batch size and, when the model cannot batch, why it runs one request at a time. */
  readonly batching: { parallel: number; refusal: string | null };

  constructor(
    readonly loaded: LoadedModel,
    readonly text: TextPipeline,
    id: string,
    readonly loadMs?: number,
    opts: EngineOptions = {},
  ) {
    this.info = { id, modelType: loaded.modelType, contextLength: loaded.contextLength, reasoning: text.reasoningFormat !== null };
    this.promptCache = (opts.promptCacheBytes ?? 0) > 0 ? new PromptCache(opts.promptCacheBytes!) : null;
    const parallel = Math.max(1, Math.floor(opts.parallel ?? 1));
    const refusal = parallel > 1 ? batchRefusal(loaded.model, loaded.modelType) : null;
    this.batching = { parallel, refusal };
    if (parallel > 1 && refusal === null) {
      this.#batcher = new MlxBatcher(loaded.model);
      this.#scheduler = new Scheduler(this.#batcher, { parallel, kvBudgetBytes: opts.kvBudgetBytes, freeMemory: opts.freeMemory });
    }
  }

  /** The most requests one decode step has run together (0 without batching). */
  get batchPeak(): number {
    return this.#scheduler?.peak ?? 0;
  }

  /** Requests in the batching scheduler now (running, prefilling, waiting; 0 without batching). */
  get batchRows(): number {
    return this.#scheduler?.active ?? 0;
  }

  /** Requests decoded at once (1 = one at a time). */
  get parallel(): number {
    return this.#scheduler?.parallel ?? 1;
  }

  /** KV bytes one token takes in every layer (f32 keys and values). */
  get kvBytesPerToken(): number {
    const m = this.loaded.model;
    return m instanceof Decoder ? m.s.numLayers * m.s.kvHeads * m.s.headDim * 2 * 4 : 0;
  }

  /**
   * Reserve KV memory for a prepared request before its first byte (batching only): 503 queue_full when the
   * running requests leave no room. Returns the release (call it when the request ends).
   */
  reserve(p: PreparedRequest): () => void {
    if (!this.#scheduler) return () => {};
    return this.#scheduler.admit((p.ids.length + p.maxTokens) * this.kvBytesPerToken);
  }

  /** The prompt text and its token ids, as the model will see them (tools rendered by the chat template). */
  encode(input: GenerateRequest["input"], tools?: ToolDefinition[]): { prompt: string; ids: number[] } {
    const chat = this.chat(input, tools);
    const prompt = chat ? chat.render(chat.messages, true) : (input as { prompt: string }).prompt;
    return { prompt, ids: this.text.encodePrompt(prompt) };
  }

  /** A chat input as the template sees it, with a renderer for any prefix of it (null for a plain prompt). */
  private chat(input: GenerateRequest["input"], tools?: ToolDefinition[]): ChatRendering<ChatMessage> | null {
    if ("prompt" in input) return null;
    const encode = (t: string) => this.text.encodePrompt(t);
    const encodeRest = (t: string) => this.text.tokenizer.encode(t, { addSpecialTokens: false });
    const base = { emptyUser: { role: "user", content: "" } as ChatMessage, role: (m: ChatMessage) => m.role, encode, encodeRest };
    if (input.chatTemplate === false) return { ...base, messages: input.messages, render: (m) => fallbackChatFormat(m) };
    const withTools = tools && tools.length > 0;
    // A template that never reads `tools` (e.g. SmolLM2's) would drop them: describe them in the system turn instead.
    const messages = withTools && !templateRendersTools(this.templateSource) ? withToolsPrompt(input.messages, tools) : input.messages;
    const render = (m: readonly ChatMessage[], addGenerationPrompt: boolean) => {
      const make = () =>
        this.text.applyChatTemplate(m.map(templateMessage), {
          kwargs: input.templateKwargs,
          addGenerationPrompt,
          ...(withTools ? { tools: tools.map(templateTool) } : {}),
        });
      // Never the prompt itself from the memo (a template may read the date); a boundary is checked against the prompt's tokens.
      return addGenerationPrompt ? make() : this.#renders.get(JSON.stringify([m, input.templateKwargs ?? null, withTools ? tools : null]), make);
    };
    return { ...base, messages, render };
  }

  /**
   * Where prefill stops to keep a prompt-cache snapshot: the message boundaries past the cached part, for a
   * chat whose layer caches can be cloned but not all trimmed (a trimmable cache trims back to any prefix).
   */
  private snapshotMarks(p: PreparedRequest, cache: readonly ModelCache[], cached: number): Boundary[] {
    if (!this.promptCache || !cache.every(isReusable) || cache.every((c) => (c as unknown as ReusableCache).trimmable)) return [];
    const chat = this.chat(p.req.input, p.req.toolChoice === "none" ? undefined : p.req.tools);
    return chat ? messageBoundaries(chat, p.prompt, p.ids, cached) : [];
  }

  countPromptTokens(input: GenerateRequest["input"], tools?: ToolDefinition[]): number {
    return this.encode(input, tools).ids.length;
  }

  prepare(req: GenerateRequest, opts: PrepareOptions = {}): PreparedRequest {
    if ((req.tools?.length ?? 0) > 0 && req.toolChoice !== "none" && !forcedToolChoice(req) && "messages" in req.input && this.toolFormat === null) {
      throw new MlxkError(
        "validation_error",
        `${this.info.id} has no tool-call format in its chat template, so tool_choice 'auto' cannot be honoured; use tool_choice 'required' or a named function (enforced by constrained decoding)`,
        { extra: { param: "tools", code: "unsupported_parameter" } },
      );
    }
    this.checkStrictTools(req);
    const tools = req.toolChoice === "none" ? undefined : req.tools;
    const { prompt, ids } = this.encode(req.input, tools);
    if (ids.length === 0) {
      const bos = this.text.tokenizer.specialTokenId("bos_token") ?? this.text.tokenizer.specialTokenId("eos_token") ?? 0;
      ids.push(bos);
    }
    return settle(req, prompt, ids, this.info.contextLength, opts);
  }

  cachedPrefix(p: PreparedRequest): number | undefined {
    return this.promptCache?.peek(p.ids);
  }

  async *generate(request: GenerateRequest | PreparedRequest): AsyncGenerator<GenerateEvent, void, undefined> {
    const p = "prepared" in request ? request : this.prepare(request);
    const { req, prompt, ids, maxTokens } = p;
    const s = req.sampling;
    const wantLogprobs = req.topLogprobs !== undefined;
    const constraint = await this.constraintFor(req);
    // Greedy without penalties stays on the device, masked there under a constraint (logprobs then need the host).
    const onDevice = s.temperature <= 0 && (s.repetitionPenalty <= 0 || s.repetitionPenalty === 1) && !(constraint && wantLogprobs);
    // A batched greedy row with the repetition penalty (the OpenAI default) takes it on the device, computed as
    // the host sampler does (same tokens), so its step need not wait for the read-back: pipelined like greedy.
    const penaltyOnDevice = this.#scheduler !== null && s.temperature <= 0 && !onDevice && s.repetitionPenalty > 0 && !constraint && !wantLogprobs;
    const rng = new Rng(s.seed);
    let last: SampledToken | null = null;
    const sampler: HostSampler = (logits, history) => {
      constraint?.mask(logits);
      last = sampleToken(logits, s, rng, { history, logprobs: wantLogprobs, topLogprobs: req.topLogprobs ?? 0 });
      return last.token;
    };
    const detok = this.text.createDetokenizer();
    const stops = this.text.createStopMatcher(req.stop ?? []);
    const output = this.outputChain(req, prompt, this.grammar(req));
    const tok = this.text.tokenizer;
    mx.memory.resetPeak();

    let finishReason: GenerateDone["finishReason"] = "length";
    let completion = 0;
    const stats = { prefillMs: 0, decodeMs: 0, generated: 0 };
    const batched = this.#scheduler !== null;
    // a batched row looks the prompt cache up when the scheduler turns to it (BatchRow.lookup), not now
    let hit = batched ? null : (this.promptCache?.take(ids) ?? null);
    const cache = hit?.caches ?? this.loaded.model.makeCache();
    const marks = this.snapshotMarks(p, cache, hit?.cached ?? 0);
    // Every token the loop hands out; the model has seen the prompt and a prefix of these (the cache's offset).
    const seen = [...ids];
    let failed = false;
    const promptCache = this.promptCache;
    const row = batched
      ? this.#scheduler!.join(
          this.#batcher!.newcomer(
            {
              prompt: ids,
              cache,
              cached: hit?.cached ?? 0,
              policy: penaltyOnDevice
                ? { penalty: { value: s.repetitionPenalty, window: s.repetitionContextSize } }
                : { sampler: onDevice ? undefined : sampler, wantLogits: onDevice && wantLogprobs, ...(onDevice && constraint ? { deviceMask: (n: number) => constraint.bias(n) } : {}) },
              ...(promptCache
                ? {
                    // the prompt's KV in the trie while the row decodes: a request arriving meanwhile reuses its prefix
                    onPrefilled: (kv) => promptCache.share(ids, kv as ModelCache[]),
                    lookup: () => {
                      hit = promptCache.take(ids);
                      return hit ? { cache: hit.caches, cached: hit.cached } : null;
                    },
                  }
                : {}),
            },
            // the row's KV when it leaves the batch: kept as the solo path keeps it
            (kv) => {
              // a row may have run a token ahead of this consumer: keep only the KV of tokens it handed out
              const n = kv[0]?.offset ?? 0;
              if (n > seen.length) for (const c of kv) (c as StandardKVCache).trim(n - seen.length);
              if (this.promptCache && !failed) this.promptCache.put(seen.slice(0, kv[0]?.offset ?? 0), kv);
              else for (const c of kv) c[Symbol.dispose]();
            },
          ),
          // a constraint's mask follows the grammar, a host sampler reports through this consumer: such rows wait for it
          { maxTokens, signal: req.signal, stats, lockstep: !(onDevice || penaltyOnDevice) || constraint !== null },
        )
      : null;
    const loop = row ? null : tokenLoop({
      stats,
      model: this.loaded.model,
      prompt: ids,
      cache,
      cached: hit?.cached ?? 0,
      ...(this.promptCache
        ? {
            marks: marks.map((b) => b.at),
            onMark: (n: number) => this.promptCache!.snapshot(ids.slice(0, n), cache, { system: marks.some((b) => b.at === n && b.system) }),
            onPrefilled: () => this.promptCache!.snapshot(ids, cache),
          }
        : {}),
      maxTokens,
      sampler: onDevice ? undefined : sampler,
      wantLogits: onDevice && wantLogprobs,
      ...(onDevice && constraint ? { deviceMask: (n: number) => constraint.bias(n) } : {}),
      shouldStop: () => req.signal?.aborted === true,
      yieldPrefill: true,
    });
    try {
      if (constraint) await constraint.prepareNext();
      for (;;) {
        if (req.signal?.aborted) {
          finishReason = "cancelled";
          break;
        }
        const r = row ? await row.next() : loop!.next();
        if (r.done) {
          // a batched row ends when its signal aborts
          if (row && req.signal?.aborted) finishReason = "cancelled";
          break;
        }
        if ("prefilled" in r.value && r.value.prefilled !== undefined) {
          // A long prompt: keep /health, signals and disconnects responsive between prefill chunks.
          await new Promise<void>((resolve) => setImmediate(resolve));
          continue;
        }
        const { token, logits } = r.value;
        seen.push(token);
        if (this.text.eosTokenIds.has(token)) {
          finishReason = "stop";
          break;
        }
        completion++;
        const stopped = stops.push(detok.add(token));
        const step = output.push(stopped.text);
        let logprob: (TokenLogprob & { top: TokenLogprob[] }) | undefined;
        if (wantLogprobs) {
          if (onDevice && logits) last = sampleToken(logits, { ...s, temperature: 0 }, rng, { logprobs: true, topLogprobs: req.topLogprobs ?? 0 });
          const sd = last as SampledToken | null;
          if (sd) {
            logprob = {
              token: tok.decode([token]),
              logprob: sd.logprob,
              top: sd.top.map((t) => ({ token: tok.decode([t.token]), logprob: t.logprob })),
            };
          }
        }
        yield chunkOf(step, token, logprob);
        if (stopped.stop !== null) {
          finishReason = "stop";
          break;
        }
        if (constraint) {
          constraint.accept(token);
          // The grammar is complete: only an end token may follow, so end here (some vocabularies have none).
          if (constraint.done) {
            finishReason = "stop";
            break;
          }
          await constraint.prepareNext();
        } else if (!row) {
          // Let timers, signals and I/O run between tokens. (A batched row's stream yields the turn each
          // step already; yielding here too put its consumer a turn behind the scheduler's read-back.)
          await new Promise<void>((resolve) => setImmediate(resolve));
        }
      }
      const tail = stops.matched === null ? stops.push(detok.flush()).text + stops.flush() : "";
      const end = mergeSteps(output.push(tail), output.flush());
      if (end.text || end.reasoning || end.toolCalls.length > 0) yield chunkOf(end, -1);
    } catch (e) {
      failed = true;
      throw e;
    } finally {
      if (row) {
        // the scheduler owns the cache now: it comes back through the leave callback
        await row.return();
        constraint?.[Symbol.dispose]();
      } else {
        loop!.return(stats);
        constraint?.[Symbol.dispose]();
        // A step that threw may have left the cache half-updated: never keep it.
        if (this.promptCache && !failed) this.promptCache.put(seen.slice(0, cache[0]?.offset ?? 0), cache);
        else for (const c of cache) c[Symbol.dispose]();
      }
    }
    if (finishReason === "stop" && output.calledTools) finishReason = "tool_calls";
    yield {
      type: "done",
      finishReason,
      ...(stops.matched !== null ? { stopSequence: stops.matched } : {}),
      usage: { promptTokens: ids.length, completionTokens: completion, ...(this.promptCache ? { cachedTokens: hit?.cached ?? 0 } : {}) },
      timings: {
        loadMs: this.loadMs,
        prefillMs: stats.prefillMs,
        decodeMs: stats.decodeMs,
        promptTps: stats.prefillMs > 0 ? ((ids.length - (hit?.cached ?? 0)) / stats.prefillMs) * 1000 : 0,
        generationTps: stats.decodeMs > 0 && stats.generated > 1 ? ((stats.generated - 1) / stats.decodeMs) * 1000 : 0,
        peakMemoryBytes: mx.memory.peak(),
      },
    };
  }

  /**
   * `strict: true` promises arguments that validate, also under tool_choice auto: refused (naming the field)
   * where this model's calls cannot be enforced, and a strict function's schema must be enforceable.
   */
  private checkStrictTools(req: GenerateRequest): void {
    const tools = req.tools ?? [];
    if (req.toolChoice === "none") return;
    const auto = !forcedToolChoice(req);
    tools.forEach((t, i) => {
      if (t.strict !== true) return;
      checkSchema(parametersSchema(t), `tools[${i}].function.parameters`);
      if (auto && this.grammar(req)?.kind !== "tags") {
        throw new MlxkError("validation_error", `tools[${i}].function.strict: ${this.info.id}'s tool calls cannot be enforced under tool_choice 'auto'; use tool_choice 'required' or a named function`, {
          extra: { param: `tools[${i}].function.strict`, code: "unsupported_parameter" },
        });
      }
    });
  }

  /** The grammar a request needs; calls in the family's own syntax where it wraps JSON (see tools.ts NATIVE). */
  private grammar(req: GenerateRequest): GrammarSpec | null {
    return grammarFor(req, nativeSyntax(this.toolFormat, this.templateSource));
  }

  /** reasoning → tool calls → text, as this request needs it. */
  private outputChain(req: GenerateRequest, prompt: string, grammar: GrammarSpec | null): OutputChain {
    const forced = forcedToolChoice(req);
    // Calls forced as bare JSON (no family syntax to wrap them) are read by the forced-call parser.
    if (forced && grammar?.kind !== "tags") return new OutputChain(null, new ForcedCallParser(forced, req.tools ?? []));
    // Output that is exactly an enforced JSON value has no reasoning markers in it.
    const jsonOnly = grammar !== null && grammar.kind !== "tags";
    const tools = req.tools && req.tools.length > 0 && req.toolChoice !== "none" ? req.tools : null;
    const reasoning = jsonOnly ? null : this.text.createReasoningParser(prompt, { toolCalls: tools !== null });
    const parser = tools && !jsonOnly ? createToolCallParser(this.toolFormat, tools) : null;
    return new OutputChain(reasoning, parser, { parallel: req.parallelToolCalls !== false, harmonyCalls: tools !== null });
  }

  private get templateSource(): string | null {
    return this.text.chatTemplates ? Object.values(this.text.chatTemplates).join("\n") : null;
  }

  get toolFormat(): ToolCallFormat | null {
    return detectToolCallFormat({ chatTemplate: this.templateSource, hasToken: (t) => this.text.tokenizer.tokenToId(t) !== undefined });
  }

  async warm(p: PreparedRequest): Promise<void> {
    const grammar = this.grammar(p.req);
    if (grammar) await compileGrammar(this.text, grammar);
  }

  private async constraintFor(req: GenerateRequest): Promise<TokenConstraint | null> {
    const grammar = this.grammar(req);
    return grammar ? await createConstraint(this.text, grammar) : null;
  }

  [Symbol.dispose](): void {
    this.#scheduler?.[Symbol.dispose]();
    this.#batcher?.[Symbol.dispose]();
    this.promptCache?.[Symbol.dispose]();
    this.loaded[Symbol.dispose]();
  }
}

function chunkOf(step: OutputStep, tokenId: number, logprob?: TokenLogprob & { top: TokenLogprob[] }): GenerateChunk {
  return {
    type: "chunk",
    text: step.text,
    reasoning: step.reasoning,
    tokenId,
    ...(logprob ? { logprob } : {}),
    ...(step.toolCalls.length > 0 ? { toolCalls: step.toolCalls } : {}),
  };
}


/** Load model + text pipeline for a located source. */
export async function loadEngine(source: ModelSource, opts: LoadOptions & EngineOptions = {}): Promise<MlxEngine> {
  const t0 = performance.now();
  const path = source.path;
  const text = loadTextPipeline(path);
  const loaded = source.kind === "gguf" ? await loadGgufModel(path, opts) : await loadModelDir(path, opts);
  const { promptCacheBytes, parallel, kvBudgetBytes, freeMemory } = opts;
  return new MlxEngine(loaded, text, source.id, performance.now() - t0, { promptCacheBytes, parallel, kvBudgetBytes, freeMemory });
}
