/**
 * The OpenAI wire shapes the server accepts and emits (valibot). Requests are loose objects: clients send
 * unknown fields freely, and a 400 on an unknown key breaks SDK upgrades. Fields we cannot honour are
 * rejected in src/server/openai/convert.ts with a message that names them, never silently ignored.
 */
import * as v from "valibot";

const TextPart = v.looseObject({ type: v.literal("text"), text: v.string() });
/** Any part: `type` is checked in the converter so an image part gets "not supported", not "invalid type". */
const ContentPart = v.looseObject({ type: v.string() });

export const ChatMessageSchema = v.looseObject({
  role: v.picklist(["system", "developer", "user", "assistant", "tool"], "must be one of system, developer, user, assistant, tool"),
  content: v.optional(v.nullable(v.union([v.string(), v.array(ContentPart)], "must be a string or an array of content parts"))),
  name: v.optional(v.string()),
  tool_calls: v.optional(v.unknown()),
  tool_call_id: v.optional(v.string()),
});
export type ChatMessageIn = v.InferOutput<typeof ChatMessageSchema>;
export { TextPart };

const num = (min: number, max: number) => v.pipe(v.number("must be a number"), v.minValue(min, `must be >= ${min}`), v.maxValue(max, `must be <= ${max}`));
const int = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  v.pipe(v.number("must be an integer"), v.integer("must be an integer"), v.minValue(min, `must be >= ${min}`), v.maxValue(max, `must be <= ${max}`));
const nullish = <T extends v.GenericSchema>(s: T) => v.optional(v.nullable(s));

const StopSchema = nullish(
  v.union(
    [v.pipe(v.string(), v.minLength(1, "must not be empty")), v.pipe(v.array(v.pipe(v.string(), v.minLength(1, "must not be empty"))), v.maxLength(16, "at most 16 stop sequences"))],
    "must be a string or an array of strings",
  ),
);

/** Fields shared by chat and text completions (sampling, limits, streaming). */
const common = {
  /** Optional: omitted (or "") means the served model (`--model`). */
  model: nullish(v.string("must be a string")),
  max_tokens: nullish(int(1)),
  temperature: nullish(num(0, 2)),
  top_p: nullish(num(0, 1)),
  top_k: nullish(int(0)),
  min_p: nullish(num(0, 1)),
  repetition_penalty: nullish(num(0, 10)),
  seed: nullish(v.pipe(v.number("must be an integer"), v.integer("must be an integer"))),
  stop: StopSchema,
  stream: nullish(v.boolean("must be a boolean")),
  stream_options: nullish(v.looseObject({ include_usage: nullish(v.boolean("must be a boolean")) })),
  n: nullish(int(1)),
  presence_penalty: nullish(num(-2, 2)),
  frequency_penalty: nullish(num(-2, 2)),
  logit_bias: nullish(v.record(v.string(), v.number())),
  user: nullish(v.string()),
};

export const ChatCompletionRequestSchema = v.looseObject({
  ...common,
  messages: v.pipe(v.array(ChatMessageSchema, "must be an array of messages"), v.minLength(1, "must contain at least one message")),
  max_completion_tokens: nullish(int(1)),
  logprobs: nullish(v.boolean("must be a boolean")),
  top_logprobs: nullish(int(0, 20)),
  tools: nullish(v.array(v.unknown())),
  tool_choice: nullish(v.unknown()),
  parallel_tool_calls: nullish(v.boolean("must be a boolean")),
  response_format: nullish(v.looseObject({ type: v.string() })),
  chat_template_kwargs: nullish(v.record(v.string(), v.unknown())),
});
export type ChatCompletionRequest = v.InferOutput<typeof ChatCompletionRequestSchema>;

export const CompletionRequestSchema = v.looseObject({
  ...common,
  prompt: v.union([v.string(), v.array(v.unknown())], "must be a string"),
  /** Legacy completions logprobs: number of top alternatives (0..5). */
  logprobs: nullish(int(0, 5)),
  echo: nullish(v.boolean("must be a boolean")),
  suffix: nullish(v.string()),
  best_of: nullish(int(1)),
});
export type CompletionRequest = v.InferOutput<typeof CompletionRequestSchema>;

// ---- responses (validated in tests: every emitted body and chunk must pass) ----

export const UsageSchema = v.strictObject({
  prompt_tokens: v.pipe(v.number(), v.integer(), v.minValue(0)),
  completion_tokens: v.pipe(v.number(), v.integer(), v.minValue(0)),
  total_tokens: v.pipe(v.number(), v.integer(), v.minValue(0)),
  /** As OpenAI reports prompt caching: leading prompt tokens reused, not prefilled again. */
  prompt_tokens_details: v.optional(v.strictObject({ cached_tokens: v.pipe(v.number(), v.integer(), v.minValue(0)) })),
});

const TopLogprob = v.strictObject({ token: v.string(), logprob: v.number(), bytes: v.nullable(v.array(v.number())) });
export const ChatLogprobsSchema = v.strictObject({
  content: v.array(v.strictObject({ ...TopLogprob.entries, top_logprobs: v.array(TopLogprob) })),
  refusal: v.null(),
});

