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
  launch: [
    'mlxk launch -n 2 -- run Qwen3-0.6B-4bit "Hello"',
    "mlxk launch -n 3 --split 2,1,1 -- server --model Qwen3-0.6B-4bit --port 8080",
    'mlxk launch --hosts 10.0.0.1,10.0.0.2 -- run Qwen3-0.6B-4bit "Hi"',
    "mlxk launch --hostfile hosts.json --sync -- server --model Qwen3-0.6B-4bit",
  ],
  // commands of other branches (new-user: ps/stop; workspaces: clone/convert/push/embed), so --help has examples once merged
  ps: ["mlxk ps", "mlxk ps --json | jq '.data.servers[].port'"],
  stop: ["mlxk stop 8000", "mlxk stop --all"],
  clone: ["mlxk clone mlx-community/Qwen3-0.6B-4bit ./qwen3-ws", "mlxk clone org/name@main my-workspace --quiet"],
  convert: ["mlxk convert ./qwen3-ws ./qwen3-4bit --quantize 4", "mlxk convert ./broken-ws ./fixed-ws --repair-index"],
  push: ["mlxk push ./qwen3-4bit me/qwen3-4bit --private --create", "mlxk push ./qwen3-4bit me/qwen3-4bit --private --check-only"],
  embed: ['mlxk embed Qwen3-Embedding-0.6B "What is MLX?" --json', "cat docs.jsonl | mlxk embed Qwen3-Embedding-0.6B --batch"],
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
