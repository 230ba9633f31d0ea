/**
 * A scripted Engine for the HTTP-layer paths a real model cannot produce on demand (a slow load, a failure
 * mid-stream, precise pacing). It implements the engine contract honestly: stop strings never emitted,
 * maxTokens → "length", abort → "cancelled" at the next token.
 */
import { settle } from "../../../src/engine/prepare.ts";
import type { Engine, GenerateEvent, GenerateRequest, ModelInfo, PreparedRequest, PrepareOptions } from "../../../src/engine/types.ts";

export interface ScriptOptions {
  /** Words emitted one per token, cycling. */
  words?: string[];
  /** Stop after this many tokens with "stop" (EOS), unless maxTokens comes first. */
  eosAfter?: number;
  /** Milliseconds between tokens. */
  delayMs?: number;
  /** Throw after this many tokens. */
  failAfter?: number;
  /** Reasoning words emitted before the answer. */
  reasoning?: string[];
  contextLength?: number;
  /** After `eosAfter` words: these calls (a start delta, then the arguments in 2 fragments each), finish "tool_calls". */
  calls?: { name: string; arguments: string }[];
}

export class ScriptEngine implements Engine {
  readonly info: ModelInfo;
  disposed = false;
  generating = 0;
  maxConcurrent = 0;
  requests: GenerateRequest[] = [];
  prepared: PreparedRequest[] = [];

  constructor(
    id: string,
    private readonly opts: ScriptOptions = {},
  ) {
    this.info = { id, modelType: "script", contextLength: opts.contextLength ?? 4096, reasoning: (opts.reasoning?.length ?? 0) > 0 };
  }

  countPromptTokens(input: GenerateRequest["input"]): number {
    const text = "prompt" in input ? input.prompt : input.messages.map((m) => m.content).join(" ");
    return text.split(/\s+/).filter(Boolean).length + 1;
  }

  prepare(req: GenerateRequest, opts: PrepareOptions = {}): PreparedRequest {
    const n = this.countPromptTokens(req.input);
    return settle(req, "", Array.from({ length: n }, (_, i) => i), this.info.contextLength, opts);
  }

  async *generate(request: GenerateRequest | PreparedRequest): AsyncGenerator<GenerateEvent, void, undefined> {
    const p = "prepared" in request ? request : this.prepare(request);
    const req = p.req;
    this.requests.push(req);
    this.prepared.push(p);
    this.generating++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.generating);
    try {
      const words = this.opts.words ?? ["alpha", "beta", "gamma", "delta"];
      const think = this.opts.reasoning ?? [];
      const promptTokens = this.countPromptTokens(req.input);
      let out = "";
      let n = 0;
      const done = (finishReason: "stop" | "length" | "cancelled" | "tool_calls"): GenerateEvent => ({
        type: "done",
        finishReason,
        usage: { promptTokens, completionTokens: n },
        timings: { prefillMs: 1, decodeMs: 1, promptTps: 1, generationTps: 1, peakMemoryBytes: 0 },
      });
      while (true) {
        if (req.signal?.aborted) return yield done("cancelled");
        if (this.opts.delayMs) await Bun.sleep(this.opts.delayMs);
        if (req.signal?.aborted) return yield done("cancelled");
        if (this.opts.failAfter !== undefined && n >= this.opts.failAfter) throw new Error("scripted failure");
        if (n >= p.maxTokens) return yield done("length");
        if (this.opts.eosAfter !== undefined && n >= this.opts.eosAfter) {
          const calls = this.opts.calls ?? [];
          for (const [index, c] of calls.entries()) {
            const half = Math.floor(c.arguments.length / 2);
            yield { type: "chunk", text: "", reasoning: "", tokenId: ++n, toolCalls: [{ index, id: `call_${index}`, name: c.name, arguments: "" }] };
            yield { type: "chunk", text: "", reasoning: "", tokenId: ++n, toolCalls: [{ index, arguments: c.arguments.slice(0, half) }] };
            yield { type: "chunk", text: "", reasoning: "", tokenId: ++n, toolCalls: [{ index, arguments: c.arguments.slice(half) }] };
          }
          return yield done(calls.length > 0 ? "tool_calls" : "stop");
        }
        const reasoning = n < think.length ? `${think[n]} ` : "";
        const text = n < think.length ? "" : `${words[(n - think.length) % words.length]} `;
        n++;
        const next = out + text;
        const hit = (req.stop ?? []).map((s) => next.indexOf(s)).filter((i) => i >= 0);
        if (hit.length > 0) {
          const cut = Math.min(...hit);
          yield { type: "chunk", text: next.slice(out.length, Math.max(out.length, cut)), reasoning: "", tokenId: n };
          return yield done("stop");
        }
        out = next;
        const logprob = req.topLogprobs !== undefined ? { token: text || reasoning, logprob: -0.5, top: Array.from({ length: req.topLogprobs }, (_, i) => ({ token: `t${i}`, logprob: -1 - i })) } : undefined;
        yield { type: "chunk", text, reasoning, tokenId: n, ...(logprob ? { logprob } : {}) };
      }
    } finally {
      this.generating--;
    }
  }

  [Symbol.dispose](): void {
    this.disposed = true;
  }
}
