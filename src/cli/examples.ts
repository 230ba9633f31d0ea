/**
 * The "Examples:" block of every `mlxk <command> --help` (and of `mlxk --help`). Each line is checked against the
 * command's own flags by test/cli/help.test.ts, so an example never shows a flag that does not exist.
 */
import { type Env, useColor } from "../env.ts";

export const EXAMPLES: Record<string, readonly string[]> = {
  list: ["mlxk list", "mlxk list qwen --health", "mlxk list --all --verbose", "mlxk list --json | jq -r '.data.models[].name'"],
  health: ["mlxk health", "mlxk health Qwen3-0.6B-4bit --verify", "mlxk health --json | jq '.data.summary'"],
  show: ["mlxk show Qwen3-0.6B-4bit", "mlxk show mlx-community/Qwen3-0.6B-4bit --files", "mlxk show Qwen3-0.6B-4bit --config --json"],
  pull: ["mlxk pull mlx-community/Qwen3-0.6B-4bit", "mlxk pull org/name@main --include '*.json' --include '*.safetensors'", "mlxk pull org/name --force-resume --json"],
  rm: ["mlxk rm Qwen3-0.6B-4bit --dry-run", "mlxk rm mlx-community/Qwen3-0.6B-4bit@1a2b3c4 -f", "mlxk rm old-model --json"],
  run: [
    "mlxk run Qwen3-0.6B-4bit",
    'mlxk run Qwen3-0.6B-4bit "Why is the sky blue?" --max-tokens 200',
    "mlxk run ./SmolLM2-135M-Instruct.Q4_1.gguf --prompt Hi --temperature 0 --json",
    'git diff | mlxk run Qwen3-0.6B-4bit - "Write a commit message"',
  ],
  server: [
    "mlxk server",
    "mlxk server --model Qwen3-0.6B-4bit --port 8080",
    "mlxk server --host 0.0.0.0 --api-key secret --cors '*'",
  ],
  doctor: ["mlxk doctor", "mlxk doctor --json | jq '.data.runtime'"],
  completion: ["source <(mlxk completion bash)", "mlxk completion zsh > ~/.zfunc/_mlxk", "mlxk completion fish > ~/.config/fish/completions/mlxk.fish"],
};

/** Shown by `mlxk --help`. */
export const TOP_EXAMPLES: readonly string[] = ["mlxk list", 'mlxk run Qwen3-0.6B-4bit "Hello"', "mlxk server --model Qwen3-0.6B-4bit", "mlxk doctor"];

export function examplesBlock(lines: readonly string[] | undefined): string {
  return lines?.length ? `\nExamples:\n${lines.map((l) => `  ${l}`).join("\n")}\n` : "";
}

/**
 * `<command> --help`: citty's usage (which colors even into a pipe) without color unless useColor says so
 * (terminal, NO_COLOR, FORCE_COLOR), then the examples.
 */
export function helpText(usage: string, command: string, env: Env, isTTY: boolean): string {
  const text = useColor(env, isTTY) ? usage : usage.replace(/\x1b\[[0-9;]*m/g, "");
  return `${text.replace(/\s+$/, "")}\n${examplesBlock(EXAMPLES[command])}`;
}