const FinishReason = v.picklist(["stop", "length"]);
const ChatFinishReason = v.picklist(["stop", "length", "tool_calls"]);

/** A complete call in a chat response: arguments are the JSON text of the arguments object. */
const ToolCallSchema = v.strictObject({
  id: v.string(),
  type: v.literal("function"),
  function: v.strictObject({ name: v.string(), arguments: v.string() }),
});

/** A streamed call delta: index always; id, type and name only in a call's first delta. */
const ToolCallDeltaSchema = v.strictObject({
  index: v.pipe(v.number(), v.integer(), v.minValue(0)),
  id: v.optional(v.string()),
  type: v.optional(v.literal("function")),
  function: v.strictObject({ name: v.optional(v.string()), arguments: v.string() }),
});

/** Fields every completion response and chunk carries besides its id and object. */
const responseFields = {
  created: v.pipe(v.number(), v.integer()),
  model: v.string(),
  system_fingerprint: v.string(),
};

export const ChatCompletionSchema = v.strictObject({
  id: v.pipe(v.string(), v.startsWith("chatcmpl-")),
  object: v.literal("chat.completion"),
  ...responseFields,
  choices: v.strictTuple([
    v.strictObject({
      index: v.literal(0),
      message: v.strictObject({
        role: v.literal("assistant"),
        content: v.nullable(v.string()),
        refusal: v.null(),
        reasoning_content: v.optional(v.string()),
        tool_calls: v.optional(v.array(ToolCallSchema)),
      }),
      logprobs: v.nullable(ChatLogprobsSchema),
      finish_reason: ChatFinishReason,
    }),
  ]),
  usage: UsageSchema,
});
export type ChatCompletion = v.InferOutput<typeof ChatCompletionSchema>;

export const ChatCompletionChunkSchema = v.strictObject({
  id: v.pipe(v.string(), v.startsWith("chatcmpl-")),
  object: v.literal("chat.completion.chunk"),
  ...responseFields,
  choices: v.union([
    v.strictTuple([]),
    v.strictTuple([
      v.strictObject({
        index: v.literal(0),
        delta: v.strictObject({
          role: v.optional(v.literal("assistant")),
          content: v.optional(v.nullable(v.string())),
          reasoning_content: v.optional(v.string()),
          tool_calls: v.optional(v.array(ToolCallDeltaSchema)),
        }),
        logprobs: v.nullable(v.strictObject({ content: ChatLogprobsSchema.entries.content, refusal: v.null() })),
        finish_reason: v.nullable(ChatFinishReason),
      }),
    ]),
  ]),
  usage: v.optional(v.nullable(UsageSchema)),
});
export type ChatCompletionChunk = v.InferOutput<typeof ChatCompletionChunkSchema>;

export const CompletionLogprobsSchema = v.strictObject({
  tokens: v.array(v.string()),
  token_logprobs: v.array(v.number()),
  top_logprobs: v.array(v.record(v.string(), v.number())),
  text_offset: v.array(v.number()),
});

export const TextCompletionSchema = v.strictObject({
  id: v.pipe(v.string(), v.startsWith("cmpl-")),
  object: v.literal("text_completion"),
  ...responseFields,
  choices: v.union([
    v.strictTuple([]),
    v.strictTuple([
      v.strictObject({
        index: v.literal(0),
        text: v.string(),
        logprobs: v.nullable(CompletionLogprobsSchema),
        finish_reason: v.nullable(FinishReason),
      }),
    ]),
  ]),
  usage: v.optional(v.nullable(UsageSchema)),
});
export type TextCompletion = v.InferOutput<typeof TextCompletionSchema>;

export const ModelObjectSchema = v.strictObject({
  id: v.string(),
  object: v.literal("model"),
  created: v.pipe(v.number(), v.integer()),
  owned_by: v.string(),
  context_length: v.nullable(v.number()),
  /** mlxk: what the model does (`chat`, `text-generation`, `embeddings`, …), so clients pick the right API. */
  capabilities: v.optional(v.array(v.string())),
});
export type ModelObject = v.InferOutput<typeof ModelObjectSchema>;

/** mlxk: the device the server runs models on and its memory (GPU memory on CUDA), beside the list. */
export const DeviceReportSchema = v.strictObject({
  backend: v.picklist(["cpu", "cuda", "metal"]),
  name: v.nullable(v.string()),
  memory_total_bytes: v.pipe(v.number(), v.minValue(0)),
  memory_free_bytes: v.pipe(v.number(), v.minValue(0)),
});
export type DeviceReport = v.InferOutput<typeof DeviceReportSchema>;

export const ModelListSchema = v.strictObject({ object: v.literal("list"), data: v.array(ModelObjectSchema), device: v.optional(DeviceReportSchema) });

export const ErrorBodySchema = v.strictObject({
  error: v.strictObject({ message: v.string(), type: v.string(), param: v.nullable(v.string()), code: v.nullable(v.string()) }),
});
export type ErrorBody = v.InferOutput<typeof ErrorBodySchema>;
