/**
 * `mlxk embed <model> [text… | -]`: vectors as JSONL records (one per line) or, with --json, one envelope.
 * `--batch` reads JSONL from stdin: each line's `text` is embedded and its other fields pass through.
 */
import { defineCommand } from "citty";
import { MlxkError } from "../errors.ts";
import { openEmbedder, queryPrompt } from "../embed/open.ts";
import { jsonArgs, modelArg, parseIntArg } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";

async function readStdin(): Promise<string> {
  return await new Response(Bun.stdin.stream()).text();
}

interface Item {
  text: string;
  extra: Record<string, unknown>;
}

function batchItems(input: string): Item[] {
  const items: Item[] = [];
  input.split("\n").forEach((line, i) => {
    if (line.trim() === "") return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new MlxkError("ValidationError", `--batch line ${i + 1} is not JSON`);
    }
    if (!v || typeof v !== "object" || Array.isArray(v) || typeof (v as Record<string, unknown>).text !== "string") {
      throw new MlxkError("ValidationError", `--batch line ${i + 1} needs an object with a string "text"`);
    }
    const { text, ...extra } = v as Record<string, unknown> & { text: string };
    items.push({ text, extra });
  });
  return items;
}

export default defineCommand({
  meta: { name: "embed", description: "Embed texts with an embedding model (JSONL records, or --json)" },
  args: {
    ...modelArg,
    text: { type: "positional", description: "Texts to embed (each argument one text); '-' reads one text from stdin", required: false },
    batch: { type: "boolean", description: "Read JSONL from stdin: embed each line's \"text\", pass the other fields through" },
    query: { type: "boolean", description: "Retrieval query: prepend the model's query prompt" },
    document: { type: "boolean", description: "Document to retrieve: prepend the model's document prompt, where it has one (nomic: search_document: )" },
    instruct: { type: "string", description: "Retrieval query with this task instruction (decoder embedders, Qwen3-Embedding style)" },
    dimensions: { type: "string", description: "Truncate to N dimensions (Matryoshka models only)" },
    truncate: { type: "boolean", description: "Cut texts longer than the model's limit instead of refusing them" },
    ...jsonArgs,
  },
  async run({ args, data }) {
    const ctx = data as CliContext;
    const positional = (args._ as string[]).slice(1);
    let items: Item[];
    if (args.batch) {
      if (positional.length > 0) throw new MlxkError("InvalidArgumentError", "--batch reads stdin; give no texts");
      items = batchItems(await readStdin());
    } else if (positional.length === 1 && positional[0] === "-") {
      items = [{ text: (await readStdin()).replace(/\n$/, ""), extra: {} }];
    } else {
      items = positional.map((text) => ({ text, extra: {} }));
    }
    if (items.length === 0) throw new MlxkError("InvalidArgumentError", "Nothing to embed: give texts, '-' for stdin, or --batch");
    const dimensions = parseIntArg("dimensions", args.dimensions as string | undefined, 1) ?? null;
    const opened = await openEmbedder(String(args.model), { env: ctx.env });
    using e = opened.embedder;
    if (dimensions !== null && !e.recipe.matryoshka) {
      throw new MlxkError("InvalidArgumentError", `--dimensions: '${opened.model}' is not a Matryoshka model (its card does not say so); it outputs ${e.dims} dimensions`);
    }
    if (args.query && args.document) throw new MlxkError("InvalidArgumentError", "--query and --document exclude each other");
    const prompt = queryPrompt(e, { query: Boolean(args.query), document: Boolean(args.document), instruct: args.instruct as string | undefined });
    const { vectors } = e.embed(
      items.map((i) => i.text),
      { prompt, truncate: Boolean(args.truncate), dimensions },
    );
    const records = items.map((it, i) => ({
      ...it.extra,
      text: it.text,
      embedding: Array.from(vectors[i]!),
      metadata: { model: opened.model, dimensions: vectors[i]!.length, content_hash: opened.contentHash, device: "cpu" as const },
    }));
    if (ctx.json) printSuccess(ctx, "embed", { records }, () => "");
    else for (const r of records) ctx.stdout(`${JSON.stringify(r)}\n`);
  },
});
