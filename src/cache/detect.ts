/**
 * What a snapshot holds, read from its files only (contract §4.3): framework, kind (`model_type` of the
 * JSON API: chat/base/embedding/audio), capabilities, context length.
 *
 * Exports: Framework, detectFramework(view, name), detectKind(view, name), detectCapabilities(view, name, kind),
 *          classifyEmbedder(config, name), contextLength(config), VISION_MODEL_TYPES, detectModel(view, name)
 */
import { defaultVariant, inspectGguf, isGgufModelFile, variantHasChatTemplate, variantModelType } from "./gguf.ts";
import { parseSafetensorsHeader, readSafetensorsHeaderBytes } from "./safetensors.ts";
import { isObject, type SnapshotView } from "./snapshot.ts";

export type Framework = "MLX" | "GGUF" | "PyTorch" | "Unknown";

export const VISION_MODEL_TYPES: ReadonlySet<string> = new Set([
  "llava",
  "llava_next",
  "pixtral",
  "qwen2_vl",
  "phi3_v",
  "mllama",
  "paligemma",
  "idefics",
  "smolvlm",
]);

/** README front matter (first `---` block) says `library_name: mlx` or lists the `mlx` tag. */
function readmeSaysMlx(view: SnapshotView): boolean {
  const text = view.readText("README.md");
  if (!text || !text.startsWith("---")) return false;
  const end = text.indexOf("\n---", 3);
  const fm = end > 0 ? text.slice(3, end) : "";
  if (/^library_name:\s*["']?mlx["']?\s*$/m.test(fm)) return true;
  const inline = /^tags:\s*\[([^\]]*)\]/m.exec(fm);
  if (inline?.[1]?.split(",").some((t) => t.trim().replace(/["']/g, "") === "mlx")) return true;
  const block = /^tags:\s*\n((?:[ \t]*-[^\n]*\n?)+)/m.exec(fm);
  return Boolean(block?.[1]?.split("\n").some((l) => l.replace(/^\s*-\s*/, "").trim().replace(/["']/g, "") === "mlx"));
}

/** MLX writes `{"format": "mlx"}` into safetensors metadata; huggingface/torch writes "pt". */
function safetensorsSaysMlx(view: SnapshotView): boolean {
  const first = view.files.find((f) => f.rel.endsWith(".safetensors") && f.size > 8);
  if (!first) return false;
  try {
    const bytes = readSafetensorsHeaderBytes(first.path);
    // a header of a big torch model is MBs of JSON: without "mlx" (or a \u escape that could spell it) in the
    // bytes, no value can be "mlx", so the parse is skipped
    if (bytes.indexOf("mlx") < 0 && bytes.indexOf("\\u") < 0) return false;
    return parseSafetensorsHeader(bytes, first.path).metadata.format === "mlx";
  } catch {
    return false;
  }
}

/**
 * First hit wins, as in mlx-knife, plus one step it lacks: an unquantized MLX export outside mlx-community
 * without README tags is recognised by its safetensors metadata instead of being called PyTorch.
 */
export function detectFramework(view: SnapshotView, name: string): Framework {
  if (name.toLowerCase().includes("mlx-community/")) return "MLX";
  if (readmeSaysMlx(view)) return "MLX";
  const config = view.readObject("config.json");
  if (config && "quantization" in config) return "MLX";
  if (view.files.some((f) => isGgufModelFile(f.rel))) return "GGUF";
  if (safetensorsSaysMlx(view)) return "MLX";
  const torchish = view.files.some((f) => {
    const base = f.rel.slice(f.rel.lastIndexOf("/") + 1);
    return base.endsWith(".safetensors") || (base.startsWith("pytorch_model") && base.endsWith(".bin"));
  });
  return torchish ? "PyTorch" : "Unknown";
}

export type EmbedderClass = "decoder" | "encoder" | "encoder_declared" | null;

export function classifyEmbedder(config: Record<string, unknown> | null, name: string): EmbedderClass {
  if (!config) return null;
  const mt = typeof config.model_type === "string" ? config.model_type.toLowerCase() : "";
  if (mt === "gemma3_text") return null;
  const archs = Array.isArray(config.architectures) ? config.architectures.map(String) : [];
  const causal = archs.some((a) => a.includes("ForCausalLM")) || mt === "qwen3" || mt === "mistral";
  const lname = name.toLowerCase();
  if (causal && lname.includes("embed")) return "decoder";
  if (mt === "bert") return "encoder";
  if (mt === "xlm-roberta" || mt === "modernbert" || mt === "nomic_bert") return "encoder_declared";
  return null;
}

function hasChatTemplate(view: SnapshotView): boolean {
  const tc = view.readObject("tokenizer_config.json");
  const t = tc?.chat_template;
  if ((typeof t === "string" && t.trim() !== "") || (Array.isArray(t) && t.length > 0)) return true;
  if (view.has("chat_template.json") || view.has("chat_template.jinja")) return true;
  // tokenizer.json can be tens of MB: only parse it when the bytes mention a template at all
  const f = view.byRel.get("tokenizer.json");
  if (f && f.size > 0 && f.size < 64 * 1024 * 1024) {
    // search the raw bytes: decoding a large tokenizer.json to a string costs more than the search
    const bytes = view.readBytes("tokenizer.json");
    if (bytes !== null && bytes.indexOf('"chat_template"') >= 0) {
      try {
        const tj = JSON.parse(bytes.toString("utf8")) as Record<string, unknown>;
        return typeof tj.chat_template === "string" && tj.chat_template.trim() !== "";
      } catch {
        return false;
      }
    }
  }
  return false;
}

export type Kind = "chat" | "base" | "embedding" | "audio";

/** `chatTemplate: false` skips the template files (tokenizer.json can be tens of MB); chat vs base then rests on the name. */
export function detectKind(view: SnapshotView, name: string, opts: { chatTemplate?: boolean } = {}): Kind {
  const config = view.readObject("config.json");
  if (classifyEmbedder(config, name)) return "embedding";
  const mt = typeof config?.model_type === "string" ? config.model_type.toLowerCase() : "";
  if (mt === "chat" || VISION_MODEL_TYPES.has(mt)) return "chat";
  if (/whisper|vibevoice|voxtral/.test(mt)) return "audio";
  if (opts.chatTemplate !== false && hasChatTemplate(view)) return "chat";
  const lname = name.toLowerCase();
  if (lname.includes("instruct") || lname.includes("chat")) return "chat";
  return "base";
}

const PREPROCESSOR_FILES = ["preprocessor_config.json", "processor_config.json", "image_processor_config.json"];

function nonEmptyObject(v: unknown): boolean {
  return isObject(v) && Object.keys(v).length > 0;
}

export function detectCapabilities(view: SnapshotView, name: string, kind: Kind): string[] {
  if (kind === "embedding") return ["embeddings"];
  const config = view.readObject("config.json") ?? {};
  const mt = typeof config.model_type === "string" ? config.model_type.toLowerCase() : "";
  const lname = name.toLowerCase();
  if (kind === "audio") {
    const caps = ["audio"];
    const englishOnly = /whisper-(tiny|base|small|medium)\.en/.test(lname) || lname.includes("turbo");
    if (mt.includes("whisper") && !englishOnly) caps.push("audio-translate-en");
    return caps;
  }
  const caps = ["text-generation"];
  if (kind === "chat" || lname.includes("instruct") || lname.includes("chat")) caps.push("chat");
  const pre = view.readObject("preprocessor_config.json");
  const videoOnly =
    view.has("video_preprocessor_config.json") ||
    (pre !== null && ("temporal_patch_size" in pre || JSON.stringify(pre).includes("AutoVideoProcessor")));
  const visionFile = !videoOnly && PREPROCESSOR_FILES.some((f) => view.has(f));
  if (
    nonEmptyObject(config.vision_config) ||
    VISION_MODEL_TYPES.has(mt) ||
    "image_processor" in config ||
    isObject(config.preprocessor_config) ||
    visionFile
  ) {
    caps.push("vision");
  }
  const whisperFe = typeof pre?.feature_extractor_type === "string" && pre.feature_extractor_type.toLowerCase().includes("whisper");
  if (nonEmptyObject(config.audio_config) || /gemma3n|voxtral|whisper|vibevoice|audio/.test(mt) || whisperFe) caps.push("audio");
  return caps;
}

const CONTEXT_KEYS = ["max_position_embeddings", "n_positions", "context_length", "max_sequence_length", "seq_len"];

function positiveInt(v: unknown): number | null {
  if (typeof v === "number" && Number.isInteger(v) && v > 0) return v;
  if (typeof v === "string" && /^\d+$/.test(v) && Number(v) > 0) return Number(v);
  return null;
}

/** First positive context-length key at the top level, then in `text_config`; null when none. */
export function contextLength(config: Record<string, unknown> | null): number | null {
  if (!config) return null;
  for (const scope of [config, isObject(config.text_config) ? config.text_config : {}]) {
    for (const k of CONTEXT_KEYS) {
      const n = positiveInt(scope[k]);
      if (n !== null) return n;
    }
  }
  return null;
}

export interface Detection {
  framework: Framework;
  kind: Kind;
  capabilities: string[];
  /** config.json `model_type` (architecture family), null when absent. */
  configModelType: string | null;
}

/** `chatTemplate: false`: for health only, where chat vs base changes nothing (see detectKind). */
export function detectModel(view: SnapshotView, name: string, opts: { chatTemplate?: boolean } = {}): Detection {
  const config = view.readObject("config.json");
  const framework = detectFramework(view, name);
  let kind = detectKind(view, name, opts);
  let configModelType = typeof config?.model_type === "string" ? config.model_type : null;
  if (framework === "GGUF") {
    // the GGUF header is the config: architecture and chat template of the variant a bare name opens
    const v = defaultVariant(inspectGguf(view));
    if (kind === "base" && variantHasChatTemplate(v)) kind = "chat";
    configModelType = (v && variantModelType(v)) ?? configModelType;
  }
  return { framework, kind, capabilities: detectCapabilities(view, name, kind), configModelType };
}
