/**
 * Human output of list / health / show / rm (JSON output is the data itself).
 *
 * Exports: renderList(models, flags), renderHealth(data), renderShow(data), renderRm(data), typeLabel(model)
 */
import type { HealthData, ModelObject, RmData, ShowData } from "../../schemas/cli-output.ts";
import { formatSize, relativeTime, renderTable, truncate, wrap } from "./format.ts";

export interface ListFlags {
  all?: boolean;
  health?: boolean;
  verbose?: boolean;
  now?: number;
}

export function typeLabel(m: ModelObject): string {
  let t = m.model_type;
  if (m.capabilities.includes("vision")) t += "+vision";
  if (m.capabilities.includes("audio") && m.model_type !== "audio") t += "+audio";
  return t;
}

function src(m: ModelObject): string {
  if (m.cached) return "cache";
  // clean is null for a missing/v1 content hash: the state is unknown
  return m.clean === null ? "ws?" : m.clean ? "ws" : "ws*";
}

/** Default and --verbose show only healthy, runnable models; --all shows everything. */
export function renderList(models: ModelObject[], f: ListFlags): string {
  const wide = Boolean(f.all || f.verbose);
  const shown = f.all ? models : models.filter((m) => m.health === "healthy" && m.runtime_compatible);
  const headers = ["Name", "Hash", "Size", "Modified", "Src", ...(wide ? ["Clean", "Framework"] : []), "Type"];
  if (f.health) headers.push(...(f.verbose ? ["Integrity", "Runtime", "Reason"] : ["Health"]));
  const rows = shown.map((m) => {
    let name = m.display_name ?? m.name;
    if (!f.verbose && name.startsWith("mlx-community/")) name = name.slice("mlx-community/".length);
    const row: (string | string[])[] = [name, m.hash ? m.hash.slice(0, 7) : "-", formatSize(m.size_bytes), relativeTime(m.last_modified, f.now), src(m)];
    if (wide) row.push(m.clean === null ? "—" : m.clean ? "✓" : "✗", m.framework);
    row.push(typeLabel(m));
    if (f.health && f.verbose) {
      const runtime = m.health === "healthy" ? (m.runtime_compatible ? "yes" : "no") : "-";
      row.push(m.health, runtime, m.reason ? wrap(truncate(m.reason, 60), 26) : "-");
    } else if (f.health) {
      row.push(m.health === "healthy" ? (m.runtime_compatible ? "healthy" : "healthy*") : "unhealthy");
    }
    return row;
  });
  let out = renderTable(headers, rows);
  const hidden = models.length - shown.length;
  if (hidden > 0) out += `\n(${hidden} more not shown: unhealthy or not runnable; use --all)`;
  return out;
}

export function renderHealth(d: HealthData): string {
  const lines: string[] = [];
  if (d.summary.total !== 1) lines.push(`Summary: total ${d.summary.total}, healthy ${d.summary.healthy_count}, unhealthy ${d.summary.unhealthy_count}`);
  for (const e of [...d.healthy, ...d.unhealthy].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    let reason = e.reason;
    if (e.status === "healthy" && e.runtime_compatible === false && e.runtime_reason) reason += ` (not runnable: ${e.runtime_reason})`;
    lines.push(`${e.status.padEnd(9)} ${e.name} — ${reason}`);
  }
  return lines.join("\n");
}

function quantLine(q: Record<string, unknown> | null | undefined): string | null {
  if (!q || typeof q.bits !== "number") return null;
  const parts = [`group_size=${q.group_size ?? "?"}`];
  if (typeof q.mode === "string" && q.mode !== "affine") parts.push(`mode=${q.mode}`);
  return `${q.bits}-bit (${parts.join(", ")})`;
}

