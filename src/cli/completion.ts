/**
 * `mlxk completion bash|zsh|fish`: a completion script for the commands, their flags (read from each command's
 * own args, so they never drift) and model names. Model names come at TAB time from `mlxk completion --models`,
 * which lists the cache's repo folders (and workspaces) without scanning them: a few ms, no health checks.
 */
import { type ArgsDef, type CommandDef, defineCommand } from "citty";
import { basename } from "node:path";
import { listRepoNames } from "../cache/layout.ts";
import { listWorkspaces } from "../cache/workspace.ts";
import { hubCacheDir, workspaceHome } from "../env.ts";
import { MlxkError } from "../errors.ts";
import { type CliContext } from "./context.ts";

interface Entry {
  description: string;
  load: () => Promise<CommandDef<any>>;
}

let table: Record<string, Entry> = {};
/** main.ts hands its command table over when it loads this command (importing main.ts here would be a circle). */
export function useCommands(commands: Record<string, Entry>): void {
  table = commands;
}

/** Commands whose first positional is a model name. */
const MODEL_COMMANDS = ["show", "rm", "run", "health", "pull", "clone", "push", "embed", "convert"];
const GLOBAL = ["--version", "--json", "--help"];

interface Flag {
  name: string;
  description: string;
  /** Takes a value (the next word is not a positional). */
  value: boolean;
}
interface Cmd {
  name: string;
  description: string;
  flags: Flag[];
  /** Flags that take a model name as value. */
  modelFlags: string[];
}

async function describe(): Promise<Cmd[]> {
  const out: Cmd[] = [];
  for (const [name, e] of Object.entries(table)) {
    const def = await e.load();
    const args = ((typeof def.args === "function" ? await def.args() : await def.args) ?? {}) as ArgsDef;
    const flags: Flag[] = [];
    for (const [k, a] of Object.entries(args)) {
      if (a.type === "positional") continue;
      const description = (a.description ?? "").replace(/\s+/g, " ");
      // a boolean that defaults to true is used as --no-<name>
      const value = a.type === "string";
      flags.push({ name: a.type === "boolean" && a.default === true ? `--no-${k}` : `--${k}`, description, value });
      const alias = "alias" in a && a.alias ? (Array.isArray(a.alias) ? a.alias : [a.alias]) : [];
      for (const al of alias) flags.push({ name: al.length === 1 ? `-${al}` : `--${al}`, description, value });
    }
    flags.push({ name: "--help", description: "Show the options of this command", value: false });
    out.push({ name, description: e.description, flags, modelFlags: "model" in args && args.model?.type !== "positional" ? ["--model"] : [] });
  }
  return out;
}

const sq = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;
/** Every flag that takes a value, space-padded for a `*" $w "*` test. */
const valueFlags = (cmds: Cmd[]): string => ` ${[...new Set(cmds.flatMap((c) => c.flags.filter((f) => f.value).map((f) => f.name)))].join(" ")} `;

function bash(cmds: Cmd[]): string {
  const names = cmds.map((c) => c.name).join(" ");
  const cases = cmds.map((c) => `    ${c.name}) opts=${sq(c.flags.map((f) => f.name).join(" "))} ;;`).join("\n");
  const modelFlags = [...new Set(cmds.flatMap((c) => c.modelFlags))];
  return `# mlxk bash completion. Load with: source <(mlxk completion bash)   (or save it into ~/.local/share/bash-completion/completions/mlxk)
_mlxk() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} cmd="" i n=0 opts=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    case \${COMP_WORDS[i]} in
      -*) [[ ${sq(valueFlags(cmds))} == *" \${COMP_WORDS[i]} "* ]] && i=$((i + 1)) ;;
      *) if [[ -z $cmd ]]; then cmd=\${COMP_WORDS[i]}; else n=$((n + 1)); fi ;;
    esac
  done
  if [[ -z $cmd ]]; then
    COMPREPLY=($(compgen -W ${sq(`${names} ${GLOBAL.join(" ")}`)} -- "$cur"))
    return
  fi
  case $cmd in
${cases}
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  elif [[ ${modelFlags.length ? `" ${modelFlags.join(" ")} " == *" $prev "*` : "0 == 1"} ]] || { [[ $n -eq 0 ]] && [[ " ${MODEL_COMMANDS.join(" ")} " == *" $cmd "* ]]; }; then
    local IFS=$'\\n'
    COMPREPLY=($(compgen -W "$(\${COMP_WORDS[0]} completion --models 2>/dev/null)" -- "$cur"))
  elif [[ $cmd == completion && $n -eq 0 ]]; then
    COMPREPLY=($(compgen -W 'bash zsh fish' -- "$cur"))
  fi
}
complete -o default -F _mlxk mlxk mlxk-json
`;
}

