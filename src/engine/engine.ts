/**
 * The Engine (src/engine/types.ts) over MLX: a loaded model plus its text pipeline (tokenizer, chat
 * template, EOS ids, detokenizer, stop strings, reasoning split). Greedy requests without penalties
 * decode fully on the device (pipelined); everything else samples on the host over f32 logits.
 */
import { fallbackChatFormat, loadTextPipeline, Rng, sampleToken, type SampledToken, type TextPipeline } from "../generate/index.ts";
import { MlxkError } from "../errors.ts";
import * as mx from "../mlx/index.ts";
import { tokenLoop, type HostSampler } from "./generate.ts";
import { type LoadedModel, loadGgufModel, loadModelDir, type LoadOptions } from "./load.ts";
import type { ModelSource } from "./open.ts";
import type { Engine, GenerateEvent, GenerateRequest, ModelInfo, TokenLogprob } from "./types.ts";

export class MlxEngine implements Engine {
  readonly info: ModelInfo;

  constructor(
    readonly loaded: LoadedModel,
    readonly text: TextPipeline,
    id: string,
    readonly loadMs?: number,
  ) {
    this.info = { id, modelType: loaded.modelType, contextLength: loaded.contextLength, reasoning: text.reasoningFormat !== null };
  }

  /** The prompt text and its token ids, as the model will see them. */
  encode(input: GenerateRequest["input"]): { prompt: string; ids: number[] } {
    let prompt: string;
    if ("prompt" in input) prompt = input.prompt;
    else if (input.chatTemplate === false) prompt = fallbackChatFormat(input.messages);
    else prompt = this.text.applyChatTemplate(input.messages, { kwargs: input.templateKwargs });
    return { prompt, ids: this.text.encodePrompt(prompt) };
  }

  countPromptTokens(input: GenerateRequest["input"]): number {
    return this.encode(input).ids.length;
  }

  async *generate(req: GenerateRequest): AsyncGenerator<GenerateEvent, void, undefined> {
    const { prompt, ids } = this.encode(req.input);
    if (ids.length === 0) {
      const bos = this.text.tokenizer.specialTokenId("bos_token") ?? this.text.tokenizer.specialTokenId("eos_token") ?? 0;
      ids.push(bos);
    }
    if (ids.length >= this.info.contextLength) {
      throw new MlxkError("validation_error", `The prompt is ${ids.length} tokens; the model's context is ${this.info.contextLength} tokens. Shorten the prompt or the chat history.`);
    }
    const maxTokens = Math.max(0, Math.min(req.maxTokens, this.info.contextLength - ids.length));
    const s = req.sampling;
    const wantLogprobs = req.topLogprobs !== undefined;
    const onDevice = s.temperature <= 0 && (s.repetitionPenalty <= 0 || s.repetitionPenalty === 1);
    const rng = new Rng(s.seed);
    let last: SampledToken | null = null;
    const sampler: HostSampler = (logits, history) => {
      last = sampleToken(logits, s, rng, { history, logprobs: wantLogprobs, topLogprobs: req.topLogprobs ?? 0 });
      return last.token;
    };
    const detok = this.text.createDetokenizer();
    const stops = this.text.createStopMatcher(req.stop ?? []);
    const reasoning = this.text.createReasoningParser(prompt);
    const tok = this.text.tokenizer;
    mx.memory.resetPeak();

    let finishReason: "stop" | "length" | "cancelled" = "length";
    let completion = 0;
    const stats = { prefillMs: 0, decodeMs: 0, generated: 0 };
    const loop = tokenLoop({
      stats,
      model: this.loaded.model,
      prompt: ids,
      maxTokens: Math.max(1, maxTokens),
      sampler: onDevice ? undefined : sampler,
      wantLogits: onDevice && wantLogprobs,
      shouldStop: () => req.signal?.aborted === true,
      yieldPrefill: true,
    });
    try {
      if (maxTokens === 0) throw new StopIteration();
      for (;;) {
        if (req.signal?.aborted) {
          finishReason = "cancelled";
          break;
        }
        const r = loop.next();
        if (r.done) break;
        if (r.value.prefilled !== undefined) {
          // A long prompt: keep /health, signals and disconnects responsive between prefill chunks.
          await new Promise<void>((resolve) => setImmediate(resolve));
          continue;
        }
        const { token, logits } = r.value;
        if (this.text.eosTokenIds.has(token)) {
          finishReason = "stop";
          break;
        }
        completion++;
        const stopped = stops.push(detok.add(token));
        const split = reasoning ? reasoning.push(stopped.text) : { reasoning: "", answer: stopped.text };
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
        yield { type: "chunk", text: split.answer, reasoning: split.reasoning, tokenId: token, ...(logprob ? { logprob } : {}) };
        if (stopped.stop !== null) {
          finishReason = "stop";
          break;
        }
        // Let timers, signals and I/O run between tokens.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      const tail = stops.matched === null ? stops.push(detok.flush()).text + stops.flush() : "";
      const end = reasoning ? mergeDeltas(reasoning.push(tail), reasoning.flush()) : { reasoning: "", answer: tail };
      if (end.answer || end.reasoning) yield { type: "chunk", text: end.answer, reasoning: end.reasoning, tokenId: -1 };
    } catch (e) {
      if (!(e instanceof StopIteration)) throw e;
    } finally {
      loop.return(stats);
    }
    const gen = completion;
    yield {
      type: "done",
      finishReason,
      usage: { promptTokens: ids.length, completionTokens: gen },
      timings: {
        loadMs: this.loadMs,
        prefillMs: stats.prefillMs,
        decodeMs: stats.decodeMs,
        promptTps: stats.prefillMs > 0 ? (ids.length / stats.prefillMs) * 1000 : 0,
        generationTps: stats.decodeMs > 0 && stats.generated > 1 ? ((stats.generated - 1) / stats.decodeMs) * 1000 : 0,
        peakMemoryBytes: mx.memory.peak(),
      },
    };
  }

  [Symbol.dispose](): void {
    this.loaded[Symbol.dispose]();
  }
}

class StopIteration extends Error {}

function mergeDeltas(a: { reasoning: string; answer: string }, b: { reasoning: string; answer: string }) {
  return { reasoning: a.reasoning + b.reasoning, answer: a.answer + b.answer };
}

/** Load model + text pipeline for a located source. */
export async function loadEngine(source: ModelSource, opts: LoadOptions = {}): Promise<MlxEngine> {
  const t0 = performance.now();
  const path = source.path;
  const text = loadTextPipeline(path);
  const loaded = source.kind === "gguf" ? await loadGgufModel(path, opts) : await loadModelDir(path, opts);
  return new MlxEngine(loaded, text, source.id, performance.now() - t0);
}
