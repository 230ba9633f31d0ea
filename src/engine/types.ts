/**
 * The contract between the inference engine (src/engine/, src/models/) and its users
 * (`mlxk run` in src/cli/run.ts, the server in src/server/). Plain data; no MLX types leak out.
 */

export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant" | "tool";
  content: string;
}

export interface SamplingParams {
  /** 0 = greedy. @default 0.7 */
  temperature: number;
  /** @default 0.9 */
  topP: number;
  /** 0 = off. */
  topK: number;
  /** 0 = off. */
  minP: number;
  /** 1 = off. @default 1.1 */
  repetitionPenalty: number;
  /** Tokens looked back for the repetition penalty. @default 20 */
  repetitionContextSize: number;
  /** Same seed → same tokens. */
  seed?: number;
}

export interface GenerateRequest {
  /** Chat messages rendered with the model's chat template, or a raw prompt used as is. */
  input: { messages: ChatMessage[]; chatTemplate?: boolean; templateKwargs?: Record<string, unknown> } | { prompt: string };
  /** Upper bound on generated tokens; the engine also stops at the context length. */
  maxTokens: number;
  sampling: SamplingParams;
  /** Stop strings: generation ends before the first occurrence, which is never emitted. */
  stop?: string[];
  /** Number of top logprobs to report per token (0..20); undefined = no logprobs. */
  topLogprobs?: number;
  /** Aborting stops generation at the next token. */
  signal?: AbortSignal;
}

export interface TokenLogprob {
  token: string;
  logprob: number;
}

/** One step of output. `text` is safe UTF-8 (never a broken sequence); it may be empty while bytes are held back. */
export interface GenerateChunk {
  type: "chunk";
  /** Answer text of this step. */
  text: string;
  /** Reasoning text of this step (`<think>` / harmony analysis channel), split from the answer. */
  reasoning: string;
  tokenId: number;
  logprob?: TokenLogprob & { top: TokenLogprob[] };
}

export interface GenerateDone {
  type: "done";
  finishReason: "stop" | "length" | "cancelled";
  /** The stop string that ended generation (finishReason "stop"); absent when EOS or nothing stopped it. */
  stopSequence?: string;
  usage: { promptTokens: number; completionTokens: number };
  timings: { loadMs?: number; prefillMs: number; decodeMs: number; promptTps: number; generationTps: number; peakMemoryBytes: number };
}

export type GenerateEvent = GenerateChunk | GenerateDone;

export interface ModelInfo {
  /** Name as resolved in the cache (org/name) or the path of a GGUF / local dir. */
  id: string;
  modelType: string;
  contextLength: number;
  /** True when the model's output has reasoning markers the engine splits. */
  reasoning: boolean;
}

/** A loaded model. All calls must happen on the thread that loaded it (MLX streams are thread-local). */
export interface Engine extends Disposable {
  readonly info: ModelInfo;
  /** Count the tokens of a request's rendered prompt (for usage and context checks). */
  countPromptTokens(input: GenerateRequest["input"]): number;
  generate(req: GenerateRequest): AsyncGenerator<GenerateEvent, void, undefined>;
}
