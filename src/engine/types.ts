/**
 * The contract between the inference engine (src/engine/, src/models/) and its users
 * (`mlxk run` in src/cli/run.ts, the server in src/server/). Plain data; no MLX types leak out.
 */

export interface ChatMessage {
  role: "system" | "developer" | "user" | "assistant" | "tool";
  content: string;
  /** assistant: the calls this turn made (rendered through the chat template as HF templates expect). */
  toolCalls?: ToolCall[];
  /** tool: the id of the call this message answers. */
  toolCallId?: string;
  /** tool: the function's name (some templates print it). */
  name?: string;
}

/** A complete function call; `arguments` is the JSON text of the arguments object, as OpenAI sends it. */
export interface ToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** A function the model may call; `parameters` is a JSON Schema for its arguments object. */
export interface ToolDefinition {
  name: string;
  description?: string;
  parameters: Record<string, unknown>;
  strict?: boolean;
}

/** auto: the model decides; none: never call; required: at least one call; {name}: exactly that function. */
export type ToolChoice = "auto" | "none" | "required" | { name: string };

/** Output the decoder enforces token by token (never "hoped for"). */
export type OutputConstraint =
  | { type: "json_object" }
  | { type: "json_schema"; schema: Record<string, unknown>; name?: string; strict?: boolean };

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
  /** Upper bound on generated tokens; undefined = the caller's default (see PrepareOptions). Never past the context. */
  maxTokens?: number;
  sampling: SamplingParams;
  /** Stop strings: generation ends before the first occurrence, which is never emitted. */
  stop?: string[];
  /** Number of top logprobs to report per token (0..20); undefined = no logprobs. */
  topLogprobs?: number;
  /** Aborting stops generation at the next token. */
  signal?: AbortSignal;
  /** Functions the model may call (rendered into the prompt via the chat template). */
  tools?: ToolDefinition[];
  /** @default "auto" when tools are given */
  toolChoice?: ToolChoice;
  /** false: at most one call per answer. @default true */
  parallelToolCalls?: boolean;
  /** Enforced output format (JSON Schema / any JSON object). */
  constraint?: OutputConstraint;
}

/** How prepare() settles an omitted maxTokens (run: the whole remaining context; server: its --max-tokens or context/2). */
export interface PrepareOptions {
  defaultMaxTokens?: number;
}

/** A request after the one front half both run and server use: prompt rendered once, context checked, limit settled. */
export interface PreparedRequest {
  readonly prepared: true;
  req: GenerateRequest;
  /** The rendered prompt text and its token ids, exactly as the model will see them. */
  prompt: string;
  ids: number[];
  /** Tokens the generation may produce (≥ 1, ≤ context − prompt). */
  maxTokens: number;
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
  /**
   * Tool-call output of this step. A call starts with a delta carrying its `index`, `id` and `name`
   * (arguments ""), argument text fragments follow with the same index; calls never interleave.
   */
  toolCalls?: ToolCallDelta[];
}

export interface ToolCallDelta {
  /** 0-based position of the call in this answer. */
  index: number;
  /** Set only on the first delta of a call. */
  id?: string;
  name?: string;
  /** A fragment of the arguments JSON text (possibly ""). */
  arguments: string;
}

export interface GenerateDone {
  type: "done";
  /** tool_calls: the answer ended with one or more function calls. */
  finishReason: "stop" | "length" | "cancelled" | "tool_calls";
  /** The stop string that ended generation (finishReason "stop"); absent when EOS or nothing stopped it. */
  stopSequence?: string;
  /** cachedTokens: leading prompt tokens reused from the prompt cache (not prefilled again). */
  usage: { promptTokens: number; completionTokens: number; cachedTokens?: number };
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
  countPromptTokens(input: GenerateRequest["input"], tools?: ToolDefinition[]): number;
  /**
   * The front half of every generation: render the prompt once, check it fits the context (else
   * MlxkError `context_length_exceeded` naming both sizes), settle max tokens, validate tools and the
   * constraint (a 400 naming what cannot be enforced).
   */
  prepare(req: GenerateRequest, opts?: PrepareOptions): PreparedRequest;
  /**
   * Builds what a prepared request needs before the first byte goes out (the constraint's grammar, cached),
   * so a schema the grammar engine rejects is still a request error, not a failed stream. Optional.
   */
  warm?(p: PreparedRequest): Promise<void>;
  /** Requests this engine decodes at once (continuous batching); absent or 1 = one at a time. */
  readonly parallel?: number;
  /**
   * Reserve what a prepared request needs to run beside the others (its KV memory) before the first byte;
   * throws queue_full (503 + retry-after) when it does not fit now. Returns the release. Optional.
   */
  reserve?(p: PreparedRequest): () => void;
  /**
   * Leading prompt tokens the prompt cache would reuse if the request ran now (what a surface announces before
   * generation starts; `done.usage.cachedTokens` is the exact figure). Undefined: no prompt cache. Optional.
   */
  cachedPrefix?(p: PreparedRequest): number | undefined;
  /** Runs a prepared request (a plain one is prepared with default options first). */
  generate(req: GenerateRequest | PreparedRequest): AsyncGenerator<GenerateEvent, void, undefined>;
}
