/** `mlxk launch [-n N | --hosts h1,h2 | --hostfile F] -- <run|server> …`: one model over several MLX processes. */
import { defineCommand } from "citty";
import { MlxkError } from "../errors.ts";
import { parseIntArg } from "./args.ts";
import type { CliContext } from "./context.ts";

const NOTES = `Every rank runs the command after '--' with its own slice of the model's layers (pipeline
parallel over MLX's ring backend, TCP): no rank holds the whole model. Rank 0 owns the terminal or the HTTP
server; the others follow it. A rank that dies stops the launch (non-zero exit naming the rank).

Hostfile (MLX's format): [{"ssh": "mac1", "ips": ["10.0.0.1"]}, {"ssh": "mac2", "ips": ["10.0.0.2"]}]
Environment every rank gets: MLX_RANK, MLX_HOSTFILE (the ring's ip:port list), MLXK_LAUNCH=1,
MLXK_LAUNCH_SPLIT, MLXK_LAUNCH_MODE, plus --env K=V and the hostfile's "envs"; --verbose adds MLX_RING_VERBOSE=1.`;

export default Object.assign(defineCommand({
  meta: { name: "launch", description: "Run one model over several MLX processes or hosts (pipeline or tensor parallel, ring backend)" },
  args: {
    n: { type: "string", alias: "repeat-hosts", description: "Ranks per host (default 1; with no hosts: N local ranks on loopback)" },
    hosts: { type: "string", description: "Comma-separated hosts, one rank each (IPs, or names with a hostfile's ips); 127.0.0.1 = local" },
    hostfile: { type: "string", description: "MLX hostfile (JSON: [{\"ssh\": host, \"ips\": [ip]}] or {\"hosts\": …, \"envs\": […]})" },
    split: { type: "string", description: "How layers are shared: layers (even, default), memory (by each rank's free memory), or weights like 2,1" },
    "tensor-parallel": { type: "boolean", description: "Shard every layer over the ranks instead (llama/qwen2/qwen3/qwen3_moe; all_sum per layer)" },
    env: { type: "string", description: "K=V set on every rank (repeatable or comma-separated)" },
    sync: { type: "boolean", description: "Pull the model on hosts whose cache lacks it before starting" },
    "remote-mlxk": { type: "string", description: "The mlxk command on remote hosts (default: mlxk on their PATH)" },
    "starting-port": { type: "string", description: "First ring port on remote hosts (default 32323; local ranks pick free ports)" },
    cwd: { type: "string", description: "Working directory of every rank" },
    verbose: { type: "boolean", description: "Print each rank's command line and MLX's ring log" },
  },
  async run({ rawArgs, args: a, data }) {
    const ctx = data as CliContext;
    const cut = rawArgs.indexOf("--");
    const command = cut < 0 ? [] : rawArgs.slice(cut + 1);
    if (command.length === 0) throw new MlxkError("CommandError", "Give the command after '--': mlxk launch -n 2 -- run <model> \"prompt\"");
    if (a.hosts && a.hostfile) throw new MlxkError("CommandError", "--hosts and --hostfile are alternatives: give one");
    const repeat = parseIntArg("n", a.n, 1) ?? (a.hosts || a.hostfile ? 1 : 2);
    const h = await import("../distributed/hosts.ts");
    const file = a.hostfile ? h.readHostfile(a.hostfile) : h.hostsFromList(a.hosts ?? "127.0.0.1", repeat);
    if (a.hostfile && a.n) {
      file.hosts = file.hosts.flatMap((x) => Array.from({ length: repeat }, () => x)).map((x, rank) => ({ ...x, rank }));
    }
    if (file.backend && file.backend !== "ring") throw new MlxkError("InvalidArgumentError", `the hostfile asks for the '${file.backend}' backend; mlxk launch uses ring (the one this libmlx has over TCP)`);
    const envList = [...file.envs, ...[a.env ?? []].flat().flatMap((e) => String(e).split(",")).filter((e) => e !== "")];
    const { launch } = await import("../distributed/launch.ts");
    const code = await launch({
      hosts: file.hosts,
      args: command,
      env: h.parseEnvs(envList),
      split: a.split ?? "layers",
      mode: a["tensor-parallel"] ? "tensor" : "pipeline",
      remoteMlxk: a["remote-mlxk"] ?? "mlxk",
      startingPort: parseIntArg("starting-port", a["starting-port"], 1),
      cwd: a.cwd,
      verbose: Boolean(a.verbose),
      sync: Boolean(a.sync),
      stdout: ctx.stdout,
      stderr: ctx.stderr,
    });
    ctx.exitCode = code;
  },
}), { notes: NOTES });