function zsh(cmds: Cmd[]): string {
  const esc = (s: string): string => s.replaceAll("\\", "\\\\").replaceAll(":", "\\:").replaceAll("'", "'\\''");
  const cmdList = cmds.map((c) => `    '${c.name}:${esc(c.description)}'`).join("\n");
  const cases = cmds
    .map((c) => `      ${c.name}) flags=(${c.flags.map((f) => `'${f.name}:${esc(f.description)}'`).join(" ")}) ;;`)
    .join("\n");
  const modelFlags = [...new Set(cmds.flatMap((c) => c.modelFlags))];
  return `#compdef mlxk mlxk-json
# mlxk zsh completion. Load with: source <(mlxk completion zsh)   (after compinit), or save it as _mlxk in your $fpath
_mlxk() {
  local -a commands flags models
  commands=(
${cmdList}
  )
  local cmd="" i n=0
  for ((i = 2; i < CURRENT; i++)); do
    if [[ \${words[i]} == -* ]]; then
      [[ ${sq(valueFlags(cmds))} == *" \${words[i]} "* ]] && i=$((i + 1))
      continue
    fi
    if [[ -z $cmd ]]; then cmd=\${words[i]}; else n=$((n + 1)); fi
  done
  if [[ -z $cmd ]]; then
    if [[ \${words[CURRENT]} == -* ]]; then compadd -- ${GLOBAL.join(" ")}; else _describe 'command' commands; fi
    return
  fi
  case $cmd in
${cases}
  esac
  if [[ \${words[CURRENT]} == -* ]]; then
    _describe 'option' flags
  elif [[ " ${modelFlags.join(" ")} " == *" \${words[CURRENT-1]} "* ]] || { (( n == 0 )) && [[ " ${MODEL_COMMANDS.join(" ")} " == *" $cmd "* ]]; }; then
    models=(\${(f)"$(\${words[1]} completion --models 2>/dev/null)"})
    compadd -a models
  elif [[ $cmd == completion ]] && (( n == 0 )); then
    compadd bash zsh fish
  else
    _files
  fi
}
if [[ \${funcstack[1]} == _mlxk ]]; then _mlxk "$@"; else compdef _mlxk mlxk mlxk-json; fi
`;
}

function fish(cmds: Cmd[]): string {
  const q = (s: string): string => `'${s.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
  const lines = [
    "# mlxk fish completion. Load with: mlxk completion fish | source   (or save it as ~/.config/fish/completions/mlxk.fish)",
    "for c in mlxk mlxk-json",
    "  complete -c $c -f",
    "  complete -c $c -n __fish_use_subcommand -l version -d 'Print the version'",
    "  complete -c $c -n __fish_use_subcommand -l json -d 'JSON envelope on stdout'",
  ];
  for (const c of cmds) {
    lines.push(`  complete -c $c -n __fish_use_subcommand -a ${c.name} -d ${q(c.description)}`);
    for (const f of c.flags) {
      const opt = f.name.startsWith("--") ? `-l ${f.name.slice(2)}` : `-s ${f.name.slice(1)}`;
      lines.push(`  complete -c $c -n '__fish_seen_subcommand_from ${c.name}' ${opt} -d ${q(f.description)}`);
    }
  }
  const modelCmds = cmds.filter((c) => MODEL_COMMANDS.includes(c.name)).map((c) => c.name);
  lines.push(
    `  complete -c $c -n '__fish_seen_subcommand_from ${modelCmds.join(" ")}' -a '(mlxk completion --models 2>/dev/null)'`,
    ...[...new Set(cmds.flatMap((c) => c.modelFlags))].map((f) => `  complete -c $c -l ${f.slice(2)} -r -a '(mlxk completion --models 2>/dev/null)'`),
    "  complete -c $c -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'",
    "end",
    "",
  );
  return lines.join("\n");
}

/** Names a TAB can complete: cached `org/name` (plus the short name of mlx-community models) and workspaces. */
export function completionModels(env: CliContext["env"]): string[] {
  const names = new Set<string>();
  for (const n of listRepoNames(hubCacheDir(env))) {
    names.add(n);
    if (n.startsWith("mlx-community/")) names.add(n.slice("mlx-community/".length));
  }
  for (const w of listWorkspaces(workspaceHome(env))) names.add(basename(w));
  return [...names].sort();
}

export default defineCommand({
  meta: { name: "completion", description: "Print a shell completion script (bash, zsh or fish)" },
  args: {
    shell: { type: "positional", description: "bash, zsh or fish", required: false },
    models: { type: "boolean", description: "List the model names a TAB completes (used by the scripts)" },
  },
  async run({ args, data }) {
    const ctx = data as CliContext;
    if (args.models) {
      const names = completionModels(ctx.env);
      if (names.length) ctx.stdout(`${names.join("\n")}\n`);
      return;
    }
    const gen = { bash, zsh, fish }[args.shell as "bash"];
    if (!gen) throw new MlxkError("CommandError", `Give a shell: mlxk completion bash|zsh|fish${args.shell ? ` (got '${args.shell}')` : ""}.`);
    ctx.stdout(gen(await describe()));
  },
});
