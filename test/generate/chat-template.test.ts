import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type ChatMessage,
  loadChatTemplates,
  parseChatTemplateField,
  renderChatTemplate,
  selectChatTemplate,
  strftime,
  TemplateError,
} from "../../src/generate/chat-template.ts";
import { metaString, readGguf } from "../../src/gguf/reader.ts";
import { smollm2Gguf } from "../support/smollm2.ts";

const FIX = join(import.meta.dir, "../fixtures/tokenizers");
interface Render {
  template: string;
  conversation: string;
  options: Record<string, unknown>;
  text?: string;
  error?: string;
}
const golden: { conversations: Record<string, ChatMessage[]>; renders: Render[] } = JSON.parse(
  readFileSync(join(FIX, "chat-templates.json"), "utf8"),
);

describe("chat templates render exactly like transformers (Jinja2) goldens", () => {
  test.each(golden.renders.map((r) => [`${r.template}/${r.conversation}/${JSON.stringify(r.options)}`, r] as const))(
    "%s",
    async (_, r) => {
      const source =
        r.template === "smollm2"
          ? metaString(readGguf(await smollm2Gguf()), "tokenizer.chat_template")!
          : readFileSync(join(FIX, "templates", `${r.template}.jinja`), "utf8");
      const { add_generation_prompt, ...kwargs } = r.options;
      const render = () =>
        renderChatTemplate(source, {
          messages: golden.conversations[r.conversation]!,
          addGenerationPrompt: add_generation_prompt as boolean,
          bosToken: "<s>",
          eosToken: "</s>",
          kwargs,
        });
      if (r.error !== undefined) {
        expect(render).toThrow(TemplateError);
        expect(render).toThrow(r.error);
      } else {
        expect(render()).toBe(r.text!);
      }
    },
    300_000,
  );
});

describe("template sources and selection", () => {
  test("tokenizer_config chat_template: string or list of named templates", () => {
    expect(parseChatTemplateField("x")).toEqual({ default: "x" });
    const named = parseChatTemplateField([
      { name: "default", template: "D" },
      { name: "tool_use", template: "T" },
    ])!;
    expect(selectChatTemplate(named)).toBe("D");
    expect(selectChatTemplate(named, { hasTools: true })).toBe("T");
    expect(selectChatTemplate(named, { name: "tool_use" })).toBe("T");
    expect(() => selectChatTemplate(named, { name: "rag" })).toThrow(/rag/);
    expect(parseChatTemplateField(42)).toBeNull();
  });

  test("chat_template.jinja beats chat_template.json beats tokenizer_config", () => {
    const dir = mkdtempSync(join(tmpdir(), "mlxk-tmpl-"));
    const cfg = { chat_template: "from-config" };
    expect(loadChatTemplates(dir, cfg)).toEqual({ default: "from-config" });
    writeFileSync(join(dir, "chat_template.json"), JSON.stringify({ chat_template: "from-json" }));
    expect(loadChatTemplates(dir, cfg)).toEqual({ default: "from-json" });
    writeFileSync(join(dir, "chat_template.jinja"), "from-jinja");
    expect(loadChatTemplates(dir, cfg)).toEqual({ default: "from-jinja" });
    expect(loadChatTemplates(mkdtempSync(join(tmpdir(), "mlxk-tmpl-")), {})).toBeNull();
  });

  test("variables: tools none by default, kwargs passthrough, strftime_now with injected clock", () => {
    const src =
      "{{ 'T' if tools else 'noT' }}|{{ enable_thinking }}|{{ strftime_now('%d %b %Y') }}|{{ range(3) | join(',') }}";
    const now = () => new Date(2026, 0, 5, 12, 0, 0);
    expect(renderChatTemplate(src, { messages: [], kwargs: { enable_thinking: true }, now })).toBe("noT|true|05 Jan 2026|0,1,2");
    expect(renderChatTemplate(src, { messages: [], tools: [{ type: "function" }], kwargs: { enable_thinking: false }, now }))
      .toStartWith("T|false|");
  });

  test("a broken template is an unsupported_model error, not a crash", () => {
    expect(() => renderChatTemplate("{% for %}", { messages: [] })).toThrow(/Cannot parse chat template/);
  });

  test("strftime subset", () => {
    expect(strftime("%A %B %d %H:%M:%S %y %%", new Date(2024, 1, 29, 7, 8, 9))).toBe("Thursday February 29 07:08:09 24 %");
  });
});
