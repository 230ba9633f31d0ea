/**
 * One rank of a pipeline test group (test/distributed/pipeline.test.ts starts one process per rank with the
 * environment `mlxk launch` sets): loads each model dir of argv in turn as its pipeline slice; rank 0 runs the
 * greedy token loop over GOLDEN_PROMPT and appends {model, tokens} to $PIPE_OUT, the others follow it. One
 * ring for every model, so testing all architectures costs two process starts.
 */
import { appendFileSync } from "node:fs";
import { follow } from "../../src/distributed/pipeline.ts";
import { joinWorld } from "../../src/distributed/world.ts";
import { tokenLoop } from "../../src/engine/generate.ts";
import { loadModelDir } from "../../src/engine/load.ts";
import { GOLDEN_PROMPT } from "./tiny-models.ts";

const STEPS = Number(process.env.PIPE_STEPS ?? 8);
const group = await joinWorld();
if (!group) throw new Error("not launched");
for (const dir of process.argv.slice(2)) {
  let line: Record<string, unknown>;
  try {
    const loaded = await loadModelDir(dir);
    try {
      if (group.rank === 0) {
        const tokens = [...tokenLoop({ model: loaded.model, prompt: GOLDEN_PROMPT, maxTokens: STEPS })].map((s) => s.token);
        line = { model: dir, tokens };
      } else {
        follow(loaded.model, loaded.follower!.step, loaded.follower!.group);
        continue;
      }
    } finally {
      loaded[Symbol.dispose]();
    }
  } catch (e) {
    // a model that cannot load/run here ends the group: every rank fails at the same model
    process.stderr.write(`rank ${group.rank} ${dir}: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
  }
  if (process.env.PIPE_OUT) appendFileSync(process.env.PIPE_OUT, `${JSON.stringify(line)}\n`);
}
