/** `mlxk doctor [--json]`: the MLX runtime (source, backend, versions), where files live, and what is missing. */
import { defineCommand } from "citty";
import { useColor } from "../env.ts";
import type { DoctorData } from "../schemas/doctor.ts";
import { jsonArgs } from "./args.ts";
import { type CliContext, printSuccess } from "./context.ts";

function render(d: DoctorData, color: boolean): string {
  const r = d.runtime;
  const paint = (code: number, t: string): string => (color ? `\x1b[${code}m${t}\x1b[0m` : t);
  const row = (k: string, v: string | null): string => `  ${k.padEnd(17)} ${v ?? "-"}`;
  const lines = [
    `mlxk ${d.mlxk_version} (Bun ${d.bun_version}, ${d.platform}${d.glibc ? `, glibc ${d.glibc}` : ""}${d.executable ? ", standalone executable" : ""})`,
    "",
    `MLX runtime: ${r.available ? paint(32, "ready") : paint(31, "NOT available")}`,
    row("backend", r.backend ? `${r.backend}${r.backend_reason ? ` (${r.backend_reason})` : ""}` : null),
    ...(r.device ? [row("device", `${r.device.name ?? r.backend}, ${(r.device.memory_free_bytes / 1024 ** 3).toFixed(1)} GB free of ${(r.device.memory_total_bytes / 1024 ** 3).toFixed(1)} GB`)] : []),
    row("MLX version", r.mlx_version),
    row("shim version", r.shim_version),
    row("shim", r.shim ? `${r.shim} (${r.source})` : null),
    ...(r.reason ? [row("reason", r.reason)] : []),
    "",
    "Paths:",
    row("HF cache", d.paths.hf_cache),
    row("user runtime", d.paths.user_runtime),
    row("platform package", d.paths.platform_package),
    ...(d.paths.install_status ? [row("install status", d.paths.install_status)] : []),
    "",
    "Shim search order:",
    ...d.candidates.map((c) => `  ${c.exists ? "✓" : "·"} ${c.source.padEnd(16)} ${c.path}`),
  ];
  if (!d.executable || d.setup_tools.pip !== null || d.setup_tools.compiler !== null || !r.available) {
    lines.push("", "First-use setup tools:", row("pip", d.setup_tools.pip ? `${d.setup_tools.pip} -m pip` : null), row("C++ compiler", d.setup_tools.compiler));
  }
  lines.push("", d.missing.length === 0 ? "Nothing missing." : `${paint(31, "Missing:")}\n${d.missing.map((m) => `  - ${m}`).join("\n")}`);
  return lines.join("\n");
}

export default defineCommand({
  meta: { name: "doctor", description: "Report the MLX runtime, backend, versions, paths and what is missing" },
  args: { ...jsonArgs },
  async run({ data }) {
    const ctx = data as CliContext;
    const { diagnose } = await import("../mlx/doctor.ts");
    const d = diagnose(ctx.env);
    printSuccess(ctx, "doctor", d, () => render(d, useColor(ctx.env, ctx.stdoutIsTTY)));
    // a missing runtime is what doctor is asked about, not an error of doctor itself: exit 0 either way
  },
});