export function renderShow(d: ShowData, now?: number): string {
  const m = d.model;
  const health =
    m.health === "unhealthy" ? "unhealthy" : m.runtime_compatible ? "healthy" : "healthy (files OK, runtime incompatible)";
  const lines = [
    `Model: ${m.name}${m.hash ? `@${m.hash.slice(0, 7)}` : ""}`,
    `Framework: ${m.framework}`,
    `Type: ${typeLabel(m)}`,
    `Capabilities: ${m.capabilities.join(", ") || "-"}`,
  ];
  const q = quantLine(m.quantization);
  if (q) lines.push(`Quantization: ${q}`);
  lines.push(`Size: ${formatSize(m.size_bytes)}`, `Modified: ${relativeTime(m.last_modified, now)}`, `Health: ${health}`);
  if (m.reason) lines.push(`Reason: ${m.reason}`);
  if (d.gguf) lines.push(...ggufLines(d.gguf));
  if (d.files) {
    lines.push("", "Files:");
    const w = Math.max(0, ...d.files.map((f) => f.name.length));
    for (const f of d.files) lines.push(`  ${f.name.padEnd(w)}  ${f.size.padStart(8)}  ${f.type}`);
  } else if (d.config) {
    lines.push("", "Config:", JSON.stringify(d.config, null, 2));
  } else if (d.metadata) {
    const md = d.metadata;
    lines.push("", "Metadata:");
    const rows: [string, unknown][] = [
      ["Model type", md.model_type],
      ["Architecture", md.architecture],
      ["Context length", md.context_length],
      ["Vocab size", md.vocab_size],
      ["Hidden size", md.hidden_size],
      ["Attention heads", md.num_attention_heads],
      ["Layers", md.num_hidden_layers],
      ["Parameters", md.parameters === null ? null : formatParams(md.parameters)],
      ["Dtypes", md.dtypes.length ? md.dtypes.join(", ") : null],
    ];
    for (const [k, v] of rows) if (v !== null && v !== undefined) lines.push(`  ${`${k}:`.padEnd(17)} ${v}`);
  }
  if (!m.cached) {
    const ws = d.workspace_metadata;
    const field = (k: string): string => (ws && typeof ws[k] === "string" && ws[k] !== "" ? (ws[k] as string) : "-");
    lines.push("", "Workspace:");
    const rows: [string, string][] = [
      ["Source", m.origin ?? "-"],
      ["Operation", field("operation")],
      ["Created", field("created_at")],
      ["Clean", m.clean === null ? "unknown" : m.clean ? "yes" : "no (files changed since hash)"],
      ["Content Hash", m.content_hash ?? "-"],
      ["Hash Modified", m.hash_modified ?? "-"],
    ];
    for (const [k, v] of rows) lines.push(`  ${`${k}:`.padEnd(15)} ${v}`);
  }
  return lines.join("\n");
}

/** The GGUF block of `show`: the selected file and every quant of the repo with its state. */
function ggufLines(g: NonNullable<ShowData["gguf"]>): string[] {
  const lines = ["", "GGUF:", `  File:            ${g.file} (${g.quant}, GGUF v${g.version ?? "?"})`];
  if (g.name) lines.push(`  Name:            ${g.name}`);
  lines.push(`  Chat template:   ${g.chat_template ? "yes" : "no"}`);
  if (g.tokenizer) lines.push(`  Tokenizer:       ${g.tokenizer}`);
  const types = Object.entries(g.tensor_types).map(([t, n]) => `${t}×${n}`);
  if (types.length) lines.push(`  Tensor types:    ${types.join(", ")}`);
  lines.push("  Quants (name:QUANT; * = default):");
  for (const q of g.quants) {
    const state = !q.healthy ? `unhealthy: ${q.reason}` : q.runtime_compatible ? "runnable" : `not runnable: ${q.runtime_reason}`;
    const parts = q.parts > 1 ? `, ${q.parts} parts` : "";
    lines.push(`    ${(q.quant + (q.default ? "*" : "")).padEnd(12)} ${formatSize(q.size_bytes).padStart(8)}${parts}  ${truncate(state, 90)}`);
  }
  return lines;
}

/** 1234567 → `1.23M`, 7.6e9 → `7.62B`. */
export function formatParams(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(2)}K`;
  return String(n);
}

export function renderRm(d: RmData): string {
  let out = `rm: ${d.model ?? "-"} — ${d.action}: ${d.message}`;
  if (d.dry_run && d.paths?.length) out += `\n${d.paths.map((p) => `  ${p}`).join("\n")}`;
  return out;
}
